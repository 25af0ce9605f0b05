package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review"
)

// probeLine is the outcome of one `keydesk check --connect` check.
type probeLine struct {
	status string // ok, FAIL or skip
	kind   string // imap, smtp, nats, api
	target string // what was reached
	detail string // what was found, or why it failed and what to do
}

func (l probeLine) String() string {
	sep := " "
	if l.status == "FAIL" || l.status == "skip" {
		sep = ": "
	}
	return fmt.Sprintf("%-4s %-5s %s%s%s", l.status, l.kind, l.target, sep, l.detail)
}

func (l probeLine) ok(format string, args ...any) probeLine {
	l.status, l.detail = "ok", fmt.Sprintf(format, args...)
	return l
}

func (l probeLine) skip(why string) probeLine {
	l.status, l.detail = "skip", why
	return l
}

// fail words a failure as the cause and what to do about it.
func (l probeLine) fail(err error, todo string) probeLine {
	l.status, l.detail = "FAIL", strings.ReplaceAll(err.Error(), "\n", " ")+"; "+todo
	return l
}

// failIn is fail with what to do by the phase that failed, otherwise
// for a phase without advice.
func (l probeLine) failIn(err error, phase string, todo map[string]string, otherwise string) probeLine {
	if t := todo[phase]; t != "" {
		return l.fail(err, t)
	}
	return l.fail(err, otherwise)
}

// runProbes logs in to each server o.roles use, each within o.timeout,
// prints a line per check and returns how many failed.
func runProbes(ctx context.Context, w io.Writer, cfg *config.Config, reg *keydesk.Registry, o checkOptions) int {
	var lines []probeLine
	if slices.Contains(o.roles, "intake") {
		lines = append(lines, probeIMAP(ctx, cfg, o.timeout))
	}
	if slices.Contains(o.roles, "delivery") {
		lines = append(lines, probeSMTP(ctx, cfg, o.timeout))
	}
	lines = append(lines, probeNATS(ctx, cfg, o.timeout))
	if slices.Contains(o.roles, "review") && cfg.Review.OIDC.Enabled() {
		lines = append(lines, probeOIDC(ctx, cfg, o.timeout))
	}
	if slices.Contains(o.roles, "batch") {
		lines = append(lines, probeAPIs(ctx, cfg, reg, o.timeout)...)
	}
	failed := 0
	for _, l := range lines {
		fmt.Fprintln(w, l)
		if l.status == "FAIL" {
			failed++
		}
	}
	return failed
}

