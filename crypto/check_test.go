package crypto_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
)

// armoredPublic serializes e's public key, armored.
func armoredPublic(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newEntity(t testing.TB, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity("Test", "", "test@acme.example", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func fpr(e *openpgp.Entity) string {
	return strings.ToUpper(fmtHex(e.PrimaryKey.Fingerprint))
}

func fmtHex(b []byte) string {
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, h[c>>4], h[c&0xf])
	}
	return string(out)
}

// TestCheckContactKey runs the checker over keys made by GnuPG, as partners
// send them, and over the kinds GnuPG 2.2 cannot make (v6, a revoked
// subkey).
func TestCheckContactKey(t *testing.T) {
	g := newGPG(t)

	good := g.genKey("Good <good@acme.example>", "ed25519", "sign,cert", "never")
	g.addKey(good, "cv25519", "encr", "never")
	twoYears := g.genKey("Expiring <expiring@acme.example>", "ed25519", "sign,cert", "2y")
	g.addKey(twoYears, "cv25519", "encr", "2y")
	signOnly := g.genKey("Sign Only <signonly@acme.example>", "ed25519", "sign,cert", "never")
	weak1024 := g.genKey("Weak <weak@acme.example>", "rsa1024", "sign,cert", "never")
	g.addKey(weak1024, "rsa1024", "encr", "never")
	rsa2048 := g.genKey("Medium <medium@acme.example>", "rsa2048", "sign,cert", "never")
	g.addKey(rsa2048, "rsa2048", "encr", "never")
	expired := g.genKey("Expired <expired@acme.example>", "ed25519", "sign,cert", "1d")
	g.addKey(expired, "cv25519", "encr", "1d")
	subExpired := g.genKey("Sub Expired <subexpired@acme.example>", "ed25519", "sign,cert", "never")
	g.addKey(subExpired, "cv25519", "encr", "1d")
	revoked := g.genKey("Revoked <revoked@acme.example>", "ed25519", "sign,cert", "never")
	g.addKey(revoked, "cv25519", "encr", "never")
	g.revoke(revoked)

	v6 := newEntity(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	subRevoked := newEntity(t, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err := subRevoked.RevokeSubkey(&subRevoked.Subkeys[0], packet.KeyCompromised, "laptop stolen", nil); err != nil {
		t.Fatal(err)
	}
	goodKey := g.export(good)
	// The good key's first subkey fingerprint, to pin by mistake.
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(goodKey))
	if err != nil {
		t.Fatal(err)
	}
	goodSub := strings.ToUpper(fmtHex(el[0].Subkeys[0].PublicKey.Fingerprint))
	// After every key is made: a key is not valid before its creation second.
	now := time.Now().Add(time.Second)
	later := now.Add(48 * time.Hour)

	tests := []struct {
		name    string
		key     []byte
		pinned  string
		now     time.Time
		checker crypto.Checker
		want    crypto.Problem // empty: accepted
		detail  []string
	}{
		{name: "curve25519 from gpg", key: goodKey, pinned: good},
		{name: "pinned with spaces and lower case", key: goodKey, pinned: strings.ToLower(crypto.FormatFingerprint(good))},
		{name: "expires in two years", key: g.export(twoYears), pinned: twoYears},
		{name: "fingerprint mismatch", key: goodKey, pinned: signOnly, want: crypto.ProblemFingerprintMismatch,
			detail: []string{"does not match the pinned fingerprint (got " + crypto.FormatFingerprint(good) + ")"}},
		{name: "subkey pinned", key: goodKey, pinned: goodSub, want: crypto.ProblemFingerprintMismatch,
			detail: []string{"subkey", crypto.FormatFingerprint(good)}},
		{name: "sign-only", key: g.export(signOnly), pinned: signOnly, want: crypto.ProblemNoEncryptionKey, detail: []string{"can only sign"}},
		{name: "rsa-1024", key: g.export(weak1024), pinned: weak1024, want: crypto.ProblemWeak, detail: []string{"RSA-1024", "3072"}},
		{name: "rsa-2048 by default", key: g.export(rsa2048), pinned: rsa2048, want: crypto.ProblemWeak, detail: []string{"RSA-2048"}},
		{name: "rsa-2048 when allowed", key: g.export(rsa2048), pinned: rsa2048, checker: crypto.Checker{MinRSABits: 2048}},
		{name: "expired", key: g.export(expired), pinned: expired, now: later, want: crypto.ProblemExpired,
			detail: []string{"expired on " + now.Add(24*time.Hour).UTC().Format("2006-01-02")}},
		{name: "valid until it expires", key: g.export(expired), pinned: expired},
		{name: "encryption subkey expired", key: g.export(subExpired), pinned: subExpired, now: later, want: crypto.ProblemExpired,
			detail: []string{"encryption subkey expired"}},
		{name: "revoked", key: g.export(revoked), pinned: revoked, want: crypto.ProblemRevoked},
		{name: "encryption subkey revoked", key: armoredPublic(t, subRevoked), pinned: fpr(subRevoked), want: crypto.ProblemRevoked,
			detail: []string{"subkey"}},
		{name: "v6", key: armoredPublic(t, v6), pinned: fpr(v6), want: crypto.ProblemV6, detail: []string{"version 6"}},
		{name: "empty file", key: nil, pinned: good, want: crypto.ProblemUnreadable, detail: []string{"empty"}},
		{name: "not a key", key: []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"),
			pinned: good, want: crypto.ProblemUnreadable},
		{name: "huge file", key: bytes.Repeat([]byte("A"), crypto.MaxKeyBytes+1), pinned: good, want: crypto.ProblemUnreadable, detail: []string{"larger than"}},
		{name: "no pin", key: goodKey, pinned: "", want: crypto.ProblemFingerprintMismatch, detail: []string{"no fingerprint is pinned"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.now
			if at.IsZero() {
				at = now
			}
			exp, err := tc.checker.CheckContactKey(tc.key, tc.pinned, at)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			t.Logf("refused: %v", err)
			var kp *crypto.KeyProblem
			if !errors.As(err, &kp) {
				t.Fatalf("got %v (%T), want a *KeyProblem %s", err, err, tc.want)
			}
			if kp.Problem != tc.want {
				t.Fatalf("problem %s (%v), want %s", kp.Problem, err, tc.want)
			}
			if (tc.want == crypto.ProblemExpired) != !exp.IsZero() || exp.After(at) {
				t.Errorf("%s key reports expiry %v", tc.want, exp)
			}
			for _, d := range tc.detail {
				if !strings.Contains(err.Error(), d) {
					t.Errorf("%q does not say %q", err, d)
				}
			}
		})
	}

	t.Run("expiry reported", func(t *testing.T) {
		exp, err := crypto.Checker{}.CheckContactKey(g.export(twoYears), twoYears, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := now.AddDate(2, 0, 0); exp.Before(want.Add(-72*time.Hour)) || exp.After(want.Add(72*time.Hour)) {
			t.Errorf("expiry %v, want about %v", exp, want)
		}
		exp, err = crypto.Checker{}.CheckContactKey(goodKey, good, now)
		if err != nil || !exp.IsZero() {
			t.Errorf("a key without expiry: got %v, %v; want zero", exp, err)
		}
	})
}

func TestCheckPartnerKey(t *testing.T) {
	p := cryptotest.Partner(t, crypto.Curve25519)
	if err := crypto.CheckPartnerKey(p, time.Now()); err != nil {
		t.Fatalf("good partner key refused: %v", err)
	}
	swapped := *p
	swapped.TechnicalContact.ArmoredKey = cryptotest.Other(t, crypto.Curve25519).Public
	err := crypto.CheckPartnerKey(&swapped, time.Now())
	if !errors.Is(err, &crypto.KeyProblem{Problem: crypto.ProblemFingerprintMismatch}) {
		t.Fatalf("swapped key: %v, want fingerprint-mismatch", err)
	}
	for _, want := range []string{"partner acme", p.TechnicalContact.Email, p.TechnicalContact.KeyFile,
		crypto.FormatFingerprint(p.TechnicalContact.Fingerprint), "does not match the pinned fingerprint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if err := crypto.CheckPartnerKey(&keydesk.Partner{ID: "empty"}, time.Now()); err == nil {
		t.Error("a partner without a key passed")
	}
}
