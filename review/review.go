// Package review is the support team's face on keydesk: a server-rendered
// web UI (login, queue, request page, four eyes, batches, audit, mail
// log) and the JSON API the CLI uses, over the same actions and rules.
//
// It changes records only through the queue package, and the roles act on
// them: it never imports the crypto, bmapi or batch packages (a test holds
// this), so the web face can touch no key material and call no API. "Run
// now" writes a batch request that the batch role picks up.
//
// Security model, kept by every handler:
//   - Every value from an email is hostile. Pages are html/template
//     (contextual escaping); an email is shown as text, never as HTML; the
//     CSP forbids inline script and framing.
//   - The UI authenticates with server-side sessions in the sessions KV
//     bucket (shared by every review instance), keyed by the SHA-256 of the
//     cookie so a bucket dump yields no live session; the cookie is
//     HttpOnly, SameSite=Strict and Secure (omitted only for plain HTTP on
//     loopback); sessions end after Options.SessionIdle unused.
//   - Every state-changing request passes http.CrossOriginProtection and,
//     for the UI, a per-session CSRF token compared in constant time.
//   - The API authenticates with per-user bearer tokens stored as SHA-256
//     digests in users.yaml; the roles and four-eyes rules are the UI's.
//   - Every change is a compare-and-set on the record's revision: of two
//     reviewers acting at once, one wins and the other gets a 409.
//   - Logins are rate-limited per name and per client address. Failed
//     and throttled ones reach the audit trail rolled up (one event per
//     name, address and minute, with a count), and a name that is no
//     staff member's only as a digest: it may be a password.
package review

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
	"github.com/buildmarkets/keydesk/templates"
)

// Options configure a Server.
type Options struct {
	// Queue is where requests, sessions, batches and the audit trail live.
	Queue *queue.Conn
	// Users returns the staff in force (users.yaml, reloaded on change).
	Users func() *users.Set
	// Partners returns the partner registry in force (contact key
	// fingerprint and expiry come from it).
	Partners func() *keydesk.Registry
	// Templates holds the web pages and the rejection email.
	Templates *templates.Set
	// FourEyes lists the environments and scopes whose requests need two
	// different approvers (review.four_eyes).
	FourEyes []string
	// SessionIdle ends a session unused this long. Default 30m.
	SessionIdle time.Duration
	// InsecureCookie drops the cookie's Secure attribute: only for plain
	// HTTP on a loopback address, where browsers would refuse it otherwise.
	InsecureCookie bool
	// TLS says the UI is served over HTTPS (adds Strict-Transport-Security).
	TLS bool
	// NextRun returns the next scheduled batch run after now (nil: not shown).
	NextRun func(now time.Time) time.Time
	// Location is the time zone of the batch schedule, for display.
	Location *time.Location
	// SupportAddress is support's own address (smtp.support_address), for
	// mail to support. A partner's email never names it: partners answer
	// the email they received.
	SupportAddress string
	// Metrics receives keydesk_review_actions_total; nil keeps them private.
	Metrics *metrics.Registry
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Mail returns intake's record of every email it took out of the
	// inbox, for the mail log (GET /mail, /api/v1/mail); nil: the log is
	// not available. review reads it through this func so that it needs
	// nothing of the intake package.
	Mail func(ctx context.Context) ([]MailEntry, error)
	// AgeTarget is how long a request should wait for review
	// (review.age_target): the queue shows an age past it in amber, past
	// twice it in red. Default 4h.
	AgeTarget time.Duration
	// RequestTimeout bounds what one request waits for the store: within
	// it a call the NATS cluster cannot answer (a leader election) is
	// tried again; past it the person gets a 503 with Retry-After.
	// Default 15s.
	RequestTimeout time.Duration
	// RotationMaxAge and RotationRemindBefore are the rotation policy
	// (rotation.max_age, rotation.remind_before): keys older than their
	// difference show as due for rotation. A max age of 0: no policy.
	RotationMaxAge, RotationRemindBefore time.Duration
	// OIDC is single sign-on through the company's identity provider
	// (review.oidc); nil: none.
	OIDC *OIDCOptions
	// PasswordLoginOff refuses every password sign-in (review.local_login:
	// false): staff sign in by single sign-on only.
	PasswordLoginOff bool
}

// Server serves the UI and the API.
type Server struct {
	o       Options
	log     *slog.Logger
	pages   map[string]*template.Template
	actions *metrics.Counter
	logins  *loginLimiter
	// loginAudit rolls up failed sign-ins for the audit trail.
	loginAudit *loginAudit
	// rp is the single sign-on relying party; nil: none. ssoStarts
	// bounds the sign-ins begun per client address.
	rp        *relyingParty
	ssoStarts *loginLimiter
	handler   http.Handler
}

// page names: each is templates/web/<name>.html over layout.html.
var pageNames = []string{"login", "queue", "request", "batches", "audit", "mail", "error", "partners", "partner"}

// New builds a Server; the templates are parsed now, so a broken override
// is an error at start.
func New(o Options) (*Server, error) {
	if o.Queue == nil || o.Users == nil || o.Templates == nil {
		return nil, errors.New("review: Options.Queue, Users and Templates are required")
	}
	if o.Partners == nil {
		o.Partners = func() *keydesk.Registry { return &keydesk.Registry{} }
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = 30 * time.Minute
	}
	if o.AgeTarget <= 0 {
		o.AgeTarget = 4 * time.Hour
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	s := &Server{
		o: o, log: o.Logger,
		actions: o.Metrics.Counter("keydesk_review_actions_total", "Staff actions taken in the review UI and API, by action.", "action"),
		logins:  newLoginLimiter(), loginAudit: newLoginAudit(), ssoStarts: newSSOLimiter(),
		pages: map[string]*template.Template{},
	}
	if o.OIDC != nil && o.OIDC.Issuer != "" {
		s.rp = newRelyingParty(*o.OIDC)
	}
	for _, n := range pageNames {
		t, err := o.Templates.ParseWeb(s.funcs(), "web/layout.html", "web/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("review: web template %s: %w", n, err)
		}
		s.pages[n] = t
	}
	s.handler = s.routes()
	return s, nil
}

// Handler serves everything under /: the UI, /static/ and /api/v1/.
func (s *Server) Handler() http.Handler { return s.handler }

// Run sweeps expired sessions and writes out the rolled-up failed
// sign-ins of each minute until ctx ends, then writes out the last.
//
// It first fetches the identity provider's discovery document, if single
// sign-on is set up: a provider that does not answer is logged, and the
// first sign-in tries again.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Discover(ctx); err != nil {
		s.log.Warn("review: single sign-on unavailable until the identity provider answers", "err", err)
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.flushLogins(fctx, true)
			cancel()
			return nil
		case <-t.C:
			s.flushLogins(ctx, false)
			if n, err := s.sweepSessions(ctx); err != nil {
				s.log.Warn("review: sweep sessions", "err", err)
			} else if n > 0 {
				s.log.Debug("review: expired sessions removed", "count", n)
			}
		}
	}
}

func (s *Server) now() time.Time { return s.o.Now() }

// fourEyes reports whether r needs two different approvers.
func (s *Server) fourEyes(r *keydesk.Request) bool {
	for _, fe := range s.o.FourEyes {
		if string(r.Environment) == fe {
			return true
		}
		if slices.Contains(r.Scopes, keydesk.Scope(fe)) {
			return true
		}
	}
	return false
}

// approvalsNeeded is 2 under four eyes, else 1.
func (s *Server) approvalsNeeded(r *keydesk.Request) int {
	if s.fourEyes(r) {
		return 2
	}
	return 1
}
