package batch

import (
	"context"
	"time"

	"github.com/buildmarkets/keydesk"
)

// API is the keys API as one partner's manager key in one environment;
// *bmapi.Client is one.
type API interface {
	CreateKey(ctx context.Context, label string, scopes []keydesk.Scope) (*keydesk.CreatedKey, error)
	ListKeys(ctx context.Context) ([]keydesk.Key, error)
	RevokeKey(ctx context.Context, id string) error
}

// Accounts gives the API of a partner's account in one environment. The
// batch asks once per partner and environment per run, so credentials
// changed by a partners.yaml reload are used from the next batch on.
type Accounts interface {
	Account(p *keydesk.Partner, env keydesk.Environment) (API, error)
}

// ErrorKind is how the batch acts on an API error.
type ErrorKind int

const (
	// Temporary: the call did nothing (429, connection refused); try again later.
	Temporary ErrorKind = iota
	// Unclear: the call may have taken effect (timeout, reset, 5xx after
	// the request was sent). A create must be reconciled before a retry.
	Unclear
	// Refused: the partner's manager credentials were refused (401, 403).
	Refused
	// Permanent: the API refused this request as such (400, 404, 409, 422).
	Permanent
	// NotFound: the key does not exist (a revocation that is already done).
	NotFound
)

func (k ErrorKind) String() string {
	switch k {
	case Temporary:
		return "temporary"
	case Unclear:
		return "unclear"
	case Refused:
		return "refused"
	case Permanent:
		return "permanent"
	case NotFound:
		return "not-found"
	}
	return "unknown"
}

// Classifier says what kind an API error is, and how long the API asked
// to wait before the next call (0 if it did not say).
type Classifier func(err error) (kind ErrorKind, retryAfter time.Duration)

// Sealer checks a partner's contact key and builds the encrypted, signed
// key delivery (a PGP/MIME entity) to it.
type Sealer interface {
	// CheckContact reports why the partner's pinned contact key cannot
	// receive a key now (expired, revoked, cannot encrypt, too weak), or nil.
	CheckContact(p *keydesk.Partner, now time.Time) error
	// Seal returns the PGP/MIME entity holding d for p's technical contact.
	Seal(d keydesk.KeyDelivery, p *keydesk.Partner) ([]byte, error)
}
