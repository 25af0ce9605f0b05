package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
)

func TestCheckSigningKey(t *testing.T) {
	dir := t.TempDir()
	sk := cryptotest.SigningKey(t)
	cryptotest.WriteFile(t, dir, "signing.asc", sk.Private)
	cryptotest.WriteFile(t, dir, "public.asc", sk.Public)
	tests := []struct {
		name, file, pass string
		want             []string // substrings of the error; none: no error
	}{
		{name: "unlocks", file: "signing.asc", pass: cryptotest.Passphrase},
		{name: "wrong passphrase", file: "signing.asc", pass: "hunter2",
			want: []string{"keydesk.yaml: signing_key.file: key in signing.asc:", "passphrase does not unlock it"}},
		{name: "no passphrase", file: "signing.asc",
			want: []string{"keydesk.yaml: signing_key.file", "none is configured"}},
		{name: "public key", file: "public.asc", pass: cryptotest.Passphrase,
			want: []string{"keydesk.yaml: signing_key.file: key in public.asc:", "PRIVATE key"}},
		{name: "missing file", file: "nope.asc", pass: cryptotest.Passphrase,
			want: []string{"keydesk.yaml: signing_key.file:", "nope.asc"}},
		{name: "not set", want: []string{"keydesk.yaml: signing_key.file: is required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{File: filepath.Join(dir, "keydesk.yaml")}
			cfg.SigningKey = config.SigningKey{File: tc.file, Passphrase: keydesk.SecretString(tc.pass)}
			err := checkSigningKeyAt(cfg, time.Now())
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("check passed, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.pass != "" && strings.Contains(err.Error(), tc.pass) {
				t.Errorf("error %q quotes the passphrase", err)
			}
		})
	}
	if !signingCheckRegistered(roleChecks["batch"]) {
		t.Error("the signing-key check is not registered for the batch role")
	}
}

func signingCheckRegistered(checks []func(*config.Config) error) bool {
	// The registered check reports a missing signing key the same way.
	for _, c := range checks {
		if err := c(&config.Config{File: "keydesk.yaml"}); err != nil && strings.Contains(err.Error(), "signing_key.file: is required") {
			return true
		}
	}
	return false
}

func TestContactKeyCheckerWired(t *testing.T) {
	k := cryptotest.Contact(t, crypto.Curve25519)
	other := cryptotest.Other(t, crypto.Curve25519)
	c := registryKeyChecker{}
	if _, err := c.CheckContactKey([]byte(k.Public), k.Fingerprint, time.Now()); err != nil {
		t.Fatalf("good key refused: %v", err)
	}
	_, err := c.CheckContactKey([]byte(k.Public), other.Fingerprint, time.Now())
	t.Logf("swapped: %v", err)
	if !errors.Is(err, &crypto.KeyProblem{Problem: crypto.ProblemFingerprintMismatch}) {
		t.Fatalf("swapped key: got %v, want a fingerprint mismatch", err)
	}
}

// expiringKey makes a Curve25519 key valid for one day; returns it armored
// and its fingerprint.
func expiringKey(t *testing.T) (string, string) {
	t.Helper()
	e, err := openpgp.NewEntity("Short Lived", "", "sec@short.example", &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 24 * 3600,
		Time: func() time.Time { return time.Now().Add(-time.Minute) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
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
	return b.String(), fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
}

// TestContactKeyStrengths: a partner whose pinned key has expired stays
// registered (serve starts, reloads work, intake and batch name the
// problem), check lists it, and a swapped key file refuses the registry.
func TestContactKeyStrengths(t *testing.T) {
	dir := t.TempDir()
	good := cryptotest.Contact(t, crypto.Curve25519)
	shortPub, shortFpr := expiringKey(t)
	cryptotest.WriteFile(t, dir, "acme.asc", good.Public)
	cryptotest.WriteFile(t, dir, "short.asc", shortPub)
	partners := func(shortKeyFile string) string {
		return fmt.Sprintf(`partners:
  - id: acme
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: %q}
    environments:
      sandbox: {api_key: bm_key_a, api_secret: bm_secret_a}
  - id: short
    requesters: ["*@short.example"]
    technical_contact: {email: sec@short.example, pgp_key_file: %s, fingerprint: %q}
    environments:
      sandbox: {api_key: bm_key_s, api_secret: bm_secret_s}
`, good.Fingerprint, shortKeyFile, shortFpr)
	}
	cryptotest.WriteFile(t, dir, "partners.yaml", partners("short.asc"))
	cfg := &config.Config{File: filepath.Join(dir, "keydesk.yaml"), PartnersFile: "partners.yaml"}
	later := time.Now().Add(48 * time.Hour)

	reg, err := config.LoadPartners(filepath.Join(dir, "partners.yaml"), registryKeyChecker{}, later)
	if err != nil {
		t.Fatalf("an expired contact key refused the whole registry: %v", err)
	}
	short, ok := reg.Partner("short")
	if !ok || short.TechnicalContact.KeyExpires.IsZero() || short.TechnicalContact.KeyExpires.After(later) {
		t.Fatalf("partner short: %v, key expires %v", ok, short.TechnicalContact.KeyExpires)
	}
	if err := crypto.CheckPartnerKey(short, later); !errors.Is(err, &crypto.KeyProblem{Problem: crypto.ProblemExpired}) {
		t.Errorf("the batch's check of the expired key: %v", err)
	}

	err = checkContactKeysAt(cfg, later)
	if err == nil {
		t.Fatal("check did not list the expired key")
	}
	for _, want := range []string{"partners.yaml: partners[1].technical_contact.fingerprint: key in short.asc (partner short):", "expired on"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "partner acme") {
		t.Errorf("check lists the good key too: %v", err)
	}
	if err := checkContactKeysAt(cfg, time.Now()); err != nil {
		t.Errorf("check refuses keys that are fine today: %v", err)
	}

	cryptotest.WriteFile(t, dir, "partners.yaml", partners("acme.asc")) // the short partner's file swapped
	_, err = config.LoadPartners(filepath.Join(dir, "partners.yaml"), registryKeyChecker{}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "partners[1].technical_contact.fingerprint") || !strings.Contains(err.Error(), "does not match the pinned fingerprint") {
		t.Errorf("a swapped key file: %v, want the registry refused", err)
	}
}
