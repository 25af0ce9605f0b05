// Package config reads keydesk.yaml and partners.yaml into typed structs.
//
// Invariants: ${VAR} is expanded in values only, after parsing, so an
// environment variable can never change the document's shape; every secret
// may come from "<name>_file", a relative one found first as systemd names
// the file of a directory loaded with LoadCredential= (secrets/imap-password
// as $CREDENTIALS_DIRECTORY/secrets_imap-password), then beside the file
// that names it, so one config works under systemd and without it;
// secrets are keydesk.Secret from the moment
// they are decoded; an unknown key is an error; validation collects every
// problem, each naming the file and the key, so `keydesk check` can show
// them all at once.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/mailauth"
)

// Config is keydesk.yaml.
type Config struct {
	// DataDir holds the embedded NATS store and local state. Default ./data.
	DataDir string `yaml:"data_dir"`
	// NATS: empty URL starts an embedded JetStream server.
	NATS NATS `yaml:"nats"`
	// IMAP is the support mailbox that intake reads.
	IMAP IMAP `yaml:"imap"`
	// SMTP is the submission server delivery sends through.
	SMTP SMTP `yaml:"smtp"`
	// API holds the Buildmarkets API endpoint of each environment.
	API API `yaml:"api"`
	// SigningKey is keydesk's own OpenPGP key; every delivery is signed with it.
	SigningKey SigningKey `yaml:"signing_key"`
	// SenderAuth says whose Authentication-Results count and who forwards.
	SenderAuth SenderAuth `yaml:"sender_auth"`
	// Batch is when approved requests are turned into keys.
	Batch Batch `yaml:"batch"`
	// Review is the support team's web UI and JSON API.
	Review Review `yaml:"review"`
	// Delivery is how long outgoing mail is retried.
	Delivery Delivery `yaml:"delivery"`
	// Notify tells support of work that waits: a chat webhook and a digest email.
	Notify Notify `yaml:"notify"`
	// Rotation is the key rotation policy.
	Rotation Rotation `yaml:"rotation"`
	// Templates: a directory whose files override the embedded templates.
	Templates Templates `yaml:"templates"`
	// Log: level (debug, info, warn, error) and format (text, json; empty:
	// text on a terminal, JSON otherwise).
	Log Log `yaml:"log"`
	// PartnersFile is the partner registry. Default partners.yaml beside this file.
	PartnersFile string `yaml:"partners_file"`

	// File is the path the config was read from; relative paths in it are
	// taken relative to its directory.
	File string `yaml:"-"`
}

// NATS is the JetStream connection.
type NATS struct {
	// URL of the NATS cluster; empty runs an embedded server under data_dir.
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials (.creds) file.
	CredsFile string `yaml:"creds_file"`
	// Replicas of every stream and bucket: 1 embedded, 3 on a cluster.
	Replicas int `yaml:"replicas"`
	// Listen makes the embedded server listen on this address (host:port)
	// too; by default it is reached in process only.
	Listen string `yaml:"listen"`
	// TLSCAFile verifies the cluster's certificate; TLSCert/TLSKey is a client certificate.
	TLSCAFile string `yaml:"tls_ca_file"`
	TLSCert   string `yaml:"tls_cert"`
	TLSKey    string `yaml:"tls_key"`
	// SkipSetup leaves streams and buckets as they are instead of creating
	// or updating them at start: for roles whose NATS user may not (the
	// least-privilege users of deploy/nats); `keydesk nats-setup` makes them
	// with the admin user. Default false.
	SkipSetup bool `yaml:"skip_setup"`
	// AuditMaxBytes bounds the AUDIT stream: when full it drops its oldest
	// events, and support is alerted at 80%. Unset: 1GiB (the queue
	// package's default). Applied by whichever instance sets up streams.
	AuditMaxBytes Size `yaml:"audit_max_bytes"`
	// InboxPrefix replaces _INBOX as the prefix of this instance's reply
	// subjects, so its NATS user may be allowed to subscribe to
	// <prefix>.> only and no role reads another's replies (deploy/nats
	// gives each role user _INBOX_<role>). Default empty: _INBOX.
	InboxPrefix string `yaml:"inbox_prefix"`
}

