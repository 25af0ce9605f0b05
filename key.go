package keydesk

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
