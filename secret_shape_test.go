package keydesk

import (
	"slices"
	"testing"
)

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

func TestFindSecrets(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // the values found, in order
		kinds      []SecretKind
	}{
		{"bm secret", "X-API-Key: bm_key_abc123\nthe secret bm_secret_xyz789 fails", []string{"bm_secret_xyz789"}, []SecretKind{SecretBM}},
		{"header line", "X-API-Secret: 9f8e7d6c5b4a3f2e1d0c", []string{"9f8e7d6c5b4a3f2e1d0c"}, []SecretKind{SecretHeader}},
		{"header with a bm secret", "x-api-secret: bm_secret_9f8e7d6c5b4a", []string{"bm_secret_9f8e7d6c5b4a"}, []SecretKind{SecretBM}},
		{"curl", `curl -H "X-API-Secret: s3cr3t-v4lue-42" https://x`, []string{"s3cr3t-v4lue-42"}, []SecretKind{SecretHeader}},
		{"json", `{"id": "key-001", "api_secret": "Zq8vW2pL0xYk"}`, []string{"Zq8vW2pL0xYk"}, []SecretKind{SecretField}},
		{"yaml", "  api_secret: Zq8vW2pL0xYk\n", []string{"Zq8vW2pL0xYk"}, []SecretKind{SecretField}},
		{"env", "BM_API_SECRET=Zq8vW2pL0xYk\nBM_API_KEY=bm_key_x", []string{"Zq8vW2pL0xYk"}, []SecretKind{SecretField}},
		{"camel case", `apiSecret: "Zq8vW2pL0xYk"`, []string{"Zq8vW2pL0xYk"}, []SecretKind{SecretField}},
		{"placeholder", "api_secret: <your secret>\nX-API-Secret: ${SECRET}\nbm_secret_…", nil, nil},
		{"short value", "api_secret: abc", nil, nil},
		{"masked", "api_secret: ********", nil, nil},
		{"marker", "X-API-Secret: [bm_secret redacted sha256:1a2b3c4d len:32-63]", nil, nil},
		{"prose", "We never email an API secret: it goes to your technical contact.", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var kinds []SecretKind
			for _, s := range FindSecrets([]byte(tc.text)) {
				got = append(got, tc.text[s.Start:s.End])
				kinds = append(kinds, s.Kind)
			}
			if !slices.Equal(got, tc.want) || !slices.Equal(kinds, tc.kinds) {
				t.Errorf("FindSecrets = %q %v, want %q %v", got, kinds, tc.want, tc.kinds)
			}
			if red := RedactSecrets(tc.text); len(FindSecrets([]byte(red))) > 0 {
				t.Errorf("RedactSecrets left a secret: %q", red)
			}
		})
	}
}