// IMAP is the mailbox intake reads.
type IMAP struct {
	mailauth.MailServer `yaml:",inline"`
	// Mailbox is read for requests. Default INBOX.
	Mailbox string `yaml:"mailbox"`
	// ProcessedMailbox receives mail whose requests are queued. Default Processed.
	ProcessedMailbox string `yaml:"processed_mailbox"`
	// RejectedMailbox receives mail set aside, with the reason recorded. Default Rejected.
	RejectedMailbox string `yaml:"rejected_mailbox"`
	// PollInterval is the scan interval when the server has no IDLE, and
	// the safety rescan when it has. Default 60s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxMessageBytes is how much of an email is kept for review: the raw
	// copy of a larger one is cut there (marked, and each attachment left
	// out named on its requests), while its text is still read whole.
	// Default 10 MiB.
	MaxMessageBytes Size `yaml:"max_message_bytes"`
	// HardMaxMessageBytes: larger messages are set aside unread, from their
	// header. At least max_message_bytes. Default 100 MiB.
	HardMaxMessageBytes Size `yaml:"hard_max_message_bytes"`
	// MaxAttempts: an email whose processing ended with the process this
	// many times (a crash, an out-of-memory kill) is set aside unparsed,
	// and support is alerted. Default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// LeaseTTL is how long the mailbox lease outlives an instance that
	// dies while polling (it is renewed at a third of it): a standby, or
	// the same instance restarted, reads the mailbox again within about
	// this long. Default 30s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// SMTP is the outgoing mail server.
type SMTP struct {
	mailauth.MailServer `yaml:",inline"`
	// From is keydesk's sender address, e.g. "Buildmarkets Support <support@buildmarkets.ai>".
	From string `yaml:"from"`
	// SupportAddress receives batch reports and alerts.
	SupportAddress string `yaml:"support_address"`
	// HeloName is the name given in EHLO. Default: the host name.
	HeloName string `yaml:"helo_name"`
}

// API is the Buildmarkets API per environment.
type API struct {
	Sandbox    APIEnv `yaml:"sandbox"`
	Production APIEnv `yaml:"production"`
}

// Env returns the settings of one environment.
func (a *API) Env(e keydesk.Environment) *APIEnv {
	if e == keydesk.Production {
		return &a.Production
	}
	return &a.Sandbox
}

// APIEnv is one environment's endpoint.
type APIEnv struct {
	// BaseURL, e.g. https://dev-tapp-api.tappengine.com (paths start /v1/).
	BaseURL string `yaml:"base_url"`
	// Timeout of each API call. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// RateLimit in requests per second, across all partners. Default 5.
	RateLimit float64 `yaml:"rate_limit"`
}

// SigningKey is keydesk's OpenPGP signing key.
type SigningKey struct {
	// File holds the armored private key.
	File string `yaml:"file"`
	// Passphrase unlocks it (or passphrase_file).
	Passphrase keydesk.Secret `yaml:"passphrase"`
}

// SenderAuth is the sender authentication policy.
type SenderAuth struct {
	// TrustedAuthservIDs: only Authentication-Results headers stamped by
	// these (our own MTA) count.
	TrustedAuthservIDs []string `yaml:"trusted_authserv_ids"`
	// RequireDMARC refuses mail without a trusted dmarc=pass. Default true.
	RequireDMARC *bool `yaml:"require_dmarc"`
	// InternalDomains are Buildmarkets' own: Relationship Managers forward
	// from there, and a forward of mail from there is never a new request.
	// Default [buildmarkets.ai].
	InternalDomains []string `yaml:"internal_domains"`
	// RelationshipManagers, when set, are the only addresses whose
	// forwards are read as a partner's request (still flagged for a person
	// to approve). Without it, every address at an internal domain is
	// trusted so: a shared mailbox, a no-reply sender or one compromised
	// account there could then vouch for any partner. Exact addresses only.
	RelationshipManagers []string `yaml:"relationship_managers"`
	// Microsoft365 trusts the stamp of the Microsoft 365 tenant that hosts
	// the support mailbox, which has no authserv-id. Unset: not trusted.
	Microsoft365 Microsoft365 `yaml:"microsoft365"`
}

// Microsoft365 names the support mailbox's own Microsoft 365 tenant.
type Microsoft365 struct {
	// TenantID is the tenant's directory ID (a GUID, shown in the Entra
	// admin center as "Tenant ID"); mail delivered by that tenant carries
	// it in X-MS-Exchange-CrossTenant-Id. Empty: Exchange Online's
	// Authentication-Results are not trusted.
	TenantID string `yaml:"tenant_id"`
}

// DMARCRequired reports the effective require_dmarc.
func (s SenderAuth) DMARCRequired() bool { return s.RequireDMARC == nil || *s.RequireDMARC }

// Batch is the key-generation schedule.
type Batch struct {
	// Schedule: cron with an optional CRON_TZ= prefix, or @every 5m.
	// Default "CRON_TZ=UTC 0 10,16 * * 1-5".
	Schedule string `yaml:"schedule"`
	// Concurrency bounds API calls in flight per batch. Default 8.
	Concurrency int `yaml:"concurrency"`
	// LeaseTTL is how long the one-batch-at-a-time lease outlives an
	// instance that dies while running a batch (it is renewed at a third of
	// it while the batch runs). A batch asked for while the lease is held
	// waits up to this long for it. Default 30s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// InventoryInterval is how often the batch role lists every partner
	// account's keys for the key inventory, beside the list each batch
	// makes. Default 1h.
	InventoryInterval time.Duration `yaml:"inventory_interval"`
}

// Review is the web UI and JSON API.
type Review struct {
	// Listen address. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// UsersFile holds the staff (users.yaml). Default users.yaml beside this file.
	UsersFile string `yaml:"users_file"`
	// FourEyes: requests matching any of these (an environment or a scope)
	// need two approvers. Default [production, keys:manage].
	FourEyes []string `yaml:"four_eyes"`
	// TLSCert and TLSKey serve HTTPS when both are set.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// SessionIdle logs a session out after this long unused. Default 30m.
	SessionIdle time.Duration `yaml:"session_idle"`
	// BaseURL is the UI's public address, for links in emails.
	BaseURL string `yaml:"base_url"`
	// AgeTarget is how long a request should wait for review: the queue
	// shows an age past it in amber, past twice it in red. Default 4h.
	AgeTarget time.Duration `yaml:"age_target"`
	// LocalLogin keeps the users.yaml passwords as a way to sign in (the
	// break-glass accounts beside single sign-on). Default true; false
	// refuses every password sign-in, and needs oidc.
	LocalLogin *bool `yaml:"local_login,omitempty"`
	// OIDC is single sign-on through the company's identity provider.
	// Absent, or an empty issuer: none.
	OIDC OIDC `yaml:"oidc,omitempty"`
}

// PasswordLogin reports whether review.local_login lets staff sign in
// with a users.yaml password (the default).
func (r Review) PasswordLogin() bool { return r.LocalLogin == nil || *r.LocalLogin }

// OIDC is the OpenID Connect relying party of the review UI.
type OIDC struct {
	// Issuer is the identity provider's issuer URL (its discovery document
	// is Issuer + /.well-known/openid-configuration). https://, or http://
	// to a loopback host. Empty: no single sign-on.
	Issuer string `yaml:"issuer"`
	// ClientID is keydesk's client (application) ID at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client's secret (or client_secret_file).
	ClientSecret keydesk.Secret `yaml:"client_secret"`
	// RedirectURL is where the provider sends the browser back; register
	// it there. Default review.base_url + /login/oidc/callback.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes asked for. Default [openid, email, profile]; add "groups"
	// where the provider needs it for the groups claim.
	Scopes []string `yaml:"scopes"`
	// RolesClaim is the claim of the ID token (or, if the ID token lacks
	// it, of userinfo) that lists the person's groups: a string or a list;
	// a dotted path reaches a nested claim (realm_access.roles). Default groups.
	RolesClaim string `yaml:"roles_claim"`
	// Roles maps each role to the groups (values of RolesClaim) that give
	// it; the highest role a person's groups give wins.
	Roles OIDCRoles `yaml:"roles"`
	// ReauthAfter: an approval needs a sign-in at the provider newer than
	// this; an older one sends the person through the provider again.
	// 0 (default): never asks.
	ReauthAfter time.Duration `yaml:"reauth_after"`
	// DisplayName is the words on the sign-in button. Default "Sign in
	// with single sign-on".
	DisplayName string `yaml:"display_name"`
}

// Enabled reports whether single sign-on is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

// OIDCRoles lists, per role, the groups that give it.
type OIDCRoles struct {
	Viewer   []string `yaml:"viewer"`
	Approver []string `yaml:"approver"`
	Admin    []string `yaml:"admin"`
}

// Count is the number of groups mapped to any role.
func (r OIDCRoles) Count() int { return len(r.Viewer) + len(r.Approver) + len(r.Admin) }

// Delivery is the outgoing mail policy.
type Delivery struct {
	// RetryFor: temporary failures are retried this long. Default 48h.
	RetryFor time.Duration `yaml:"retry_for"`
	// RevokeUndeliveredAfter: a key not delivered by then is revoked. Default 72h.
	RevokeUndeliveredAfter time.Duration `yaml:"revoke_undelivered_after"`
	// AckWait is how long an outgoing message taken by an instance that
	// died waits before another instance (or the same one restarted) gets
	// it; a live instance reports progress every third of it, so it never
	// cuts a slow SMTP dialogue short. Default 2m.
	AckWait time.Duration `yaml:"ack_wait"`
}

// Notify is how support hears of work that waits without watching the
// queue; the review role sends both.
type Notify struct {
	// WebhookURL receives a JSON {"text": ...} post for each request that
	// enters pending_review (Slack, Mattermost and Teams incoming webhooks
	// accept it). Its path holds the channel's token, so it is a secret
	// (or webhook_url_file); https://, or http:// to loopback only. Empty:
	// no webhook.
	WebhookURL keydesk.Secret `yaml:"webhook_url"`
	// Digest is the schedule of the email to smtp.support_address that
	// lists what waits (pending_review, blocked, delivery_failed), in the
	// form of batch.schedule, e.g. "CRON_TZ=UTC 0 9 * * 1-5". Empty: no digest.
	Digest string `yaml:"digest"`
	// LeaseTTL is how long the notify lease outlives an instance that dies
	// while holding it (it is renewed at a third of it): a standby, or the
	// same instance restarted, sends notifications again within about
	// this long. Default 30s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// Rotation is the key rotation policy and the grace of a rotation.
type Rotation struct {
	// MaxAge: keys older than MaxAge − RemindBefore are listed on the
	// partner page and in the digest, and their requester is reminded
	// once. 0 (unset): no policy.
	MaxAge time.Duration `yaml:"max_age"`
	// RemindBefore is how long before MaxAge the reminder goes (default 30d).
	RemindBefore time.Duration `yaml:"remind_before"`
	// Grace is how long the old key of a rotation stays live after the
	// new one is delivered, unless the contact confirms sooner (default 7d).
	Grace time.Duration `yaml:"grace"`
}

// Templates overrides the embedded templates.
type Templates struct {
	// Dir holds files named like the embedded ones.
	Dir string `yaml:"dir"`
}

// Log is the logging setup.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Size is a byte count written as a number or with a unit (10MiB, 20MB).
type Size int64

// UnmarshalText reads 10485760, 10MiB, 10MB, 512KiB.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	*s = v
	return err
}

// ParseSize reads a byte count with an optional unit.
func ParseSize(str string) (Size, error) {
	t := strings.TrimSpace(str)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size: write a number of bytes or e.g. 10MiB", str)
	}
	return Size(n * mult), nil
}

