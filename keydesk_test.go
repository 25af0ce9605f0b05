package keydesk

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseEnvironment(t *testing.T) {
	tests := []struct {
		in   string
		want Environment
		ok   bool
	}{
		{"sandbox", Sandbox, true}, {"Sandbox", Sandbox, true}, {"test", Sandbox, true}, {"TESTING", Sandbox, true},
		{" production ", Production, true}, {"prod", Production, true}, {"Live", Production, true}, {"**prod**", Production, true},
		{"staging", "", false}, {"uat", "", false}, {"", "", false}, {"sandbox production", "", false}, {"dev", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEnvironment(tt.in)
			if tt.ok != (err == nil) || got != tt.want {
				t.Fatalf("ParseEnvironment(%q) = %q, %v", tt.in, got, err)
			}
			var ie *InvalidEnvironmentError
			if !tt.ok && !errors.As(err, &ie) {
				t.Fatalf("error %T is not *InvalidEnvironmentError", err)
			}
		})
	}
	_, err := ParseEnvironment("staging")
	if !strings.Contains(err.Error(), "sandbox") || !strings.Contains(err.Error(), "production") {
		t.Errorf("error %q should say what is accepted", err)
	}
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		in         string
		want       Scope
		suggestion Scope
	}{
		{"accounts:read", ScopeAccountsRead, ""},
		{"Trading:Write", ScopeTradingWrite, ""},
		{" `keys:manage`, ", ScopeKeysManage, ""},
		{"trade:write", "", ScopeTradingWrite},
		{"accounts:raed", "", ScopeAccountsRead},
		{"marketdata", "", ScopeMarketdataRead},
		{"webhook:write", "", ScopeWebhooksWrite},
		{"admin", "", ""},
		{"everything:all", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScope(tt.in)
			if got != tt.want {
				t.Fatalf("ParseScope(%q) = %q, %v", tt.in, got, err)
			}
			if tt.want != "" {
				return
			}
			var ue *UnknownScopeError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not *UnknownScopeError", err)
			}
			if ue.Suggestion != tt.suggestion {
				t.Fatalf("suggestion for %q = %q, want %q", tt.in, ue.Suggestion, tt.suggestion)
			}
			if tt.suggestion != "" && !strings.Contains(err.Error(), "did you mean "+string(tt.suggestion)) {
				t.Fatalf("error %q should suggest %s", err, tt.suggestion)
			}
		})
	}
}

func TestScopesAreTheTwelve(t *testing.T) {
	if len(Scopes) != 12 {
		t.Fatalf("%d scopes, want 12", len(Scopes))
	}
	for _, s := range Scopes {
		if s.Grants() == "" {
			t.Errorf("%s has no description", s)
		}
	}
	got, errs := ParseScopes([]string{"trading:write", "accounts:read", "trading:write", "bogus"})
	if len(got) != 2 || got[0] != ScopeAccountsRead || got[1] != ScopeTradingWrite || len(errs) != 1 {
		t.Fatalf("ParseScopes = %v, %v", got, errs)
	}
}

