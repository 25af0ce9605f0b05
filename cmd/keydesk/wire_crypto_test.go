package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	if !signingCheckRegistered(extraChecks) {
		t.Error("the signing-key check is not registered in extraChecks")
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
	if contactKeyChecker == nil {
		t.Fatal("contactKeyChecker is not set: partners' keys would not be checked")
	}
	k := cryptotest.Contact(t, crypto.Curve25519)
	other := cryptotest.Other(t, crypto.Curve25519)
	c := contactKeyChecker()
	if _, err := c.CheckContactKey([]byte(k.Public), k.Fingerprint, time.Now()); err != nil {
		t.Fatalf("good key refused: %v", err)
	}
	_, err := c.CheckContactKey([]byte(k.Public), other.Fingerprint, time.Now())
	if !errors.Is(err, &crypto.KeyProblem{Problem: crypto.ProblemFingerprintMismatch}) {
		t.Fatalf("swapped key: got %v, want a fingerprint mismatch", err)
	}
}