// Defaults are the values of keys left out.
func (c *Config) applyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DataDir, "./data")
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	def(&c.IMAP.Mailbox, "INBOX")
	def(&c.IMAP.ProcessedMailbox, "Processed")
	def(&c.IMAP.RejectedMailbox, "Rejected")
	def((*string)(&c.IMAP.Security), string(mailauth.SecurityTLS))
	def((*string)(&c.SMTP.Security), string(mailauth.SecurityStartTLS))
	def(&c.IMAP.Auth, "plain")
	def(&c.SMTP.Auth, "plain")
	defDur(&c.IMAP.PollInterval, 60*time.Second)
	defDur(&c.IMAP.LeaseTTL, 30*time.Second)
	defDur(&c.IMAP.Timeout, 60*time.Second)
	defDur(&c.SMTP.Timeout, 60*time.Second)
	if c.IMAP.MaxMessageBytes == 0 {
		c.IMAP.MaxMessageBytes = 10 << 20
	}
	if c.IMAP.HardMaxMessageBytes == 0 {
		c.IMAP.HardMaxMessageBytes = max(100<<20, c.IMAP.MaxMessageBytes)
	}
	if c.IMAP.MaxAttempts == 0 {
		c.IMAP.MaxAttempts = 3
	}
	for _, e := range []*APIEnv{&c.API.Sandbox, &c.API.Production} {
		defDur(&e.Timeout, 30*time.Second)
		if e.RateLimit == 0 {
			e.RateLimit = 5
		}
	}
	if c.SenderAuth.InternalDomains == nil {
		c.SenderAuth.InternalDomains = []string{"buildmarkets.ai"}
	}
	def(&c.Batch.Schedule, "CRON_TZ=UTC 0 10,16 * * 1-5")
	if c.Batch.Concurrency == 0 {
		c.Batch.Concurrency = 8
	}
	defDur(&c.Batch.LeaseTTL, 30*time.Second)
	defDur(&c.Notify.LeaseTTL, 30*time.Second)
	defDur(&c.Batch.InventoryInterval, time.Hour)
	def(&c.Review.Listen, "127.0.0.1:8080")
	def(&c.Review.UsersFile, "users.yaml")
	if c.Review.FourEyes == nil {
		c.Review.FourEyes = []string{string(keydesk.Production), string(keydesk.ScopeKeysManage)}
	}
	defDur(&c.Review.SessionIdle, 30*time.Minute)
	defDur(&c.Review.AgeTarget, 4*time.Hour)
	c.Review.OIDC.applyDefaults(c.Review.BaseURL)
	defDur(&c.Rotation.RemindBefore, 30*24*time.Hour)
	defDur(&c.Rotation.Grace, 7*24*time.Hour)
	defDur(&c.Delivery.RetryFor, 48*time.Hour)
	defDur(&c.Delivery.RevokeUndeliveredAfter, 72*time.Hour)
	defDur(&c.Delivery.AckWait, 2*time.Minute)
	def(&c.Log.Level, "info")
	def(&c.PartnersFile, "partners.yaml")
}

