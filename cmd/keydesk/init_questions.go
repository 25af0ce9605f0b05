package main

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/mailauth"
)

// question is one thing init asks, and the flag that answers it.
type question struct {
	section string // heading shown before the first question of a section
	name    string // the flag; a secret's flag is name+"-file"
	prompt  string
	help    string // the flag's help, and what a missing answer says
	// secretEnv is the environment variable of a secret ("" for a plain
	// answer); a secret is read from a file, the variable or a prompt.
	secretEnv string
	optional  bool
	def       func(a *answers, o initOptions) string
	// when says whether the question applies, given earlier answers.
	when  func(a *answers) bool
	check func(v string, a *answers) error
	// echo is shown after an answer typed on the terminal.
	echo func(a *answers) string
}

func fixed(v string) func(*answers, initOptions) string {
	return func(*answers, initOptions) string { return v }
}

func answered(name string) func(a *answers) bool {
	return func(a *answers) bool { return a.has(name) }
}

// questions is everything init asks, in order; an answer's default and
// whether a question applies may depend on the answers before it.
func questions() []question {
	var qs []question
	qs = append(qs, siteQuestions()...)
	qs = append(qs, mailQuestions()...)
	qs = append(qs, partnerQuestions()...)
	return append(qs, staffQuestions()...)
}

func siteQuestions() []question {
	const s = "keydesk itself"
	return []question{
		{section: s, name: "listen", prompt: "Address the review UI and API listen on", help: "the review UI's listen address, host:port",
			def: fixed("127.0.0.1:8080"), check: checkHostPort},
		{section: s, name: "base-url", prompt: "The review UI's public URL (links in emails, the sign-in callback)", help: "the review UI's public URL",
			def: func(a *answers, _ initOptions) string { return "http://" + a.get("listen") }, check: checkWebURL},
		{section: s, name: "data-dir", prompt: "Data directory (the embedded NATS store)",
			help: "where keydesk keeps its data; relative to DIR (default /var/lib/keydesk with --service-user, else data)",
			def: func(_ *answers, o initOptions) string {
				if o.serviceUser != "" {
					return "/var/lib/keydesk" // systemd's StateDirectory: /etc is read-only to the service
				}
				return "data"
			}},
		{section: s, name: "nats-url", prompt: "NATS cluster URL (empty: an embedded server, one host)", help: "a NATS cluster's URL; empty runs an embedded server",
			optional: true, check: checkNATSURL},
	}
}

func mailQuestions() []question {
	const (
		m = "The support mailbox keydesk reads (IMAP)"
		s = "Sending mail (SMTP)"
	)
	return []question{
		{section: m, name: "imap-address", prompt: "IMAP server host:port", help: "the IMAP server, host:port", check: checkHostPort},
		{section: m, name: "imap-security", prompt: "IMAP security: tls, starttls or none (loopback only)", help: "tls, starttls or none",
			def: fixed("tls"), check: checkSecurity("imap-address")},
		{section: m, name: "imap-username", prompt: "IMAP username", help: "the mailbox's login"},
		{section: m, name: "imap-password", prompt: "IMAP password", help: "the mailbox's password", secretEnv: "KEYDESK_IMAP_PASSWORD"},
		{section: m, name: "authserv-id", prompt: "Your MTA's authserv-id (the first word of the Authentication-Results it stamps)",
			help: "the authserv-id(s) of your own MTA, comma-separated: only its DMARC verdicts count", check: checkList(checkHostName)},
		{section: s, name: "smtp-address", prompt: "SMTP submission server host:port", help: "the SMTP server, host:port", check: checkHostPort},
		{section: s, name: "smtp-security", prompt: "SMTP security: tls, starttls or none (loopback only)", help: "tls, starttls or none",
			def: fixed("starttls"), check: checkSecurity("smtp-address")},
		{section: s, name: "smtp-username", prompt: "SMTP username (empty: no login, e.g. a local relay)", help: "the SMTP login; empty: none",
			optional: true, def: func(a *answers, _ initOptions) string { return a.get("imap-username") }},
		{section: s, name: "smtp-password", prompt: "SMTP password", help: "the SMTP password", secretEnv: "KEYDESK_SMTP_PASSWORD",
			when: answered("smtp-username")},
		{section: s, name: "smtp-from", prompt: "keydesk's From address", help: `keydesk's From address, e.g. "Buildmarkets Support <support@buildmarkets.ai>"`,
			check: checkAddress},
		{section: s, name: "support-address", prompt: "Address for batch reports and alerts", help: "where batch reports and alerts go",
			check: checkBareAddress},
		{section: s, name: "internal-domains", prompt: "Your own domains, comma-separated (Relationship Managers forward from there)",
			help: "your own mail domains, comma-separated",
			def:  func(a *answers, _ initOptions) string { return domainOf(a.get("smtp-from")) }, check: checkList(checkHostName)},
	}
}