// probeIMAP logs in as intake does and examines the mailbox.
func probeIMAP(ctx context.Context, cfg *config.Config, timeout time.Duration) probeLine {
	l := probeLine{kind: "imap", target: cfg.IMAP.Address}
	if cfg.IMAP.Address == "" {
		return l.skip("imap.address is not set")
	}
	o, err := intakeMailOptions(cfg)
	if err != nil {
		return l.fail(err, "fix the imap section")
	}
	o.IMAP.Timeout = min(o.IMAP.Timeout, timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := intake.Probe(ctx, o)
	if err != nil {
		phase := ""
		if pe := (*intake.ProbeError)(nil); errors.As(err, &pe) {
			phase = pe.Phase
		}
		return l.failIn(err, phase, map[string]string{
			"login":   "check imap.username and imap.password (or the OAuth2 token) and the auth mechanism",
			"examine": "check imap.mailbox: the account has no such mailbox, or may not read it",
			"list":    "the server refused to list mailboxes: check the account's rights",
		}, "check imap.address, imap.security and imap.tls_ca_file, and that the server is reachable from here")
	}
	if len(res.Missing) > 0 {
		return l.ok("(%s, %d messages; intake will create %s)", res.Mailbox, res.Messages, strings.Join(res.Missing, ", "))
	}
	return l.ok("(%s, %d messages)", res.Mailbox, res.Messages)
}

// probeSMTP logs in as delivery does, and quits without sending.
func probeSMTP(ctx context.Context, cfg *config.Config, timeout time.Duration) probeLine {
	l := probeLine{kind: "smtp", target: cfg.SMTP.Address}
	if cfg.SMTP.Address == "" {
		return l.skip("smtp.address is not set")
	}
	c := *cfg
	c.SMTP.Timeout = min(c.SMTP.Timeout, timeout)
	sender, err := newSMTPSender(&c)
	if err != nil {
		return l.fail(err, "fix the smtp section")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := sender.Probe(ctx); err != nil {
		phase := ""
		if se := (*delivery.SendError)(nil); errors.As(err, &se) {
			phase = se.Phase
		}
		return l.failIn(err, phase, map[string]string{
			"tls":   "check smtp.security (tls: implicit, port 465; starttls: port 587) and smtp.tls_ca_file",
			"hello": "the server refused EHLO: check smtp.helo_name",
			"auth":  "check smtp.username and smtp.password (or the OAuth2 token) and smtp.auth",
		}, "check smtp.address and that the server is reachable from here")
	}
	if cfg.SMTP.Auth == "none" {
		return l.ok("(connected; smtp.auth none: no login)")
	}
	return l.ok("(logged in as %s)", cfg.SMTP.Username)
}

// probeNATS connects as the roles do and looks for keydesk's streams.
func probeNATS(ctx context.Context, cfg *config.Config, timeout time.Duration) probeLine {
	l := probeLine{kind: "nats"}
	o := queueOptions(cfg, "keydesk check")
	o.URL = dialURL(cfg)
	if o.URL == "" {
		l.target = "embedded"
		return l.skip("the embedded server (nats.url empty) runs inside keydesk serve: nothing to dial (set nats.listen to reach a running one)")
	}
	l.target = o.URL
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := queue.Probe(ctx, o)
	if err != nil {
		if res != nil && len(res.Missing) > 0 {
			return l.fail(err, "run 'keydesk nats-setup' with a NATS user that may create them")
		}
		return l.fail(err, "check nats.url, nats.creds_file and the nats TLS files, and that the server is reachable from here")
	}
	l.target = res.Server
	return l.ok("(JetStream, %d streams and buckets)", res.Streams)
}

// probeOIDC fetches the identity provider's discovery document, as the
// first single sign-on does.
func probeOIDC(ctx context.Context, cfg *config.Config, timeout time.Duration) probeLine {
	oc := cfg.Review.OIDC
	l := probeLine{kind: "oidc", target: oc.Issuer}
	o := oidcOptions(oc)
	o.DiscoveryTimeout = timeout
	info, err := review.ProbeProvider(ctx, *o)
	if err != nil {
		return l.fail(err, "check review.oidc.issuer (the provider's issuer URL, as its /.well-known/openid-configuration names it) and that the provider is reachable from here")
	}
	if len(info.PKCE) > 0 && !slices.Contains(info.PKCE, "S256") {
		return l.fail(fmt.Errorf("the provider offers PKCE %v, not S256", info.PKCE), "enable PKCE (S256) for keydesk's client at the provider")
	}
	claim, _, _ := strings.Cut(oc.RolesClaim, ".")
	if len(info.Claims) > 0 && !slices.Contains(info.Claims, claim) && !slices.Contains(info.Claims, oc.RolesClaim) {
		return l.ok("(discovery: sign-in at %s; %s is not among the claims it lists: check that the provider sends it, see docs/operations.md)", info.AuthURL, oc.RolesClaim)
	}
	return l.ok("(discovery: sign-in at %s)", info.AuthURL)
}

// probeAPIs lists the keys of each partner environment, as the batch role
// would before creating one.
func probeAPIs(ctx context.Context, cfg *config.Config, reg *keydesk.Registry, timeout time.Duration) []probeLine {
	if reg == nil {
		return []probeLine{probeLine{kind: "api", target: "partners"}.skip("partners.yaml has problems (listed below)")}
	}
	var lines []probeLine
	for _, p := range reg.Partners {
		for _, env := range keydesk.Environments {
			if pe, ok := p.Environments[env]; ok {
				lines = append(lines, probeAPI(ctx, cfg.API.Env(env), p.ID, env, pe, timeout))
			}
		}
	}
	return lines
}

func probeAPI(ctx context.Context, api *config.APIEnv, partner string, env keydesk.Environment, pe keydesk.PartnerEnvironment, timeout time.Duration) probeLine {
	l := probeLine{kind: "api", target: partner + " " + string(env) + " " + api.BaseURL}
	if api.BaseURL == "" {
		return l.fail(fmt.Errorf("api.%s.base_url is not set", env), "set the environment's API address")
	}
	if pe.APIKey == "" || pe.APISecret.IsZero() {
		return l.skip("no api_key or api_secret here: run check with the batch role's environment")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := bmapi.New(bmapi.Options{
		BaseURL: api.BaseURL, APIKey: pe.APIKey, APISecret: pe.APISecret,
		Timeout: min(api.Timeout, timeout), MaxAttempts: 1,
	})
	keys, err := c.ListKeys(ctx)
	switch {
	case err == nil:
		return l.ok("(%d keys)", len(keys))
	case errors.Is(err, bmapi.ErrUnauthorized):
		return l.fail(err, fmt.Sprintf("the credentials are wrong: check %s's %s api_key and api_secret in partners.yaml (not revoked, not the other environment's)", partner, env))
	case errors.Is(err, bmapi.ErrForbidden):
		return l.fail(err, fmt.Sprintf("the key lacks keys:manage: ask for a %s key of %s with that scope", env, partner))
	case errors.Is(err, bmapi.ErrTransport), errors.Is(err, bmapi.ErrBadRequest), errors.Is(err, bmapi.ErrProtocol):
		return l.fail(err, fmt.Sprintf("check api.%s.base_url and that the API is reachable from here", env))
	default:
		return l.fail(err, "the API is failing or limiting: try again later")
	}
}