// Default returns a config with every default applied and nothing else.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

// Load reads, expands, defaults and validates keydesk.yaml. The error lists
// every problem found (errors.Join), each naming the file and the key.
// Unless the file cannot be read or is not YAML at all, the config is
// returned with the error, for checking further (partners.yaml, users.yaml);
// a caller that runs must stop at any error.
func Load(path string) (*Config, error) {
	return load(path, os.Getenv)
}

func load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := &Config{File: path}
	decoded, derr := decode(filepath.Base(path), filepath.Dir(path), data, c, getenv, nil)
	if !decoded {
		return nil, derr
	}
	c.File = path
	c.applyDefaults()
	// A typo in one key must not hide the problems of the others, nor
	// those of partners.yaml: `keydesk check` goes on with this config.
	return c, errors.Join(derr, c.Validate())
}

// Path resolves p relative to the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// Validate checks what is config's own and returns all problems joined,
// section by section in the order of the file: the NATS connection, sender
// authentication, the API endpoints, the review listener, files named,
// and rules that span sections. The settings of one role (the imap and
// smtp servers, the mailbox, batch, the delivery policy, smtp.from) are
// that role's package's to judge: its Options.Validate, which `keydesk
// check` and serve ask (cmd/keydesk).
func (c *Config) Validate() error {
	v := &validator{c: c, file: c.fileName()}
	v.nats()
	v.senderAuth()
	v.api()
	v.checkFile("signing_key.file", c.SigningKey.File)
	v.review()
	v.notify()
	v.rest()
	return errors.Join(v.errs...)
}

