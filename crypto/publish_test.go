package crypto_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
)

// TestWKDHash checks the example of the WKD draft (section 3.1) and the
// lower-casing of the local part.
func TestWKDHash(t *testing.T) {
	for _, tc := range []struct{ local, want string }{
		{"Joe.Doe", "iy9q119eutrkn8s1mk4r39qejnbu3n5q"},
		{"joe.doe", "iy9q119eutrkn8s1mk4r39qejnbu3n5q"},
	} {
		if got := crypto.WKDHash(tc.local); got != tc.want {
			t.Errorf("WKDHash(%q) = %s, want %s", tc.local, got, tc.want)
		}
	}
	w, err := crypto.WKDFor("Buildmarkets Support <Joe.Doe@Example.ORG>")
	if err != nil {
		t.Fatal(err)
	}
	if w.Advanced != "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe" ||
		w.Direct != "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe" {
		t.Errorf("WKDFor: %+v", w)
	}
	if _, err := crypto.WKDFor("not an address"); err == nil {
		t.Error("WKDFor accepted a non-address")
	}
}

// TestKeyFingerprint reads the pinned fingerprint of a public key file,
// armored or binary, and refuses a private key or two keys in one file.
func TestKeyFingerprint(t *testing.T) {
	k := cryptotest.Contact(t, crypto.Curve25519)
	other := cryptotest.Other(t, crypto.Curve25519)
	bin, err := crypto.BinaryPublicKey([]byte(k.Public))
	if err != nil {
		t.Fatal(err)
	}
	otherBin, err := crypto.BinaryPublicKey([]byte(other.Public))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "golden-contact.asc"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data, want string
		bad              bool
	}{
		{name: "armored", data: k.Public, want: k.Fingerprint},
		{name: "binary", data: string(bin), want: k.Fingerprint},
		{name: "checked-in", data: string(golden), want: "B9CCB7B40795788920008F9E2A8EDAD07EB4FCA7"},
		{name: "private", data: k.Private, bad: true},
		{name: "two keys", data: string(bin) + string(otherBin), bad: true},
		{name: "empty", data: "", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := crypto.KeyFingerprint([]byte(tc.data))
			if tc.bad {
				if err == nil || !errors.Is(err, &crypto.KeyProblem{Problem: crypto.ProblemUnreadable}) {
					t.Fatalf("got %s, %v; want an unreadable-key problem", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if bytes.Contains(bin, []byte("BEGIN PGP")) {
		t.Error("BinaryPublicKey returned armor")
	}
}
