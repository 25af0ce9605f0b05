package crypto_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/templates"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const goldenPassphrase = "golden"

// goldenKeys are checked-in test keys, so that the fingerprints printed in
// the body are the same on every run.
func goldenKeys(t *testing.T) (p *keydesk.Partner, s *crypto.Signer, contactPriv string) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	pub := read("golden-contact.asc")
	fp, err := crypto.Checker{}.CheckContactKey([]byte(pub), "B9CCB7B40795788920008F9E2A8EDAD07EB4FCA7", time.Now())
	if err != nil || !fp.IsZero() {
		t.Fatalf("golden contact key: %v (expires %v)", err, fp)
	}
	p = &keydesk.Partner{ID: "acme", Name: "Acme Capital", TechnicalContact: keydesk.TechnicalContact{
		Email: "sec@acme.example", KeyFile: "keys/acme.asc", Fingerprint: "B9CCB7B40795788920008F9E2A8EDAD07EB4FCA7", ArmoredKey: pub,
	}}
	s, err = crypto.NewSigner([]byte(read("golden-signer.key.asc")), []byte(goldenPassphrase), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p, s, read("golden-contact.key.asc")
}

var armorBlock = regexp.MustCompile(`(?s)-----BEGIN PGP MESSAGE-----\r\n.*?-----END PGP MESSAGE-----\r\n`)

// TestBuildKeyDeliveryGolden fixes the boundaries and the clock and compares
// the outer PGP/MIME structure (the ciphertext itself is random, so it is
// replaced by a marker) and the decrypted inner entity with golden files.
func TestBuildKeyDeliveryGolden(t *testing.T) {
	p, s, contactPriv := goldenKeys(t)
	tests := []struct {
		name string
		d    keydesk.KeyDelivery
	}{
		{name: "production", d: testDelivery()},
		{name: "unicode-label", d: func() keydesk.KeyDelivery {
			d := testDelivery()
			d.Environment, d.Label, d.KeyID = keydesk.Sandbox, "Équipe Trésorerie", "key-002"
			d.Scopes = []keydesk.Scope{keydesk.ScopeFundingRead}
			return d
		}()},
		// A secret wider than the line after its label stands whole on
		// a line of its own, and the rest is wrapped around it.
		{name: "long-secret", d: func() keydesk.KeyDelivery {
			d := testDelivery()
			d.APISecret = keydesk.SecretString("bm_secret_" + strings.Repeat("0123456789abcdef", 5))
			return d
		}()},
		// A rotation: the body and the attachment name the key replaced
		// and when it stops working.
		{name: "rotation", d: func() keydesk.KeyDelivery {
			d := testDelivery()
			d.KeyID, d.ReplacesKeyID = "key-012", "key-007"
			d.OldKeyStops = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
			return d
		}()},
		{name: "caller-subject", d: func() keydesk.KeyDelivery {
			d := testDelivery()
			d.Subject = "Re: API keys for the trading engine"
			d.PartnerName = "Acme Capital Treasury"
			return d
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ent, err := crypto.BuildKeyDelivery(tc.d, p, s, crypto.BuildOptions{
				Templates: templates.MustLoadEmbedded(), Now: time.Now(),
				Boundary: "keydesk-outer-boundary", InnerBoundary: "keydesk-inner-boundary",
			})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(armorBlock.FindAll(ent, -1)); n != 1 {
				t.Fatalf("%d armored messages in the entity, want 1:\n%s", n, ent)
			}
			outer := armorBlock.ReplaceAll(ent, []byte("-----BEGIN PGP MESSAGE-----\r\n[ciphertext]\r\n-----END PGP MESSAGE-----\r\n"))
			golden(t, "key-delivery-"+tc.name+".outer.golden", outer)
			inner, err := crypto.DecryptAndVerify(ent, contactPriv, []byte(goldenPassphrase), s.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "key-delivery-"+tc.name+".inner.golden", inner)
			if bytes.Contains(inner, []byte("\n")) && bytes.Count(inner, []byte("\r\n")) != bytes.Count(inner, []byte("\n")) {
				t.Error("the inner entity has bare LF line endings: MIME wants CRLF")
			}
			checkInnerLabel(t, inner, tc.d)
			// The text the contact reads keeps the partner-mail conventions.
			_, text, _ := bytes.Cut(inner, []byte("Content-Transfer-Encoding: 8bit\r\n\r\n"))
			text, _, _ = bytes.Cut(text, []byte("\r\n--keydesk-inner-boundary"))
			templatestest.Check(t, strings.ReplaceAll(string(text), "\r\n", "\n"))
			if secret := tc.d.APISecret.Reveal(); !bytes.Contains(inner, []byte("\r\n"+secret+"\r\n")) && !bytes.Contains(inner, []byte(" "+secret+"\r\n")) {
				t.Errorf("the secret is not whole at the end of a line")
			}
		})
	}
}