// validator collects the problems of one Config, each naming the file and
// the key.
type validator struct {
	c    *Config
	file string
	errs []error
}

func (v *validator) bad(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s: %s", v.file, key, fmt.Sprintf(format, args...)))
}

// checkFile reports a file named at key that cannot be found.
func (v *validator) checkFile(key, p string) {
	if p == "" {
		return
	}
	if _, err := os.Stat(v.c.Path(p)); err != nil {
		v.bad(key, "%v", err)
	}
}

func (v *validator) nats() {
	n := v.c.NATS
	if n.Replicas < 1 || n.Replicas > 5 {
		v.bad("nats.replicas", "%d is out of range: use 1 (embedded) or 3 (cluster)", n.Replicas)
	}
	if n.URL == "" && n.Replicas != 1 {
		v.bad("nats.replicas", "the embedded server (nats.url empty) is a single node: replicas must be 1")
	}
	if n.Listen != "" {
		if _, _, err := net.SplitHostPort(n.Listen); err != nil {
			v.bad("nats.listen", "%q is not host:port", n.Listen)
		}
	}
	if n.AuditMaxBytes != 0 && n.AuditMaxBytes < 1<<20 {
		v.bad("nats.audit_max_bytes", "%d is too small for an audit trail: at least 1MiB (default 1GiB)", n.AuditMaxBytes)
	}
	if n.InboxPrefix != "" {
		if err := checkInboxPrefix(n.InboxPrefix); err != nil {
			v.bad("nats.inbox_prefix", "%v", err)
		}
	}
	v.checkFile("nats.creds_file", n.CredsFile)
	v.checkFile("nats.tls_ca_file", n.TLSCAFile)
}

