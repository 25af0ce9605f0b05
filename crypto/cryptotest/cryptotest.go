// Package cryptotest gives other packages' tests real OpenPGP keys: a
// technical-contact key pair of each kind, keydesk's signing key and a
// partner wired to a contact key. Keys are generated once per test process
// (RSA-4096 takes seconds) and shared; they are test keys and nothing else.
package cryptotest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
)

// Key is a generated key pair.
type Key struct {
	Name, Email string
	Kind        crypto.KeyKind
	// Private is the armored private key, locked with Passphrase.
	Private     string
	Public      string
	Fingerprint string // upper-case hex, as partners.yaml pins it
	Passphrase  []byte
}

// Passphrase locks every fixture's private key.
const Passphrase = "correct horse battery staple"

type cached struct {
	once sync.Once
	key  Key
	err  error
}

var (
	mu    sync.Mutex
	cache = map[string]*cached{}
)

func generate(t testing.TB, slot, name, email string, kind crypto.KeyKind) Key {
	t.Helper()
	mu.Lock()
	c := cache[slot]
	if c == nil {
		c = &cached{}
		cache[slot] = c
	}
	mu.Unlock()
	c.once.Do(func() {
		priv, pub, fp, err := crypto.GenerateKey(name, email, kind, []byte(Passphrase))
		c.key = Key{Name: name, Email: email, Kind: kind, Private: priv, Public: pub, Fingerprint: fp, Passphrase: []byte(Passphrase)}
		c.err = err
	})
	if c.err != nil {
		t.Fatalf("cryptotest: generate %s key: %v", kind, c.err)
	}
	k := c.key
	k.Passphrase = []byte(Passphrase)
	return k
}

// Contact returns the technical contact's key of that kind
// (crypto.Curve25519, crypto.RSA4096 or crypto.RSA3072).
func Contact(t testing.TB, kind crypto.KeyKind) Key {
	t.Helper()
	return generate(t, "contact-"+kind.String(), "Acme Security Team", "sec@acme.example", kind)
}

// Other is a second contact-like key of that kind, for wrong-key and
// wrong-signer cases.
func Other(t testing.TB, kind crypto.KeyKind) Key {
	t.Helper()
	return generate(t, "other-"+kind.String(), "Mallory", "mallory@evil.example", kind)
}

// SigningKey returns keydesk's signing key (Curve25519).
func SigningKey(t testing.TB) Key {
	t.Helper()
	return generate(t, "signer", "Buildmarkets keydesk", "keydesk@buildmarkets.ai", crypto.Curve25519)
}

// Signer returns keydesk's signing key, unlocked.
func Signer(t testing.TB) *crypto.Signer {
	t.Helper()
	k := SigningKey(t)
	s, err := crypto.LoadSigner(WriteFile(t, t.TempDir(), "signing-key.asc", k.Private), keydesk.SecretString(Passphrase))
	if err != nil {
		t.Fatalf("cryptotest: load signer: %v", err)
	}
	return s
}

// Partner returns a partner (ID acme) whose technical contact holds the
// contact key of that kind, as config.LoadPartners would fill it.
func Partner(t testing.TB, kind crypto.KeyKind) *keydesk.Partner {
	t.Helper()
	k := Contact(t, kind)
	return &keydesk.Partner{
		ID:         "acme",
		Name:       "Acme Capital",
		Requesters: []string{"*@acme.example"},
		TechnicalContact: keydesk.TechnicalContact{
			Email: k.Email, KeyFile: "keys/acme-" + kind.String() + ".asc",
			Fingerprint: k.Fingerprint, ArmoredKey: k.Public,
		},
		Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
			keydesk.Sandbox: {APIKey: "bm_key_acme_manager", APISecret: keydesk.SecretString("bm_secret_acme_manager"), AutoApprove: true},
		},
	}
}

// WriteFile writes content to dir/name (mode 0600) and returns its path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