func partnerQuestions() []question {
	const (
		api = "The Buildmarkets API"
		p   = "The first partner"
	)
	env := func(e keydesk.Environment) []question {
		key := string(e) + "-api-key"
		return []question{
			{section: p, name: key, prompt: fmt.Sprintf("The partner's %s API key with keys:manage (empty: no %s)", e, e),
				help: fmt.Sprintf("the partner's %s keys:manage API key", e), optional: true},
			{section: p, name: string(e) + "-api-secret", prompt: fmt.Sprintf("Its %s API secret", e),
				help: fmt.Sprintf("the %s API key's secret", e), secretEnv: "KEYDESK_" + strings.ToUpper(string(e)) + "_API_SECRET", when: answered(key)},
		}
	}
	qs := []question{
		{section: api, name: "api-sandbox-url", prompt: "Sandbox API base URL", help: "the sandbox API's base URL", check: checkAPIURL},
		{section: api, name: "api-production-url", prompt: "Production API base URL", help: "the production API's base URL", check: checkAPIURL},
		{section: p, name: "partner-id", prompt: "Partner ID (short, lower case: acme)", help: "the partner's ID", check: checkPartnerID},
		{section: p, name: "partner-name", prompt: "Partner name", help: "the partner's name", def: func(a *answers, _ initOptions) string { return a.get("partner-id") }},
		{section: p, name: "requesters", prompt: "Who may ask for keys: addresses or *@domain, comma-separated", help: "the partner's requesters, comma-separated",
			check: checkList(checkRequester)},
		{section: p, name: "contact-email", prompt: "Technical contact's email (receives the keys)", help: "the technical contact's address", check: checkBareAddress},
		{section: p, name: "contact-key", prompt: "File holding the contact's public key", help: "the contact's armored public key file", check: checkContactKey,
			echo: func(a *answers) string {
				return "  its fingerprint, to be pinned: " + crypto.FormatFingerprint(a.contactFPR) + "\n  read it to the contact by phone before the first delivery"
			}},
	}
	qs = append(qs, env(keydesk.Sandbox)...)
	qs = append(qs, question{section: p, name: "sandbox-auto-approve", prompt: "Approve the partner's sandbox requests automatically? (yes/no)",
		help: "yes or no", def: fixed("yes"), when: answered("sandbox-api-key"), check: checkYesNo})
	return append(qs, env(keydesk.Production)...)
}

func staffQuestions() []question {
	const s = "Staff sign-in"
	oidc := answered("oidc-issuer")
	return []question{
		{section: s, name: "oidc-issuer", prompt: "OpenID Connect issuer URL for single sign-on (empty: none)", help: "the OIDC issuer URL",
			optional: true, check: checkWebURL},
		{section: s, name: "oidc-client-id", prompt: "OIDC client ID", help: "keydesk's client ID at the identity provider", when: oidc},
		{section: s, name: "oidc-client-secret", prompt: "OIDC client secret", help: "keydesk's client secret at the identity provider",
			secretEnv: "KEYDESK_OIDC_CLIENT_SECRET", when: oidc},
		{section: s, name: "oidc-roles-claim", prompt: "The ID-token claim listing a person's groups", help: "the groups claim", def: fixed("groups"), when: oidc},
		{section: s, name: "oidc-admin-group", prompt: "The identity provider's group of keydesk admins", help: "the IdP group whose members are admins", when: oidc},
		{section: s, name: "admin", prompt: "Local (break-glass) admin's user name (empty: none)", help: "a local admin in users.yaml; empty: none",
			optional: true, check: checkUserName,
			def: func(a *answers, _ initOptions) string {
				if a.has("oidc-issuer") {
					return ""
				}
				return "admin"
			}},
	}
}

// crossCheck judges what no one answer can: a partner environment, a
// first admin.
func crossCheck(a *answers) error {
	var errs []error
	if !a.has("sandbox-api-key") && !a.has("production-api-key") {
		errs = append(errs, errors.New("--sandbox-api-key, --production-api-key: the partner needs at least one environment"))
	}
	if !a.has("admin") && !a.has("oidc-issuer") {
		errs = append(errs, errors.New("--admin, --oidc-issuer: name a local admin or an OpenID Connect issuer, or nobody can sign in"))
	}
	return errors.Join(errs...)
}