// guidRE is a GUID as Microsoft writes tenant IDs.
var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (v *validator) senderAuth() {
	sa := v.c.SenderAuth
	for i, id := range sa.TrustedAuthservIDs {
		if id = strings.TrimSpace(id); id == "" || strings.ContainsFunc(id, func(r rune) bool { return r > unicode.MaxASCII || r <= ' ' }) {
			v.bad(fmt.Sprintf("sender_auth.trusted_authserv_ids[%d]", i), "%q must be your MTA's host name in ASCII: a non-ASCII authserv-id is never trusted", id)
		}
	}
	for i, d := range sa.InternalDomains {
		if _, ok := keydesk.DomainKey(d); !ok || strings.Contains(d, "@") {
			v.bad(fmt.Sprintf("sender_auth.internal_domains[%d]", i), "%q is not a domain name (write it in lower case, or in its xn-- form)", d)
		}
	}
	if id := sa.Microsoft365.TenantID; id != "" && !guidRE.MatchString(id) {
		v.bad("sender_auth.microsoft365.tenant_id", "%q is not a tenant ID: write the GUID shown as Tenant ID in the Microsoft Entra admin center (8-4-4-4-12 hex digits)", id)
	}
	for i, a := range sa.RelationshipManagers {
		if pa, err := mail.ParseAddress(a); err != nil || pa.Address != strings.TrimSpace(a) || strings.HasPrefix(a, "*") {
			v.bad(fmt.Sprintf("sender_auth.relationship_managers[%d]", i), "%q is not one email address (no name, no *@domain)", a)
		} else if _, ok := keydesk.AddressKey(a); !ok {
			v.bad(fmt.Sprintf("sender_auth.relationship_managers[%d]", i), "%q: the domain is not a valid domain name", a)
		}
	}
}

func (v *validator) api() {
	for _, e := range keydesk.Environments {
		a := v.c.API.Env(e)
		key := "api." + string(e)
		if a.BaseURL != "" && !strings.HasPrefix(a.BaseURL, "https://") && !strings.HasPrefix(a.BaseURL, "http://") {
			v.bad(key+".base_url", "%q must start with https://", a.BaseURL)
		}
		if strings.HasPrefix(a.BaseURL, "http://") && !urlIsLoopback(a.BaseURL) {
			v.bad(key+".base_url", "%q sends API secrets in clear text: use https:// (http:// only to loopback)", a.BaseURL)
		}
		if a.RateLimit < 0 {
			v.bad(key+".rate_limit", "must be positive")
		}
	}
}

