package crypto_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/crypto"
)

// FuzzCheckContactKey feeds hostile key files to the checker: partners send
// them, and a bad one must be refused, never crash keydesk or hang it.
// Seeds: the checked-in test keys, armored and bare.
func FuzzCheckContactKey(f *testing.F) {
	for _, name := range []string{"golden-contact.asc", "golden-signer.asc", "golden-contact.key.asc"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte{0x99, 0x00, 0x33, 0x04})
	const pinned = "B9CCB7B40795788920008F9E2A8EDAD07EB4FCA7"
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		exp, err := crypto.Checker{}.CheckContactKey(data, pinned, now)
		if err == nil && !exp.IsZero() && !exp.After(now) {
			t.Errorf("accepted a key that expired at %v", exp)
		}
	})
}