func TestParseLabel(t *testing.T) {
	tests := []struct {
		in, want string
		reason   string // substring of the error, "" if valid
	}{
		{"prod-trading-engine", "prod-trading-engine", ""},
		{"  Treasury reconciliation  ", "Treasury reconciliation", ""},
		{"Équipe Trésorerie", "Équipe Trésorerie", ""},
		{"日本の取引", "日本の取引", ""},
		{strings.Repeat("a", 64), strings.Repeat("a", 64), ""},
		{strings.Repeat("é", 64), strings.Repeat("é", 64), ""},
		{strings.Repeat("a", 65), "", "65 characters"},
		{"", "", "empty"},
		{"   ", "", "empty"},
		{"two\nlines", "", "line break"},
		{"cr\rlf", "", "line break"},
		{"tab\there", "", "control character"},
		{"bell\x07", "", "control character"},
		{"zero\u200bwidth", "", "control character"},
		{"bad\xffutf8", "", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLabel(tt.in)
			if tt.reason == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseLabel(%q) = %q, %v", tt.in, got, err)
				}
				return
			}
			var le *InvalidLabelError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("ParseLabel(%q) error = %v, want one saying %q", tt.in, err, tt.reason)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	d := time.Date(2026, 11, 27, 23, 30, 0, 0, time.FixedZone("X", -5*3600)) // 28th in UTC
	id := RequestID(d, "cto@acme.example\x00abc@mail", 0, 0)
	if !ValidRequestID(id) || !strings.HasPrefix(id, "KR-20261128-") {
		t.Fatalf("id %q", id)
	}
	if id != RequestID(d, "cto@acme.example\x00abc@mail", 0, 0) {
		t.Fatal("not deterministic")
	}
	seen := map[string]bool{id: true}
	for _, other := range []string{
		RequestID(d, "cto@acme.example\x00abc@mail", 1, 0),
		RequestID(d, "cto@acme.example\x00abc@mail", 0, 1),
		RequestID(d, "cto@acme.example\x00abd@mail", 0, 0),
	} {
		if seen[other] {
			t.Fatalf("collision: %s", other)
		}
		seen[other] = true
	}
	for _, bad := range []string{"KR-2026112-AAAA", "KR-20261127-AAAI", "KR-20261127-AAAAA", "XX-20261127-AAAA"} {
		if ValidRequestID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	// Same sender and Message-ID: same key whatever the raw bytes.
	if SourceKey("A@acme.example", "<x@y>", []byte("1")) != SourceKey("a@acme.example", "x@y", []byte("2")) {
		t.Error("source key should depend on sender and Message-ID only")
	}
	if SourceKey("a@acme.example", "", []byte("1")) == SourceKey("a@acme.example", "", []byte("2")) {
		t.Error("without Message-ID the raw message must count")
	}
}

func TestDomainKey(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Buildmarkets.AI", "buildmarkets.ai", true},
		{"bücher.example", "xn--bcher-kva.example", true},
		{"buildmar\u212aets.ai", "", false},
		{"buildmarket\u017f.ai", "", false},
		{"acme-hold\u0130ngs.example", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got, ok := DomainKey(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("DomainKey(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if got := ASCIILower("Jane.\u212a\u0130@ACME.example"); got != "jane.\u212a\u0130@acme.example" {
		t.Errorf("ASCIILower folded beyond ASCII: %q", got)
	}
}

func TestMatchAddress(t *testing.T) {
	tests := []struct {
		pattern, addr string
		want          bool
	}{
		{"*@acme.example", "cto@acme.example", true},
		{"*@acme.example", "CTO@ACME.EXAMPLE", true},
		{"*@acme.example", "x@acme.example.evil.test", false},
		{"*@acme.example", "x@evil-acme.example", false},
		{"*@acme.example", "x@sub.acme.example", false},
		{"*@acme.example", "x@acme-example.test", false},
		{"*@acme.example", "acme.example", false},
		{"*@acme.example", "a@b@acme.example", false},
		{"cto@acme-holdings.example", "cto@acme-holdings.example", true},
		{"cto@acme-holdings.example", "cfo@acme-holdings.example", false},
		// Lookalikes: Unicode case folding would match each of these.
		{"*@buildmarkets.ai", "rm@buildmar\u212aets.ai", false}, // KELVIN SIGN
		{"*@buildmarkets.ai", "rm@buildmarket\u017f.ai", false}, // LATIN SMALL LETTER LONG S
		{"cto@acme-holdings.example", "cto@acme-hold\u0130ngs.example", false},
		{"cto@acme-holdings.example", "\u212ato@acme-holdings.example", false},
		{"jane@acme.example", "jane\u017f@acme.example", false},
		{"ſ@acme.example", "s@acme.example", false},
		// An internationalised domain matches in either of its forms.
		{"*@bücher.example", "x@xn--bcher-kva.example", true},
		{"*@xn--bcher-kva.example", "x@bücher.example", true},
		{"*@bücher.example", "x@BÜCHER.example", false},
	}
	for _, tt := range tests {
		if got := MatchAddress(tt.pattern, tt.addr); got != tt.want {
			t.Errorf("MatchAddress(%q, %q) = %v", tt.pattern, tt.addr, got)
		}
	}
	reg := &Registry{Partners: []*Partner{
		{ID: "holding", Requesters: []string{"*@acme-holdings.example"}},
		{ID: "acme", Requesters: []string{"*@acme.example", "cto@acme-holdings.example"}},
	}}
	if p, _ := reg.ByRequester("cto@acme-holdings.example"); p == nil || p.ID != "acme" {
		t.Errorf("an exact address must win over a domain pattern: got %v", p)
	}
	if _, ok := reg.ByRequester("x@nowhere.example"); ok {
		t.Error("unknown sender matched")
	}
}

func TestStateTable(t *testing.T) {
	for _, s := range States {
		for _, n := range s.Next() {
			if !n.Valid() {
				t.Errorf("%s → unknown state %s", s, n)
			}
		}
	}
	for _, s := range []State{StateRevoked, StateRejected, StateCancelled} {
		if !s.Terminal() || !s.Done() {
			t.Errorf("%s should be terminal", s)
		}
	}
	if StateDelivered.Terminal() || !StateDelivered.Done() || !CanTransition(StateDelivered, StateRevoked) {
		t.Error("a delivered key can be revoked later, and its request waits for nothing")
	}
	if !CanTransition(StateApproved, StateRevoking) || !CanTransition(StateRevoking, StateRevoked) || CanTransition(StateRevoking, StateApproved) {
		t.Error("a revocation goes approved → revoking → revoked, and is finished, never begun again")
	}
	if StateApproved.Terminal() || !CanTransition(StateGenerating, StateApproved) || CanTransition(StateDelivered, StateApproved) {
		t.Error("state table does not match DESIGN.md")
	}
}

// TestNilInventory: an inventory never listed (nil) holds no key.
func TestNilInventory(t *testing.T) {
	var inv *Inventory
	if inv.Key("key-001") != nil || inv.Live("") != nil {
		t.Error("a nil inventory holds keys")
	}
}
