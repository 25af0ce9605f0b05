package batch

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/templates"
)

// APIEnv is one environment's endpoint for BMAPI.
type APIEnv struct {
	BaseURL string
	Timeout time.Duration
	// Limiter paces every call to this environment, all partners together.
	Limiter *rate.Limiter
}

// BMAPIOptions configure BMAPI.
type BMAPIOptions struct {
	Envs map[keydesk.Environment]APIEnv
	// HTTPClient, if set, sends the calls (tests use it for TLS).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Observe, if set, gets each API try: a metrics hook.
	Observe func(env keydesk.Environment, method string, status int, d time.Duration)
}

// BMAPI is Accounts over the bmapi client: one client per partner and
// environment, with the partner's manager key from partners.yaml.
type BMAPI struct{ o BMAPIOptions }

var (
	_ Accounts = (*BMAPI)(nil)
	_ API      = (*bmapi.Client)(nil)
)

// NewBMAPI returns Accounts that call the Buildmarkets API.
func NewBMAPI(o BMAPIOptions) *BMAPI { return &BMAPI{o: o} }

// Account returns the API as p's manager key in env.
func (b *BMAPI) Account(p *keydesk.Partner, env keydesk.Environment) (API, error) {
	e, ok := b.o.Envs[env]
	if !ok || e.BaseURL == "" {
		return nil, fmt.Errorf("api.%s.base_url is not set in keydesk.yaml", env)
	}
	pe, ok := p.Environments[env]
	if !ok || pe.APIKey == "" || pe.APISecret.IsZero() {
		return nil, fmt.Errorf("partners.yaml gives %s no api_key and api_secret for %s", p.ID, env)
	}
	o := bmapi.Options{
		BaseURL: e.BaseURL, APIKey: pe.APIKey, APISecret: pe.APISecret, Timeout: e.Timeout, Limiter: e.Limiter,
		HTTPClient: b.o.HTTPClient, Logger: b.o.Logger,
	}
	if b.o.Observe != nil {
		o.Observe = func(method string, status int, d time.Duration) { b.o.Observe(env, method, status, d) }
	}
	return bmapi.New(o), nil
}

// ClassifyBMAPI classes the errors of the bmapi client: whether a retry
// may succeed is the client's own answer (keydesk.Temporary); the batch
// adds what it acts on beyond that. An error it does not know is unclear:
// reconciling is always safe, guessing is not.
func ClassifyBMAPI(err error) (ErrorKind, time.Duration) {
	var e *bmapi.Error
	if !errors.As(err, &e) {
		return Unclear, 0
	}
	switch {
	case e.Kind == bmapi.ErrUnauthorized, e.Kind == bmapi.ErrForbidden:
		return Refused, e.RetryAfter
	case bmapi.Unclear(err):
		return Unclear, e.RetryAfter
	case keydesk.Temporary(e), e.Kind == bmapi.ErrProtocol:
		// An unreadable answer to a GET or DELETE: both are safe to repeat.
		return Temporary, e.RetryAfter
	case e.Kind == bmapi.ErrBadRequest:
		if e.Status == http.StatusNotFound || e.Status == http.StatusGone {
			return NotFound, 0
		}
		return Permanent, 0
	}
	return Unclear, e.RetryAfter
}

// PGPSealer is the Sealer of the crypto package: keydesk's signing key
// signs, the partner's pinned contact key encrypts.
type PGPSealer struct {
	Signer    *crypto.Signer
	Templates *templates.Set
	// Now is the clock of the key check while sealing (default time.Now).
	Now func() time.Time
}

var _ Sealer = (*PGPSealer)(nil)

// CheckContact checks p's contact key.
func (s *PGPSealer) CheckContact(p *keydesk.Partner, now time.Time) error {
	return crypto.CheckPartnerKey(p, now)
}

// Seal builds the PGP/MIME key delivery.
func (s *PGPSealer) Seal(d keydesk.KeyDelivery, p *keydesk.Partner) ([]byte, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	return crypto.BuildKeyDelivery(d, p, s.Signer, crypto.BuildOptions{Templates: s.Templates, Now: now})
}