func (v *validator) review() {
	r := v.c.Review
	if _, _, err := net.SplitHostPort(r.Listen); err != nil {
		v.bad("review.listen", "%q is not host:port", r.Listen)
	}
	if (r.TLSCert == "") != (r.TLSKey == "") {
		v.bad("review.tls_cert", "give both tls_cert and tls_key, or neither")
	}
	v.checkFile("review.tls_cert", r.TLSCert)
	v.checkFile("review.tls_key", r.TLSKey)
	for i, fe := range r.FourEyes {
		if _, err := keydesk.ParseEnvironment(fe); err == nil {
			continue
		}
		if !keydesk.Scope(fe).Valid() {
			v.bad(fmt.Sprintf("review.four_eyes[%d]", i), "%q is neither an environment nor a scope", fe)
		}
	}
	if r.AgeTarget < time.Minute || r.AgeTarget > 30*24*time.Hour {
		v.bad("review.age_target", "%s is out of range 1m..720h (default 4h)", r.AgeTarget)
	}
	v.oidc()
}

func (v *validator) notify() {
	n := v.c.Notify
	if !n.WebhookURL.IsZero() {
		if err := CheckWebhookURL(n.WebhookURL.Reveal()); err != nil {
			v.bad("notify.webhook_url", "%v", err)
		}
	}
	if n.Digest != "" && v.c.SMTP.SupportAddress == "" {
		v.bad("notify.digest", "the digest goes to smtp.support_address, which is not set")
	}
	if n.LeaseTTL < time.Second || n.LeaseTTL > time.Hour {
		v.bad("notify.lease_ttl", "%s is out of range 1s..1h", n.LeaseTTL)
	}
}

// CheckWebhookURL accepts an absolute https:// URL with a host, or
// http:// to a loopback host. Its errors never quote the URL's path or
// query, which hold the channel's token.
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return errors.New("is not a URL: give the incoming webhook's address as the chat service shows it")
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("is not an absolute URL with a host: write https://host/path")
	case u.User != nil:
		return fmt.Errorf("holds a user name or password before the host (%s): the webhook's token belongs in its path", u.Scheme+"://…@"+u.Hostname())
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && mailauth.IsLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("http://%s sends the webhook's token in clear text: use https:// (http:// only to loopback)", u.Host)
	}
	return fmt.Errorf("scheme %q: use https://", u.Scheme)
}

// rest checks the log and templates sections, and the one rule of the
// delivery section that spans two roles (batch revokes, delivery retries).
func (v *validator) rest() {
	d := v.c.Delivery
	if d.RevokeUndeliveredAfter < d.RetryFor {
		v.bad("delivery.revoke_undelivered_after", "%s is shorter than delivery.retry_for %s", d.RevokeUndeliveredAfter, d.RetryFor)
	}
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "%q is not one of debug, info, warn, error", v.c.Log.Level)
	}
	switch v.c.Log.Format {
	case "", "text", "json":
	default:
		v.bad("log.format", "%q is not text or json", v.c.Log.Format)
	}
	if v.c.Templates.Dir != "" {
		v.checkFile("templates.dir", v.c.Templates.Dir)
	}
}

func urlIsLoopback(u string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	hostport, _, _ := strings.Cut(rest, "/")
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return mailauth.IsLoopback(strings.Trim(host, "[]"))
}

// checkInboxPrefix accepts what a NATS user can be allowed to subscribe to
// as <prefix>.>: dot-separated non-empty tokens of printable characters,
// no wildcards, not a server ($) subject, at most 64 bytes (the queue
// package checks the same when it connects).
func checkInboxPrefix(p string) error {
	const example = "use a plain subject such as _INBOX_intake"
	if len(p) > 64 {
		return fmt.Errorf("%d bytes long: use at most 64", len(p))
	}
	if strings.HasPrefix(p, "$") {
		return fmt.Errorf("%q starts with $, which the NATS server reserves: %s", p, example)
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty token (a leading, trailing or double dot): %s", p, example)
		}
		if strings.ContainsAny(tok, "*>") {
			return fmt.Errorf("%q contains a wildcard: %s", p, example)
		}
		if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("%q contains a space or control character: %s", p, example)
		}
	}
	return nil
}
