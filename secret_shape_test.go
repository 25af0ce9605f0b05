package keydesk

import "testing"

func TestHoldsSecret(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       bool
	}{
		{"plain reply", "Your key is on its way to your technical contact.", false},
		{"the word secret", "We never email an API secret.", false},
		{"a key ID", "Key bm_key_acme_0001 was revoked.", false},
		{"an API secret", "here it is: bm_secret_9f8e7d6c5b4a", true},
		{"a bare prefix", "bm_secret_", true},
		{"an OpenPGP private key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF...", true},
		{"a PEM private key", "-----BEGIN EC PRIVATE KEY-----\nMHcC...", true},
		{"an OpenPGP public key", "-----BEGIN PGP PUBLIC KEY BLOCK-----", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := HoldsSecret(tc.text); got != tc.want {
				t.Errorf("HoldsSecret(%q) = %v, want %v", tc.text, got, tc.want)
			}
			if red := RedactSecrets(tc.text); HoldsSecret(red) {
				t.Errorf("RedactSecrets(%q) = %q still holds a secret", tc.text, red)
			}
		})
	}
}
