package keydesk

import (
	"bytes"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
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

// The secrets FindSecrets finds. A value must be long enough to be one
// (placeholders such as "bm_secret_…" or "api_secret: xxx" are not), and
// a value that starts like a placeholder, a variable or keydesk's own
// redaction marker ([, <, $, {, *) is none.
var (
	bmSecretRE = regexp.MustCompile(`bm_secret_[A-Za-z0-9_\-]{4,}`)
	// X-API-Secret: value, as a header line, a curl -H argument or a
	// JSON/YAML key.
	headerSecretRE = regexp.MustCompile(`(?i)x-api-secret["']?[ \t]*[:=][ \t]*["']?([^\s"'<>,;\[\]{}()$*\x60]{8,})`)
	// api_secret, API_SECRET, BM_API_SECRET, apiSecret, api-secret-key…
	// in JSON, YAML, .env and INI files.
	fieldSecretRE = regexp.MustCompile(`(?i)\b(?:[a-z0-9]+[_\-.])*api[_\-]?secret(?:[_\-]?key)?["']?[ \t]*[:=][ \t]*["']?([^\s"'<>,;\[\]{}()$*\x60]{8,})`)
)

// SecretKind is how a secret found in text was recognised.
type SecretKind string

const (
	SecretBM     SecretKind = "bm_secret"    // a Buildmarkets API secret, by its prefix
	SecretHeader SecretKind = "x-api-secret" // the value of an X-API-Secret header line
	SecretField  SecretKind = "api_secret"   // the value of an api_secret field (JSON, YAML, .env)
)

// SecretSpan is where one secret is in a text: b[Start:End] is its value.
type SecretSpan struct {
	Start, End int
	Kind       SecretKind
}

// FindSecrets returns where the secrets of b are, in order and without
// overlaps: Buildmarkets API secrets (bm_secret_…), X-API-Secret header
// values and api_secret field values. It is the one notion of what a
// pasted secret looks like: the intake's redaction, RedactSecrets and
// HoldsSecret all use it. A value that is a Buildmarkets secret is found
// as one (its prefix decides where it ends).
func FindSecrets(b []byte) []SecretSpan {
	// Every shape holds the word "secret", and none spans lines: only the
	// lines that hold the word are matched, so that a long email without
	// one costs a byte search.
	var out []SecretSpan
	// The next "ecret" and "ECRET" at or after i, each searched for again
	// only once passed: one pass over b, whatever it holds.
	lower, upper := -1, -1
	for i := 0; i < len(b); {
		if lower < i && lower != len(b) {
			lower = nextAt(b, i, "ecret")
		}
		if upper < i && upper != len(b) {
			upper = nextAt(b, i, "ECRET")
		}
		at := min(lower, upper)
		if at >= len(b) {
			break
		}
		start := bytes.LastIndexByte(b[i:at], '\n') + 1 + i
		end := len(b)
		if k := bytes.IndexByte(b[at:], '\n'); k >= 0 {
			end = at + k
		}
		out = append(out, findInLine(b[start:end], start)...)
		i = end + 1
	}
	return out
}

// nextAt is the index of word in b at or after i; len(b) if none.
func nextAt(b []byte, i int, word string) int {
	if j := bytes.Index(b[i:], []byte(word)); j >= 0 {
		return i + j
	}
	return len(b)
}

// findInLine finds the secrets of one line, at offset off in the text.
// A header or field value that holds a Buildmarkets secret and more
// (bm_secret_….x) is one secret, the whole value: what is left of a value
// once a part of it is replaced must not read as a secret again.
func findInLine(b []byte, off int) []SecretSpan {
	var all []SecretSpan
	for _, m := range bmSecretRE.FindAllIndex(b, -1) {
		all = append(all, SecretSpan{off + m[0], off + m[1], SecretBM})
	}
	for _, re := range []struct {
		re   *regexp.Regexp
		kind SecretKind
	}{{headerSecretRE, SecretHeader}, {fieldSecretRE, SecretField}} {
		for _, m := range re.re.FindAllSubmatchIndex(b, -1) {
			all = append(all, SecretSpan{off + m[2], off + m[3], re.kind})
		}
	}
	slices.SortStableFunc(all, func(a, b SecretSpan) int { return a.Start - b.Start })
	var out []SecretSpan
	for _, s := range all {
		if n := len(out); n > 0 && s.Start < out[n-1].End {
			last := &out[n-1]
			if s.End > last.End || s.Start < last.Start {
				last.End = max(last.End, s.End)
				if last.Kind == SecretBM {
					last.Kind = s.Kind
				}
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// HoldsSecret reports whether s holds something shaped like a secret.
// Text that people write and keydesk sends on (a staff reply) is refused
// with it: a secret never travels in plain text.
func HoldsSecret(s string) bool {
	return secretShape.MatchString(s) || len(FindSecrets([]byte(s))) > 0
}

// RedactSecrets replaces whatever is shaped like a secret in s with
// [redacted] (an API's error body that echoes one, say).
func RedactSecrets(s string) string {
	b := []byte(s)
	if spans := FindSecrets(b); len(spans) > 0 {
		var out []byte
		last := 0
		for _, sp := range spans {
			out = append(append(out, b[last:sp.Start]...), redacted...)
			last = sp.End
		}
		b = append(out, b[last:]...)
	}
	return string(secretShape.ReplaceAll(b, []byte(redacted)))
}