func checkInnerLabel(t *testing.T, inner []byte, d keydesk.KeyDelivery) {
	t.Helper()
	if !bytes.Contains(inner, []byte(d.Label)) {
		t.Errorf("the inner entity does not show the label %q", d.Label)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./crypto -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./crypto -run Golden -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestBuildKeyDeliveryRefusals(t *testing.T) {
	p := cryptotest.Partner(t, crypto.Curve25519)
	s := cryptotest.Signer(t)
	overrideDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(overrideDir, "mail"), 0o755); err != nil {
		t.Fatal(err)
	}
	cryptotest.WriteFile(t, filepath.Join(overrideDir, "mail"), "key-delivery.tmpl",
		`{{define "subject"}}Your key {{.APISecret}}{{end}}{{define "body"}}{{.APISecret}}{{end}}`)
	leaky, err := templates.Load(overrideDir)
	if err != nil {
		t.Fatal(err)
	}
	swapped := *p
	swapped.TechnicalContact.ArmoredKey = cryptotest.Other(t, crypto.Curve25519).Public

	tests := []struct {
		name    string
		mutate  func(d *keydesk.KeyDelivery)
		partner *keydesk.Partner
		opt     crypto.BuildOptions
		want    string
		problem crypto.Problem
	}{
		{name: "swapped contact key", partner: &swapped, want: "partner acme", problem: crypto.ProblemFingerprintMismatch},
		{name: "checked before the key existed", partner: p, opt: crypto.BuildOptions{Now: time.Now().Add(-48 * time.Hour)}, want: "created in the future"},
		{name: "empty secret", mutate: func(d *keydesk.KeyDelivery) { d.APISecret = keydesk.Secret{} }, want: "secret is empty"},
		{name: "huge secret", mutate: func(d *keydesk.KeyDelivery) {
			d.APISecret = keydesk.NewSecret(bytes.Repeat([]byte("s"), crypto.MaxSecretBytes+1))
		}, want: "longer than"},
		{name: "secret not UTF-8", mutate: func(d *keydesk.KeyDelivery) { d.APISecret = keydesk.NewSecret([]byte{0xff, 0xfe}) }, want: "not valid UTF-8"},
		{name: "subject with a line break", mutate: func(d *keydesk.KeyDelivery) { d.Subject = "x\r\nBcc: evil@evil.example" }, want: "line break"},
		{name: "template puts the secret in the subject", opt: crypto.BuildOptions{Templates: leaky}, want: "must not hold the secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDelivery()
			if tc.mutate != nil {
				tc.mutate(&d)
			}
			pp := tc.partner
			if pp == nil {
				pp = p
			}
			ent, err := crypto.BuildKeyDelivery(d, pp, s, tc.opt)
			if err == nil {
				t.Fatalf("built a delivery (%d bytes), want an error", len(ent))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q does not say %q", err, tc.want)
			}
			if tc.problem != "" && !errors.Is(err, &crypto.KeyProblem{Problem: tc.problem}) {
				t.Errorf("%v is not a %s KeyProblem", err, tc.problem)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("the error quotes the secret: %q", err)
			}
		})
	}
}

