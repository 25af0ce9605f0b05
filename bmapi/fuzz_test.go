package bmapi

import (
	"bytes"
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	`{"id":"key-001","label":"backend-service-prod","api_key":"bm_key_abc123","api_secret":"bm_secret_xyz789","scopes":["accounts:read","trading:write","marketdata:read"],"created_at":"2025-06-01T12:00:00Z"}`,
	`[{"id":"key-001","label":"a","api_key":"k","scopes":["accounts:read"],"created_at":"2025-06-01T12:00:00Z","status":"active","last_used_at":null}]`,
	`{"keys":[{"id":1}],"count":1}`,
	`{"data":{"items":[{"id":"x","scopes":"a,b"}]}}`,
	`{"data":{"id":"key-1","api_key":"k","api_secret":"s\u00e9\ud83d\ude00"}}`,
	`{"has_more":true,"data":[]}`,
	`{"api_secret":"\ud800"}`,
	`null`, `[]`, `{}`, `"x"`, `{"a":[],"b":[]}`,
}

// FuzzDecode feeds both decoders and the scrubber any bytes: none may
// panic, and a scrubbed body never shows a bm_secret_ value.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := decodeCreated(bytes.Clone(b)); err == nil {
			if k.ID == "" || k.APIKey == "" || k.APISecret.IsZero() {
				t.Fatalf("accepted an incomplete key %+v", k.Key)
			}
			k.APISecret.Wipe()
		}
		_, _ = decodeList(bytes.Clone(b))
		if s := scrub(b, []byte("own-secret")); strings.Contains(s, "bm_secret_") || strings.Contains(s, "own-secret") {
			t.Fatalf("scrub left a secret: %q", s)
		}
	})
}