func checkHostPort(v string, _ *answers) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || port == "" || host == "" && !strings.HasPrefix(v, ":") {
		return fmt.Errorf("%q is not host:port", v)
	}
	return nil
}

func checkSecurity(addrKey string) func(string, *answers) error {
	return func(v string, a *answers) error {
		switch mailauth.Security(v) {
		case mailauth.SecurityTLS, mailauth.SecurityStartTLS:
			return nil
		case mailauth.SecurityNone:
			if host, _, _ := net.SplitHostPort(a.get(addrKey)); !mailauth.IsLoopback(host) {
				return fmt.Errorf("none sends the password in clear text: only to a loopback address, not %s", host)
			}
			return nil
		}
		return fmt.Errorf("%q is not tls, starttls or none", v)
	}
}

func checkWebURL(v string, _ *answers) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("%q is not an http(s):// URL", v)
	}
	return nil
}

func checkAPIURL(v string, a *answers) error {
	if err := checkWebURL(v, a); err != nil {
		return err
	}
	if u, _ := url.Parse(v); u.Scheme == "http" && !mailauth.IsLoopback(u.Hostname()) {
		return fmt.Errorf("%q would send API secrets in clear text: use https:// (http:// only to loopback)", v)
	}
	return nil
}

func checkNATSURL(v string, _ *answers) error {
	for u := range strings.SplitSeq(v, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.Host == "" {
			return fmt.Errorf("%q is not a NATS URL (tls://host:4222)", u)
		}
	}
	return nil
}

var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func checkHostName(v string, _ *answers) error {
	if !hostNameRE.MatchString(v) {
		return fmt.Errorf("%q is not a host or domain name (ASCII; write an international name in its xn-- form)", v)
	}
	return nil
}

func checkList(each func(string, *answers) error) func(string, *answers) error {
	return func(v string, a *answers) error {
		var errs []error
		for _, item := range splitList(v) {
			errs = append(errs, each(item, a))
		}
		return errors.Join(errs...)
	}
}

func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkAddress(v string, _ *answers) error {
	if _, err := mail.ParseAddress(v); err != nil {
		return fmt.Errorf("%q is not an email address", v)
	}
	return nil
}

func checkBareAddress(v string, _ *answers) error {
	if a, err := mail.ParseAddress(v); err != nil || a.Address != v {
		return fmt.Errorf("%q is not one bare email address (no name)", v)
	}
	return nil
}

func checkRequester(v string, a *answers) error {
	if d, ok := strings.CutPrefix(v, "*@"); ok {
		if !strings.Contains(d, ".") {
			return fmt.Errorf("%q: give a whole domain name (*@acme.example)", v)
		}
		return checkHostName(d, a)
	}
	return checkBareAddress(v, a)
}

var partnerIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

func checkPartnerID(v string, _ *answers) error {
	if !partnerIDPattern.MatchString(v) {
		return fmt.Errorf("%q must be 1-40 lower-case letters, digits, - or _", v)
	}
	return nil
}

var userNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func checkUserName(v string, _ *answers) error {
	if !userNamePattern.MatchString(v) {
		return fmt.Errorf("%q: use lower-case letters, digits, '.', '_' or '-' (at most 64)", v)
	}
	return nil
}

func checkYesNo(v string, _ *answers) error {
	if _, ok := yesNo(v); !ok {
		return fmt.Errorf("%q: answer yes or no", v)
	}
	return nil
}

func yesNo(v string) (yes, ok bool) {
	switch strings.ToLower(v) {
	case "y", "yes", "true":
		return true, true
	case "n", "no", "false":
		return false, true
	}
	return false, false
}

// checkContactKey reads the contact's key, pins its fingerprint, and
// checks now that keydesk could encrypt to it.
func checkContactKey(v string, a *answers) error {
	data, err := readBounded(v)
	if err != nil {
		return err
	}
	fpr, err := crypto.KeyFingerprint(data)
	if err != nil {
		return fmt.Errorf("%s: %w", v, err)
	}
	if _, err := (crypto.Checker{}).CheckContactKey(data, fpr, time.Now()); err != nil {
		return fmt.Errorf("%s: keydesk could not encrypt to this key: %w", v, err)
	}
	a.contactFPR = fpr
	return nil
}

// domainOf is the domain of an address ("Name <a@b>" too), or "".
func domainOf(addr string) string {
	pa, err := mail.ParseAddress(addr)
	if err != nil {
		return ""
	}
	return keydesk.ASCIILower(pa.Address[strings.LastIndexByte(pa.Address, '@')+1:])
}

// exists reports whether path exists (anything at it).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