// TestSecretStaysInside checks the places a secret could leak from this
// package: the ciphertext entity, the delivery formatted every way, and the
// caller's Secret, which must still hold the value (the caller wipes it).
func TestSecretStaysInside(t *testing.T) {
	p := cryptotest.Partner(t, crypto.Curve25519)
	s := cryptotest.Signer(t)
	d := testDelivery()
	ent, err := crypto.BuildKeyDelivery(d, p, s, crypto.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range []string{testSecret, "bm_secret_xyz789"} {
		if bytes.Contains(ent, []byte(needle)) {
			t.Errorf("the PGP/MIME entity holds the secret in clear")
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if strings.Contains(fmt.Sprintf(verb, d), needle) {
				t.Errorf("KeyDelivery formatted with %s shows the secret", verb)
			}
		}
	}
	if d.APISecret.Reveal() != testSecret {
		t.Error("BuildKeyDelivery changed the caller's secret")
	}
	k := cryptotest.Contact(t, crypto.Curve25519)
	inner, err := crypto.DecryptAndVerify(ent, k.Private, k.Passphrase, s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	checkInner(t, inner, d)
}

func TestDecryptAndVerify(t *testing.T) {
	p := cryptotest.Partner(t, crypto.Curve25519)
	s := cryptotest.Signer(t)
	k := cryptotest.Contact(t, crypto.Curve25519)
	other := cryptotest.Other(t, crypto.Curve25519)
	ent, err := crypto.BuildKeyDelivery(testDelivery(), p, s, crypto.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	armored, err := crypto.EncryptedPart(ent)
	if err != nil {
		t.Fatal(err)
	}
	crlf := bytes.ReplaceAll(tamper(t, []byte(armored)), []byte("\n"), []byte("\r\n"))
	tamperedEnt := bytes.Replace(ent, []byte(armored), crlf, 1)
	if bytes.Equal(tamperedEnt, ent) {
		t.Fatal("the tampered entity is unchanged")
	}
	// The same structure around a message encrypted to the contact but not
	// signed at all.
	contactKey, err := pgp.NewKeyFromArmored(k.Public)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := pgp.NewKeyRing(contactKey)
	if err != nil {
		t.Fatal(err)
	}
	unsignedMsg, err := ring.Encrypt(pgp.NewPlainMessage([]byte("Content-Type: text/plain\r\n\r\nhello\r\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	unsignedArmored, err := unsignedMsg.GetArmored()
	if err != nil {
		t.Fatal(err)
	}
	unsignedEnt := bytes.Replace(ent, []byte(armored), []byte(strings.ReplaceAll(unsignedArmored, "\n", "\r\n")+"\r\n"), 1)

	tests := []struct {
		name      string
		entity    []byte
		priv      string
		pass      []byte
		signerPub string
		want      error
	}{
		{name: "contact key and keydesk's signature", entity: ent, priv: k.Private, pass: k.Passphrase, signerPub: s.PublicKey()},
		{name: "another key cannot decrypt", entity: ent, priv: other.Private, pass: other.Passphrase, signerPub: s.PublicKey()},
		{name: "another signer is refused", entity: ent, priv: k.Private, pass: k.Passphrase, signerPub: other.Public},
		{name: "wrong passphrase", entity: ent, priv: k.Private, pass: []byte("nope"), signerPub: s.PublicKey()},
		{name: "not PGP/MIME", entity: []byte("Content-Type: text/plain\r\n\r\nhello\r\n"), priv: k.Private, pass: k.Passphrase, signerPub: s.PublicKey(), want: crypto.ErrNotPGPMIME},
		{name: "tampered", entity: tamperedEnt, priv: k.Private, pass: k.Passphrase, signerPub: s.PublicKey()},
		{name: "unsigned", entity: unsignedEnt, priv: k.Private, pass: k.Passphrase, signerPub: s.PublicKey()},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner, err := crypto.DecryptAndVerify(tc.entity, tc.priv, tc.pass, tc.signerPub)
			if i == 0 {
				if err != nil {
					t.Fatal(err)
				}
				checkInner(t, inner, testDelivery())
				return
			}
			if err == nil {
				t.Fatalf("opened (%d bytes), want an error", len(inner))
			}
			t.Logf("refused: %v", err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestBuildConcurrently builds deliveries from several goroutines with one
// Signer, as the batch does; run it with -race.
func TestBuildConcurrently(t *testing.T) {
	p := cryptotest.Partner(t, crypto.Curve25519)
	s := cryptotest.Signer(t)
	k := cryptotest.Contact(t, crypto.Curve25519)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			d := testDelivery()
			d.KeyID = fmt.Sprintf("key-%03d", i)
			ent, err := crypto.BuildKeyDelivery(d, p, s, crypto.BuildOptions{})
			if err == nil {
				var inner []byte
				inner, err = crypto.DecryptAndVerify(ent, k.Private, k.Passphrase, s.PublicKey())
				if err == nil && !bytes.Contains(inner, []byte(d.KeyID)) {
					err = fmt.Errorf("delivery %d does not hold its key ID", i)
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
