package keydesk

import "time"

// KeyRef names one API key. The Buildmarkets API numbers keys per partner
// account and environment (both environments of one partner may hold a
// key-001), so a key ID alone never identifies a key: every set, map and
// comparison of keys in keydesk uses the whole triple.
type KeyRef struct {
	Partner     string      `json:"partner"`
	Environment Environment `json:"environment"`
	ID          string      `json:"key_id"`
}

// String is partner/environment/key_id, as logs and notes show a key.
func (k KeyRef) String() string { return k.Partner + "/" + string(k.Environment) + "/" + k.ID }

// IsZero reports whether k names no key.
func (k KeyRef) IsZero() bool { return k.ID == "" }

// KeyRef names the key the request holds; zero if it holds none.
func (r *Request) KeyRef() KeyRef {
	if r.KeyID == "" {
		return KeyRef{}
	}
	return KeyRef{Partner: r.Partner, Environment: r.Environment, ID: r.KeyID}
}

// Key is what the Buildmarkets API tells of a key: never its secret. The
// API client returns it and the batch reads it; one type serves both.
type Key struct {
	ID        string
	Label     string
	APIKey    string
	Scopes    []Scope
	CreatedAt time.Time // zero when the API gave none
}

// CreatedKey is a key just created, with its secret: the only time the API
// reveals it. The caller wipes APISecret once it is encrypted.
type CreatedKey struct {
	Key
	APISecret Secret
}

// KeyDelivery is one new API key pair on its way to the technical contact:
// what the batch hands to the sealer, and what the delivery email carries.
type KeyDelivery struct {
	RequestID   string
	PartnerName string
	Environment Environment
	Scopes      []Scope
	Label       string
	KeyID       string
	APIKey      string
	// APISecret is the secret half, shown once by the API. The sealer reads
	// it but does not wipe it: the caller owns it and wipes it.
	APISecret Secret
	CreatedAt time.Time
	// Subject is the real subject, sent only inside the encryption as a
	// protected header; empty: the key-delivery template's subject.
	Subject string
}
