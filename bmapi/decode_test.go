package bmapi

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
)

func TestDecodeList(t *testing.T) {
	item := `{"id":"key-001","label":"backend","api_key":"bm_key_a","scopes":["accounts:read","trading:write"],"created_at":"2025-06-01T12:00:00Z","extra":{"x":1}}`
	want := keydesk.Key{ID: "key-001", Label: "backend", APIKey: "bm_key_a",
		Scopes:    []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingWrite},
		CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	tests := []struct {
		name    string
		body    string
		n       int
		wantErr string
	}{
		{name: "bare array", body: `[` + item + `]`, n: 1},
		{name: "keys envelope", body: `{"keys":[` + item + `],"count":1}`, n: 1},
		{name: "data envelope", body: `{"data":[` + item + `,` + item + `]}`, n: 2},
		{name: "Data in capitals", body: `{"Data":[` + item + `]}`, n: 1},
		{name: "one array field", body: `{"api_keys":[` + item + `],"total":1}`, n: 1},
		{name: "nested envelope", body: `{"result":{"items":[` + item + `]}}`, n: 1},
		{name: "empty array", body: `[]`, n: 0},
		{name: "null", body: `null`, n: 0},
		{name: "null keys", body: `{"keys":null,"other":[]}`, n: 0},
		{name: "has_more refused", body: `{"keys":[` + item + `],"has_more":true}`, wantErr: "more pages"},
		{name: "next refused", body: `{"data":[` + item + `],"next":"/v1/keys?page=2"}`, wantErr: "more pages"},
		{name: "next null accepted", body: `{"data":[` + item + `],"next":null}`, n: 1},
		{name: "two arrays", body: `{"a":[],"b":[]}`, wantErr: "2 arrays"},
		{name: "no array", body: `{"message":"ok"}`, wantErr: "no array"},
		{name: "not JSON", body: `<html>`, wantErr: "neither"},
		{name: "truncated", body: `[{"id":"key-001"`, wantErr: "invalid JSON"},
		{name: "deep", body: `{"a":{"b":{"c":{"d":[]}}}}`, wantErr: "too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := decodeList([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != tt.n {
				t.Fatalf("got %d keys, want %d", len(keys), tt.n)
			}
			for _, k := range keys {
				if k.ID != want.ID || k.Label != want.Label || k.APIKey != want.APIKey || !slices.Equal(k.Scopes, want.Scopes) || !k.CreatedAt.Equal(want.CreatedAt) {
					t.Errorf("key = %+v, want %+v", k, want)
				}
			}
		})
	}
}

func TestDecodeListTolerantFields(t *testing.T) {
	keys, err := decodeList([]byte(`[{"id":17,"label":null,"api_key":"k","scopes":"accounts:read, trading:read","created_at":1748779200,"status":"active"},
		{"id":"key-2","scopes":["new:scope"],"created_at":"yesterday"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if keys[0].ID != "17" || keys[0].Label != "" || !slices.Equal(keys[0].Scopes, []keydesk.Scope{"accounts:read", "trading:read"}) ||
		!keys[0].CreatedAt.Equal(time.Unix(1748779200, 0)) {
		t.Errorf("first key = %+v", keys[0])
	}
	if keys[1].ID != "key-2" || !slices.Equal(keys[1].Scopes, []keydesk.Scope{"new:scope"}) || !keys[1].CreatedAt.IsZero() {
		t.Errorf("second key = %+v", keys[1])
	}
}

func TestDecodeCreated(t *testing.T) {
	tests := []struct {
		name, body, secret, wantErr string
	}{
		{name: "contract", body: `{"id":"key-001","label":"l","api_key":"bm_key_abc123","api_secret":"bm_secret_xyz789","scopes":["accounts:read"],"created_at":"2025-06-01T12:00:00Z"}`, secret: "bm_secret_xyz789"},
		{name: "escapes", body: `{"id":"key-001","api_key":"k","api_secret":"a\"b\\c\/d\u00e9\ud83d\ude00\n"}`, secret: "a\"b\\c/dé😀\n"},
		{name: "data envelope", body: `{"data":{"id":"key-001","api_key":"k","api_secret":"s1"},"request_id":"r"}`, secret: "s1"},
		{name: "key envelope beside a key string", body: `{"key":{"id":"key-001","api_key":"k","api_secret":"s2"}}`, secret: "s2"},
		{name: "no secret", body: `{"id":"key-001","api_key":"k"}`, wantErr: "no api_secret"},
		{name: "no id", body: `{"api_key":"k","api_secret":"s"}`, wantErr: "no id"},
		{name: "secret not a string", body: `{"id":"1","api_key":"k","api_secret":42}`, wantErr: "not a JSON object"},
		{name: "array", body: `[]`, wantErr: "not a JSON object"},
		{name: "bad escape", body: `{"id":"1","api_key":"k","api_secret":"\x"}`, wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			k, err := decodeCreated(body)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "bm_secret") || strings.Contains(err.Error(), "42") {
					t.Fatalf("error %q shows the value", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			clear(body) // what the client does: the secret must live on in its own buffer
			if got := k.APISecret.Reveal(); got != tt.secret {
				t.Fatalf("secret = %q, want %q", got, tt.secret)
			}
			if k.ID != "key-001" {
				t.Errorf("id = %q", k.ID)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	own := []byte("s3cr3t-of-manager")
	tests := []struct{ name, body, want string }{
		{"api_secret field", `{"error":"x","api_secret":"bm_secret_zzz"}`, `{"error":"x","api_secret":"[redacted]"}`},
		{"cut secret", `{"client_secret": "abc`, `{"client_secret": "[redacted]"`},
		{"bare value", `oops bm_secret_abcDEF-12 happened`, `oops [redacted] happened`},
		{"own secret echoed", `{"header":"s3cr3t-of-manager"}`, `{"header":"[redacted]"}`},
		{"escaped quote inside", `{"password":"a\"b","ok":1}`, `{"password":"[redacted]","ok":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scrub([]byte(tt.body), own); got != tt.want {
				t.Errorf("scrub = %q, want %q", got, tt.want)
			}
		})
	}
	long := scrub([]byte(strings.Repeat("é", 1000)), nil)
	if len(long) > maxErrorBody+len("…") || !strings.HasSuffix(long, "…") || !strings.HasPrefix(long, "é") {
		t.Errorf("long body cut to %d bytes: %q…", len(long), long[:20])
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {" 0 ", 0}, {"-5", 0}, {"1.5", 0}, {"abc", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999", 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestUnclear(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"post 503", &Error{Kind: ErrServer, Method: "POST", Status: 503}, true},
		{"post unreadable 201", &Error{Kind: ErrProtocol, Method: "POST", Status: 201}, true},
		{"post reset after sending", &Error{Kind: ErrTransport, Method: "POST", sent: true}, true},
		{"post refused before sending", &Error{Kind: ErrTransport, Method: "POST"}, false},
		{"post 429", &Error{Kind: ErrRateLimited, Method: "POST", Status: 429}, false},
		{"post 401", &Error{Kind: ErrUnauthorized, Method: "POST", Status: 401}, false},
		{"get 503", &Error{Kind: ErrServer, Method: "GET", Status: 503}, false},
		{"other error", errors.New("x"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := Unclear(tt.err); got != tt.want {
			t.Errorf("%s: Unclear = %v, want %v", tt.name, got, tt.want)
		}
	}
}
