package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/mailauth"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaultsAndExpansion(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "imap.pass", "s3cret-imap\n")
	p := write(t, dir, "keydesk.yaml", `
data_dir: ${DATA:-/var/lib/keydesk}
imap:
  address: ${IMAP_HOST}:993
  username: support@buildmarkets.ai
  password_file: imap.pass
  poll_interval: 30s
  max_message_bytes: 20MiB
smtp:
  address: smtp.example.com:587
  username: keydesk
  password: ${SMTP_PASSWORD}
  from: support@buildmarkets.ai
api:
  sandbox: {base_url: "https://dev-tapp-api.tappengine.com", rate_limit: 10}
rotation: {max_age: 365d}
`)
	c, err := load(p, env(map[string]string{"IMAP_HOST": "imap.example.com", "SMTP_PASSWORD": "s3cret-smtp"}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir default from ${:-}", c.DataDir, "/var/lib/keydesk"},
		{"imap.address expanded", c.IMAP.Address, "imap.example.com:993"},
		{"imap.password from file", c.IMAP.Password.Reveal(), "s3cret-imap"},
		{"smtp.password from env", c.SMTP.Password.Reveal(), "s3cret-smtp"},
		{"poll_interval", c.IMAP.PollInterval, 30 * time.Second},
		{"max_message_bytes", c.IMAP.MaxMessageBytes, Size(20 << 20)},
		{"max_attempts default", c.IMAP.MaxAttempts, 3},
		{"mailbox default", c.IMAP.Mailbox, "INBOX"},
		{"imap.lease_ttl default", c.IMAP.LeaseTTL, 30 * time.Second},
		{"notify.lease_ttl default", c.Notify.LeaseTTL, 30 * time.Second},
		{"imap.security default", c.IMAP.Security, mailauth.SecurityTLS},
		{"rate_limit", c.API.Sandbox.RateLimit, 10.0},
		{"production timeout default", c.API.Production.Timeout, 30 * time.Second},
		{"schedule default", c.Batch.Schedule, "CRON_TZ=UTC 0 10,16 * * 1-5"},
		{"inventory_interval default", c.Batch.InventoryInterval, time.Hour},
		{"four_eyes default", strings.Join(c.Review.FourEyes, ","), "production,keys:manage"},
		{"require_dmarc default", c.SenderAuth.DMARCRequired(), true},
		{"internal_domains default", strings.Join(c.SenderAuth.InternalDomains, ","), "buildmarkets.ai"},
		{"retry_for default", c.Delivery.RetryFor, 48 * time.Hour},
		{"ack_wait default", c.Delivery.AckWait, 2 * time.Minute},
		{"review.age_target default", c.Review.AgeTarget, 4 * time.Hour},
		{"rotation.max_age in days", c.Rotation.MaxAge, 365 * 24 * time.Hour},
		{"rotation.remind_before default", c.Rotation.RemindBefore, 30 * 24 * time.Hour},
		{"rotation.grace default", c.Rotation.Grace, 7 * 24 * time.Hour},
		{"inbox_prefix default (_INBOX)", c.NATS.InboxPrefix, ""},
		{"audit_max_bytes default (the queue's)", c.NATS.AuditMaxBytes, Size(0)},
	}
	for _, ch := range checks {
		if fmt.Sprint(ch.got) != fmt.Sprint(ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestExpansionCannotInjectYAML(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "keydesk.yaml", "smtp:\n  from: ${FROM}\n  address: smtp.example.com:587\n  username: u\n")
	c, err := load(p, env(map[string]string{"FROM": "a@b.example\n  support_address: evil@x.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.SupportAddress != "" || !strings.Contains(c.SMTP.From, "evil") {
		t.Fatalf("an environment value changed the document: from=%q support=%q", c.SMTP.From, c.SMTP.SupportAddress)
	}
}

// TestValidationNamesFileAndKey checks that every problem is reported, at
// once, each naming the file and the key.
func TestValidationNamesFileAndKey(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "keydesk.yaml", `
nats: {replicas: 3, inbox_prefix: "_INBOX.>", audit_max_bytes: 64KiB}
imap:
  address: imap.example.com
  security: plain
  username: x
  max_attempts: -1
  lease_ttl: 100ms
smtp:
  address: mail.example.com:25
  security: none
  username: x
api:
  production: {base_url: "http://api.buildmarkets.example"}
review: {listen: "nowhere", four_eyes: [production, staging], age_target: 10s}
batch: {concurrency: 1000}
notify: {lease_ttl: 2h}
delivery: {ack_wait: 1s, retry_for: 2 days}
log: {level: loud}
signing_key: {file: missing.asc}
sender_auth:
  trusted_authserv_ids: ["mx.buildmarKets.ai"]
  internal_domains: ["buildmarketſ.ai"]
  relationship_managers: ["Ron <rm@buildmarkets.ai>", "*@buildmarkets.ai"]
  microsoft365: {tenant_id: buildmarkets.onmicrosoft.com}
imap_pasword: typo
`)
	_, err := load(p, env(nil))
	if err == nil {
		t.Fatal("broken config accepted")
	}
	for _, want := range []string{
		"keydesk.yaml: imap_pasword: unknown key (line 26)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// Without the unknown key, the semantic problems are all listed. (The
	// imap and smtp servers, the imap, batch and delivery settings and
	// smtp.from are their roles' packages' to judge:
	// TestRoleSettingsReportedOnce in cmd/keydesk asserts those lines, via
	// check and via serve.)
	data, _ := os.ReadFile(p)
	write(t, dir, "keydesk.yaml", strings.Replace(string(data), "imap_pasword: typo\n", "", 1))
	_, err = load(p, env(nil))
	if err == nil {
		t.Fatal("broken config accepted")
	}
	for _, want := range []string{
		"keydesk.yaml: nats.replicas: the embedded server",
		"keydesk.yaml: nats.inbox_prefix: \"_INBOX.>\" contains a wildcard",
		"keydesk.yaml: nats.audit_max_bytes: 65536 is too small",
		"keydesk.yaml: api.production.base_url: \"http://api.buildmarkets.example\" sends API secrets in clear text",
		"keydesk.yaml: review.listen:",
		"keydesk.yaml: review.four_eyes[1]: \"staging\" is neither",
		"keydesk.yaml: review.age_target: 10s is out of range 1m..720h",
		"keydesk.yaml: notify.lease_ttl: 2h0m0s is out of range 1s..1h",
		"keydesk.yaml: delivery.retry_for: \"2 days\" is not a duration (line 18): write it like 90s, 45m, 4h or 30d",
		"keydesk.yaml: log.level: \"loud\"",
		"keydesk.yaml: signing_key.file:",
		"keydesk.yaml: sender_auth.trusted_authserv_ids[0]: \"mx.buildmarKets.ai\" must be your MTA's host name in ASCII",
		"keydesk.yaml: sender_auth.internal_domains[0]: \"buildmarketſ.ai\" is not a domain name",
		"keydesk.yaml: sender_auth.relationship_managers[0]: \"Ron <rm@buildmarkets.ai>\" is not one email address",
		"keydesk.yaml: sender_auth.relationship_managers[1]: \"*@buildmarkets.ai\" is not one email address",
		"keydesk.yaml: sender_auth.microsoft365.tenant_id: \"buildmarkets.onmicrosoft.com\" is not a tenant ID",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestMissingVariableAndBothSecretForms(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "pw", "x")
	p := write(t, dir, "keydesk.yaml", "imap:\n  password: ${NOPE}\nsmtp:\n  password: a\n  password_file: pw\n")
	_, err := load(p, env(nil))
	for _, want := range []string{
		"keydesk.yaml: imap.password: environment variable NOPE is not set",
		"keydesk.yaml: smtp.password_file: give either password or password_file, not both",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in: %v", want, err)
		}
	}
}

type fakeChecker struct{ wrong map[string]string }

func (f fakeChecker) CheckContactKey(armored []byte, fp string, now time.Time) (time.Time, error) {
	if got, ok := f.wrong[string(armored)]; ok {
		return time.Time{}, fmt.Errorf("does not match the pinned fingerprint (got %s…)", got[:4])
	}
	return now.Add(400 * 24 * time.Hour), nil
}

const fp1 = "0123456789ABCDEF0123456789ABCDEF01234567"

func TestPartners(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "keys/acme.asc", "ACME KEY")
	write(t, dir, "keys/globex.asc", "SWAPPED KEY")
	write(t, dir, "prod.secret", "prod-secret-value\n")
	p := write(t, dir, "partners.yaml", `
partners:
  - id: acme
    name: Acme Capital
    requesters: ["*@acme.example", "CTO@acme-holdings.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: keys/acme.asc, fingerprint: "0123 4567 89AB CDEF 0123  4567 89ab cdef 0123 4567"}
    allowed_scopes: [accounts:read, trading:write]
    environments:
      sandbox: {api_key: bm_key_sb, api_secret: "${ACME_SB_SECRET}", auto_approve: true}
      production: {api_key: bm_key_prod, api_secret_file: prod.secret}
`)
	reg, err := loadPartners(p, fakeChecker{}, time.Now(), env(map[string]string{"ACME_SB_SECRET": "sb-secret-value"}))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := reg.Partner("acme")
	if !ok {
		t.Fatal("acme missing")
	}
	if a.TechnicalContact.Fingerprint != fp1 {
		t.Errorf("fingerprint not normalized: %s", a.TechnicalContact.Fingerprint)
	}
	if a.Environments["production"].APISecret.Reveal() != "prod-secret-value" || !a.Environments["sandbox"].AutoApprove {
		t.Errorf("environments: %+v", a.Environments)
	}
	if p, _ := reg.ByRequester("cto@acme-holdings.example"); p == nil || p.ID != "acme" {
		t.Error("requester addresses are case-insensitive")
	}
	if a.TechnicalContact.KeyExpires.IsZero() {
		t.Error("key expiry not recorded")
	}

	bad := write(t, dir, "partners-bad.yaml", `
partners:
  - id: acme
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: keys/acme.asc, fingerprint: "`+fp1+`"}
    environments: {sandbox: {api_key: k, api_secret: s}}
  - id: Acme!
    requesters: ["*@acme.example", "not an address", "*@localhost", "cto@acme-holdİngs.example"]
    technical_contact: {email: "nope", pgp_key_file: keys/missing.asc, fingerprint: "9F3A"}
    allowed_scopes: [trade:write]
    environments: {staging: {api_key: k}}
  - id: globex
    requesters: ["ops@globex.example"]
    technical_contact: {email: sec@globex.example, pgp_key_file: keys/globex.asc, fingerprint: "`+fp1+`"}
    environments: {production: {api_key: k}}
`)
	_, err = loadPartners(bad, fakeChecker{wrong: map[string]string{"SWAPPED KEY": "9F3A00"}}, time.Now(), env(nil))
	if err == nil {
		t.Fatal("bad partners accepted")
	}
	for _, want := range []string{
		`partners-bad.yaml: partners[1].id: "Acme!" must be`,
		`partners-bad.yaml: partners[1].requesters[0]: "*@acme.example" is also a requester of partner acme`,
		`partners-bad.yaml: partners[1].requesters[1]: "not an address" is neither`,
		`partners-bad.yaml: partners[1].requesters[2]: "*@localhost": the domain must be a full domain name`,
		`partners-bad.yaml: partners[1].requesters[3]: "cto@acme-holdİngs.example": the domain is not a valid internationalised domain name`,
		`partners-bad.yaml: partners[1].technical_contact.email: "nope" is not an email address`,
		`partners-bad.yaml: partners[1].technical_contact.fingerprint: "9F3A" is not a full fingerprint`,
		`partners-bad.yaml: partners[1].technical_contact.pgp_key_file:`,
		`partners-bad.yaml: partners[1].allowed_scopes[0]: "trade:write" is not a scope: did you mean trading:write?`,
		`partners-bad.yaml: partners[1].environments.staging: "staging" is not an environment`,
		`partners-bad.yaml: partners[2].technical_contact.fingerprint: key in keys/globex.asc: does not match the pinned fingerprint (got 9F3A…)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "api_secret") || strings.Contains(err.Error(), "api_key") {
		t.Errorf("credentials are the batch role's business (CheckCredentials), not the loader's:\n%v", err)
	}
}

// TestCheckCredentials: partners.yaml loads without API credentials (the
// roles other than batch run without them), and CheckCredentials lists
// each environment that lacks one, naming the file and the key.
func TestCheckCredentials(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "keys/acme.asc", "KEY")
	write(t, dir, "acme-prod.secret", "prod-secret-value\n")
	partner := func(id, envs string) string {
		return `
  - id: ` + id + `
    requesters: ["*@` + id + `.example"]
    technical_contact: {email: sec@` + id + `.example, pgp_key_file: keys/acme.asc, fingerprint: "` + fp1 + `"}
    environments:` + envs
	}
	full := `
      sandbox: {api_key: k1, api_secret: s1, auto_approve: true}
      production: {api_key: k2, api_secret_file: acme-prod.secret}`
	tests := []struct {
		name     string
		partners string
		vars     map[string]string
		want     []string // problems, in order; none: the batch role may start
	}{
		{name: "every credential given", partners: partner("acme", full) + partner("globex", full)},
		{name: "auto_approve alone", partners: partner("acme", "\n      sandbox: {auto_approve: true}"), want: []string{
			"partners.yaml: partners[0].environments.sandbox.api_key: is required by the batch role: the partner's key with keys:manage",
			"partners.yaml: partners[0].environments.sandbox.api_secret: is required by the batch role (or api_secret_file)",
		}},
		{name: "second partner's production secret", partners: partner("acme", full) + partner("globex", `
      sandbox: {api_key: k3, api_secret: s3}
      production: {api_key: k4}`), want: []string{
			"partners.yaml: partners[1].environments.production.api_secret: is required by the batch role (or api_secret_file)",
		}},
		{name: "secret file named by an unset variable", partners: partner("acme", `
      production: {api_key: k2, api_secret_file: "${ACME_PRODUCTION_SECRET_FILE:-}"}`), want: []string{
			"partners.yaml: partners[0].environments.production.api_secret: is required by the batch role (or api_secret_file)",
		}},
		{name: "secret file named by a set variable", partners: partner("acme", `
      production: {api_key: k2, api_secret_file: "${ACME_PRODUCTION_SECRET_FILE:-}"}`),
			vars: map[string]string{"ACME_PRODUCTION_SECRET_FILE": "acme-prod.secret"}},
		{name: "key without secret and secret without key", partners: partner("acme", `
      sandbox: {api_secret: s1}
      production: {api_key: k2}`), want: []string{
			"partners.yaml: partners[0].environments.sandbox.api_key: is required by the batch role",
			"partners.yaml: partners[0].environments.production.api_secret: is required by the batch role",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, dir, "partners.yaml", "partners:"+tc.partners+"\n")
			reg, err := loadPartners(p, nil, time.Now(), env(tc.vars))
			if err != nil {
				t.Fatalf("partners.yaml without credentials refused at load: %v", err)
			}
			err = CheckCredentials(p, reg)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("CheckCredentials: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckCredentials accepted missing credentials; want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(got) || !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d does not start %q:\n%v", i, w, err)
				}
			}
			if strings.Contains(err.Error(), "prod-secret-value") || strings.Contains(err.Error(), "s1") && !strings.Contains(tc.name, "without") {
				t.Errorf("a secret is quoted:\n%v", err)
			}
		})
	}
	if err := CheckCredentials("partners.yaml", nil); err != nil {
		t.Errorf("no registry (it did not load: its own problems are reported) gave %v", err)
	}
}

// TestSecretsNeverFormatted formats the whole loaded config and registry
// every way a program might, and looks for the secret values.
func TestSecretsNeverFormatted(t *testing.T) {
	dir := t.TempDir()
	secrets := []string{"imap-pass-XYZZY", "smtp-pass-PLUGH", "signing-pass-FROTZ", "sb-secret-GRUE", "prod-secret-ZORK"}
	write(t, dir, "keys/acme.asc", "KEY")
	write(t, dir, "keydesk.yaml", fmt.Sprintf(`
imap: {address: "imap.example.com:993", username: u, password: %q}
smtp: {address: "smtp.example.com:587", username: u, password: %q, from: a@b.example}
signing_key: {passphrase: %q}
`, secrets[0], secrets[1], secrets[2]))
	write(t, dir, "partners.yaml", fmt.Sprintf(`
partners:
  - id: acme
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: keys/acme.asc, fingerprint: %q}
    environments:
      sandbox: {api_key: k1, api_secret: %q}
      production: {api_key: k2, api_secret: %q}
`, fp1, secrets[3], secrets[4]))
	c, err := load(filepath.Join(dir, "keydesk.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := loadPartners(filepath.Join(dir, "partners.yaml"), nil, time.Now(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, v := range []any{c, *c, reg, *reg.Partners[0], reg.Partners[0].Environments} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "cfg", c, "partner", reg.Partners[0], "env", reg.Partners[0].Environments["sandbox"])
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "cfg", c, "secret", c.IMAP.Password)
	fmt.Fprint(&out, errors.New(fmt.Sprint(c.SMTP)))
	for _, s := range secrets {
		if bytes.Contains(out.Bytes(), []byte(s)) {
			t.Errorf("secret %q appears in formatted output", s)
		}
		if bytes.Contains(out.Bytes(), []byte(fmt.Sprintf("%x", s))) {
			t.Errorf("secret %q appears hex-encoded", s)
		}
	}
	if !bytes.Contains(out.Bytes(), []byte("[redacted]")) {
		t.Error("no [redacted] marker: were the secrets formatted at all?")
	}
	if c.IMAP.Password.Reveal() != secrets[0] {
		t.Error("the secret itself must still be usable")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"10485760": 10 << 20, "10MiB": 10 << 20, "20 MB": 20e6, "512KiB": 512 << 10, "1GiB": 1 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "ten", "-1", "10XB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestInboxPrefix(t *testing.T) {
	tests := []struct {
		prefix, wantErr string
	}{
		{"_INBOX_intake", ""},
		{"_INBOX.review", ""},
		{"_INBOX.>", "contains a wildcard"},
		{"_INBOX_*", "contains a wildcard"},
		{"_INBOX_intake.", "empty token"},
		{"_INBOX intake", "space or control character"},
		{"$JS.API", "reserves"},
		{strings.Repeat("i", 65), "use at most 64"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			p := write(t, t.TempDir(), "keydesk.yaml", fmt.Sprintf("nats: {inbox_prefix: %q}\n", tc.prefix))
			c, err := load(p, env(nil))
			if tc.wantErr == "" {
				if c == nil || c.NATS.InboxPrefix != tc.prefix {
					t.Fatalf("inbox_prefix %q not loaded: %v", tc.prefix, err)
				}
				if err != nil && strings.Contains(err.Error(), "nats.inbox_prefix") {
					t.Fatalf("inbox_prefix %q refused: %v", tc.prefix, err)
				}
				return
			}
			want := "keydesk.yaml: nats.inbox_prefix: "
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("inbox_prefix %q: err %v, want %q ... %q", tc.prefix, err, want, tc.wantErr)
			}
		})
	}
}

// TestEveryProblemAtOnce: one wrong key neither hides the other problems
// of its file nor adds false ones; an unknown key suggests the nearest
// known one; a missing credential names the variable that is not set.
// Each case lists the exact problems, in order.
func TestEveryProblemAtOnce(t *testing.T) {
	const contact = `
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: keys/acme.asc, fingerprint: "` + fp1 + `"}
`
	tests := []struct {
		name     string
		keydesk  string // keydesk.yaml; empty: none
		partners string // partners.yaml; empty: none
		vars     map[string]string
		want     []string // from load, then loadPartners, then checkCredentials
	}{
		{
			name:    "a typo does not hide a wrong value",
			keydesk: "batch:\n  shedule: \"@every 5m\"\nlog: {level: loud}\n",
			want: []string{
				"keydesk.yaml: batch.shedule: unknown key (line 2); did you mean schedule?",
				`keydesk.yaml: log.level: "loud" is not one of debug, info, warn, error`,
			},
		},
		{
			name:    "a missing password_file is one problem, not an unknown key too",
			keydesk: "smtp:\n  address: smtp.example.com:587\n  username: u\n  from: a@b.example\n  password_file: nowhere\n",
			want:    []string{"keydesk.yaml: smtp.password_file: open DIR/nowhere: no such file or directory"},
		},
		{
			name:    "did you mean a secret's _file form",
			keydesk: "imap:\n  address: imap.example.com:993\n  username: u\n  pasword_file: pw\n",
			want:    []string{"keydesk.yaml: imap.pasword_file: unknown key (line 4); did you mean password_file?"},
		},
		{
			name:    "nothing near: the README",
			keydesk: "imap_pasword: typo\n",
			want:    []string{"keydesk.yaml: imap_pasword: unknown key (line 1); see the README for the keys"},
		},
		{
			name:    "an unset variable in keydesk.yaml",
			keydesk: "imap:\n  address: imap.example.com:993\n  username: u\n  password: ${IMAP_PASSWORD}\n",
			want:    []string{"keydesk.yaml: imap.password: environment variable IMAP_PASSWORD is not set: set it, or write ${IMAP_PASSWORD:-} where it may be empty"},
		},
		{
			name:     "a typo in partners.yaml does not hide its values",
			partners: "partners:\n  - id: acme\n    requesters: [\"*@acme\"]\n    technical_contact: {email: sec@acme.example, pgp_key_file: keys/acme.asc, fingerprint: \"" + fp1 + "\"}\n    enviroments: {sandbox: {api_key: k, api_secret: s}}\n",
			want: []string{
				"partners.yaml: partners[0].enviroments: unknown key (line 5); did you mean environments?",
				`partners.yaml: partners[0].requesters[0]: "*@acme": the domain must be a full domain name`,
				"partners.yaml: partners[0].environments: configure sandbox and/or production credentials",
			},
		},
		{
			name:     "an unset API secret names its variable",
			partners: "partners:\n  - id: acme" + contact + "    environments: {sandbox: {api_key: k, api_secret: \"${ACME_SANDBOX_SECRET}\"}}\n",
			want:     []string{"partners.yaml: partners[0].environments.sandbox.api_secret: is required by the batch role (or api_secret_file): ACME_SANDBOX_SECRET is not set"},
		},
		{
			name:     "an unset secret file variable is named too",
			partners: "partners:\n  - id: acme" + contact + "    environments: {production: {api_key: \"${ACME_PROD_KEY}\", api_secret_file: \"${ACME_PRODUCTION_SECRET_FILE:-}\"}}\n",
			want: []string{
				"partners.yaml: partners[0].environments.production.api_key: is required by the batch role: the partner's key with keys:manage: ACME_PROD_KEY is not set",
				"partners.yaml: partners[0].environments.production.api_secret: is required by the batch role (or api_secret_file): ACME_PRODUCTION_SECRET_FILE is not set",
			},
		},
		{
			name:     "a set variable is not named",
			partners: "partners:\n  - id: acme" + contact + "    environments: {sandbox: {api_key: k, api_secret: \"${ACME_SANDBOX_SECRET}\"}}\n",
			vars:     map[string]string{"ACME_SANDBOX_SECRET": "s3cret"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "keys/acme.asc", "KEY")
			var got []string
			add := func(err error) {
				if err != nil {
					got = append(got, strings.Split(strings.ReplaceAll(err.Error(), dir, "DIR"), "\n")...)
				}
			}
			if tc.keydesk != "" {
				c, err := load(write(t, dir, "keydesk.yaml", tc.keydesk), env(tc.vars))
				if c == nil {
					t.Fatalf("no config returned, so nothing more could be checked: %v", err)
				}
				add(err)
			}
			if tc.partners != "" {
				p := write(t, dir, "partners.yaml", tc.partners)
				reg, err := loadPartners(p, nil, time.Now(), env(tc.vars))
				add(err)
				add(checkCredentials(p, reg, env(tc.vars)))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestExampleDigests holds the table of published example secrets to
// deploy/examples: every secret file, every ${VAR:-default} password and
// passphrase of the example configs, every example user, and nothing else.
func TestExampleDigests(t *testing.T) {
	const dir = "../deploy/examples"
	found := map[string]bool{}
	see := func(what, value string, known func(string) (string, bool)) {
		t.Helper()
		d, ok := known(value)
		if !ok {
			t.Errorf("%s is published in %s but not in exampleDigests", what, dir)
		}
		found[d] = true
	}
	secret := func(v string) (string, bool) { return ExampleSecret(keydesk.SecretString(v)) }
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	for _, f := range files {
		if d := filepath.Base(filepath.Dir(f)); (d == "secrets" || d == "partner-credentials") && !strings.HasSuffix(f, ".md") {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			see(f, strings.TrimRight(string(b), "\r\n"), secret)
		}
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "tls", "*-key.pem"))
	for _, f := range keys {
		what, ok := exampleFile(f)
		if !ok {
			t.Errorf("%s is published in %s but not in exampleDigests", f, dir)
		}
		found[what] = true
	}
	configs, _ := filepath.Glob(filepath.Join(dir, "keydesk*.yaml"))
	for _, f := range configs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(password|passphrase): "\$\{[A-Z_]+:-([^}]+)\}"`).FindAllStringSubmatch(string(b), -1) {
			see(f+" "+m[1], m[2], secret)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var uf struct {
		Users []struct {
			Name         string `yaml:"name"`
			PasswordHash string `yaml:"password_hash"`
			TokenSHA256  string `yaml:"token_sha256"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(b, &uf); err != nil || len(uf.Users) == 0 {
		t.Fatalf("users.yaml: %v", err)
	}
	for _, u := range uf.Users {
		see("token of "+u.Name, u.TokenSHA256, ExampleDigest)
		see("password_hash of "+u.Name, u.PasswordHash, ExampleText)
	}
	if len(found) != len(exampleDigests) {
		t.Errorf("exampleDigests holds %d digests, deploy/examples publishes %d secrets: remove the stale ones", len(exampleDigests), len(found))
	}
	if _, ok := ExampleSecret(keydesk.SecretString("a-real-password")); ok {
		t.Error("a secret of one's own is taken for an example")
	}
}

// TestExampleSecretsWarn: each kind of published secret in a config is a
// Warning naming its key; one's own is not.
func TestExampleSecretsWarn(t *testing.T) {
	exampleKey, err := filepath.Abs("../deploy/examples/tls/intake-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	ownKey := write(t, t.TempDir(), "own-key.pem", "-----BEGIN PRIVATE KEY-----\nown\n-----END PRIVATE KEY-----\n")
	tests := []struct {
		name string
		cfg  Config
		want string // empty: no warning
	}{
		{"example IMAP password", Config{IMAP: IMAP{MailServer: mailauth.MailServer{Password: keydesk.SecretString("example-imap-password")}}},
			"keydesk.yaml: imap.password: is the example IMAP password of deploy/examples/secrets/imap-password, published with keydesk: set your own"},
		{"example signing passphrase", Config{SigningKey: SigningKey{Passphrase: keydesk.SecretString("example-only-not-secret")}},
			"keydesk.yaml: signing_key.passphrase: is the example signing key passphrase"},
		{"example NATS TLS key", Config{NATS: NATS{TLSKey: exampleKey}},
			"keydesk.yaml: nats.tls_key: " + exampleKey + " is the example TLS key deploy/examples/tls/intake-key.pem"},
		{"own secrets", Config{IMAP: IMAP{MailServer: mailauth.MailServer{Password: keydesk.SecretString("own")}}, NATS: NATS{TLSKey: ownKey}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ExampleSecrets(&tc.cfg, "partners.yaml", nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("warned of one's own: %v", err)
				}
				return
			}
			var w *Warning
			if !errors.As(err, &w) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("ExampleSecrets = %v, want a Warning starting %q", err, tc.want)
			}
		})
	}
}
