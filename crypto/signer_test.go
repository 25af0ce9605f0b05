package crypto_test

import (
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
)

// TestLoadSigner loads signing keys as operators make them, with gpg, and
// exported with gpg --armor --export-secret-keys.
func TestLoadSigner(t *testing.T) {
	g := newGPG(t)
	const pass = "signing passphrase"
	gen := func(uid, algo, expire string) string {
		g.must(nil, "--passphrase", pass, "--quick-gen-key", uid, algo, "sign,cert", expire)
		r := g.must(nil, "--with-colons", "--list-keys", uid)
		for _, line := range strings.Split(r.stdout, "\n") {
			if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
				return f[9]
			}
		}
		t.Fatalf("no fingerprint for %s", uid)
		return ""
	}
	exported := map[string]string{}
	exportSecret := func(fpr string) string {
		if _, ok := exported[fpr]; !ok {
			exported[fpr] = g.must(nil, "--passphrase", pass, "--armor", "--export-secret-keys", fpr).stdout
		}
		return exported[fpr]
	}
	ed := gen("keydesk ed25519 <keydesk@buildmarkets.ai>", "ed25519", "2y")
	rsa := gen("keydesk rsa3072 <keydesk-rsa@buildmarkets.ai>", "rsa3072", "never")
	short := gen("keydesk short <keydesk-short@buildmarkets.ai>", "ed25519", "1d")
	revoked := gen("keydesk revoked <keydesk-revoked@buildmarkets.ai>", "ed25519", "never")
	g.revoke(revoked)
	dir := t.TempDir()
	now := time.Now().Add(time.Second)

	tests := []struct {
		name, fpr, pass string
		now             time.Time
		public          bool
		want            string // empty: loads
	}{
		{name: "gpg ed25519 with passphrase", fpr: ed, pass: pass},
		{name: "gpg rsa3072", fpr: rsa, pass: pass},
		{name: "wrong passphrase", fpr: ed, pass: "nope", want: "passphrase does not unlock it"},
		{name: "no passphrase", fpr: ed, want: "none is configured"},
		{name: "public key only", fpr: ed, pass: pass, public: true, want: "PRIVATE key"},
		{name: "expired", fpr: short, pass: pass, now: now.Add(48 * time.Hour), want: "expired on"},
		{name: "revoked", fpr: revoked, pass: pass, want: "revoked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := exportSecret(tc.fpr)
			if tc.public {
				key = string(g.export(tc.fpr))
			}
			at := tc.now
			if at.IsZero() {
				at = now
			}
			s, err := crypto.NewSigner([]byte(key), []byte(tc.pass), at)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				defer s.Close()
				if s.Fingerprint() != tc.fpr {
					t.Errorf("fingerprint %s, want %s", s.Fingerprint(), tc.fpr)
				}
				if !strings.Contains(s.PublicKey(), "BEGIN PGP PUBLIC KEY BLOCK") || strings.Contains(s.PublicKey(), "PRIVATE") {
					t.Errorf("PublicKey() is not an armored public key:\n%s", s.PublicKey())
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("loaded, want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q does not say %q", err, tc.want)
			}
			if tc.pass != "" && strings.Contains(err.Error(), tc.pass) {
				t.Errorf("the error quotes the passphrase: %q", err)
			}
		})
	}

	t.Run("LoadSigner names the file", func(t *testing.T) {
		f := cryptotest.WriteFile(t, dir, "signing.asc", exportSecret(ed))
		s, err := crypto.LoadSigner(f, keydesk.SecretString(pass))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err = crypto.LoadSigner(f, keydesk.SecretString("nope"))
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error %v does not name %s", err, f)
		}
	})

	// A delivery signed with a gpg-made key verifies with gpg.
	t.Run("gpg-made signer verifies in gpg", func(t *testing.T) {
		s, err := crypto.NewSigner([]byte(exportSecret(ed)), []byte(pass), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		p := cryptotest.Partner(t, crypto.Curve25519)
		ent, err := crypto.BuildKeyDelivery(testDelivery(), p, s, crypto.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		armored, err := crypto.EncryptedPart(ent)
		if err != nil {
			t.Fatal(err)
		}
		k := cryptotest.Contact(t, crypto.Curve25519)
		g.importKey(k.Private, string(k.Passphrase))
		in := writeTemp(t, dir, "msg.asc", []byte(armored))
		r := g.run(nil, "--passphrase", string(k.Passphrase), "--output", dir+"/msg.out", "--decrypt", in)
		if r.err != nil || !hasStatus(statusLines(r.stdout), "VALIDSIG") {
			t.Fatalf("gpg: %v", r)
		}
	})
}
