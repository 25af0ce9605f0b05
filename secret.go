package keydesk

import (
	"fmt"
	"log/slog"
	"regexp"
)

const redacted = "[redacted]"

// Secret holds a credential: an API secret, a password, a passphrase. Every
// formatter prints [redacted] — fmt's verbs including %#v, JSON, text
// marshalling and slog — so a secret cannot leak through a log line, an
// error or a record by accident. Reveal is the one way to the value, and
// each call of it is a place to review.
type Secret struct {
	v *[]byte // a pointer, so that copies share one buffer and Wipe reaches them all
}

// NewSecret wraps b; the Secret owns b from then on.
func NewSecret(b []byte) Secret {
	return Secret{v: &b}
}

// SecretString wraps a string (from a config file, say).
func SecretString(s string) Secret { return NewSecret([]byte(s)) }

// Reveal returns the value. Call it only where the value leaves for its
// one legitimate use: an HTTP header to the API, an encrypted message.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return string(*s.v)
}

// RevealBytes returns the value's own buffer, which Wipe zeroes.
func (s Secret) RevealBytes() []byte {
	if s.v == nil {
		return nil
	}
	return *s.v
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == nil || len(*s.v) == 0 }

// Wipe overwrites the value in memory. Go may have copied it elsewhere (a
// string made by Reveal, say); Wipe does what the language allows.
func (s Secret) Wipe() {
	if s.v == nil {
		return
	}
	clear(*s.v)
	*s.v = nil
}

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalYAML() (any, error)    { return redacted, nil }

var (
	_ fmt.Stringer   = Secret{}
	_ fmt.GoStringer = Secret{}
	_ fmt.Formatter  = Secret{}
	_ slog.LogValuer = Secret{}
)

// UnmarshalText lets a config decoder fill a Secret; the value is copied.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = NewSecret(append([]byte(nil), b...))
	return nil
}

// secretShape matches text that is, or holds, a credential keydesk knows
// the look of: a Buildmarkets API secret (bm_secret_…) and the armour of
// a private key (OpenPGP or PEM).
var secretShape = regexp.MustCompile(`bm_secret_[A-Za-z0-9_\-]*|-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----`)

// HoldsSecret reports whether s holds something shaped like a secret.
// Text that people write and keydesk sends on (a staff reply) is refused
// with it: a secret never travels in plain text.
func HoldsSecret(s string) bool { return secretShape.MatchString(s) }

// RedactSecrets replaces whatever is shaped like a secret in s with
// [redacted] (an API's error body that echoes one, say).
func RedactSecrets(s string) string { return secretShape.ReplaceAllString(s, redacted) }
