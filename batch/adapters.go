package batch

import (
	"context"
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

var _ Accounts = (*BMAPI)(nil)

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
	return bmapiAccount{bmapi.New(o)}, nil
}

type bmapiAccount struct{ c *bmapi.Client }

func (a bmapiAccount) CreateKey(ctx context.Context, label string, scopes []keydesk.Scope) (*CreatedKey, error) {
	k, err := a.c.CreateKey(ctx, label, scopes)
	if err != nil {
		return nil, err
	}
	return &CreatedKey{Key: Key(k.Key), APISecret: k.APISecret}, nil
}

func (a bmapiAccount) ListKeys(ctx context.Context) ([]Key, error) {
	ks, err := a.c.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Key, len(ks))
	for i, k := range ks {
		out[i] = Key(k)
	}
	return out, nil
}

func (a bmapiAccount) RevokeKey(ctx context.Context, id string) error { return a.c.RevokeKey(ctx, id) }

// ClassifyBMAPI classes the errors of the bmapi client. An error it does
// not know is unclear: reconciling is always safe, guessing is not.
func ClassifyBMAPI(err error) (ErrorKind, time.Duration) {
	var e *bmapi.Error
	var after time.Duration
	if errors.As(err, &e) {
		after = e.RetryAfter
	}
	switch {
	case errors.Is(err, bmapi.ErrUnauthorized), errors.Is(err, bmapi.ErrForbidden):
		return Refused, after
	case bmapi.Unclear(err):
		return Unclear, after
	case errors.Is(err, bmapi.ErrRateLimited), errors.Is(err, bmapi.ErrServer), errors.Is(err, bmapi.ErrTransport), errors.Is(err, bmapi.ErrProtocol):
		return Temporary, after
	case errors.Is(err, bmapi.ErrBadRequest):
		if e != nil && (e.Status == http.StatusNotFound || e.Status == http.StatusGone) {
			return NotFound, 0
		}
		return Permanent, 0
	}
	return Unclear, after
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
func (s *PGPSealer) Seal(d Delivery, p *keydesk.Partner) ([]byte, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	return crypto.BuildKeyDelivery(crypto.KeyDelivery(d), p, s.Signer, crypto.BuildOptions{Templates: s.Templates, Now: now})
}
