package keydesk

import "testing"

// TestPartnerAllows: without allowed_scopes a partner may ask for the
// eleven scopes but not keys:manage, which it gets only by naming it.
func TestPartnerAllows(t *testing.T) {
	open := &Partner{ID: "open"}
	listed := &Partner{ID: "listed", AllowedScopes: []Scope{ScopeAccountsRead, ScopeKeysManage}}
	for _, s := range Scopes {
		if got, want := open.Allows(s), s != ScopeKeysManage; got != want {
			t.Errorf("no allowed_scopes: Allows(%s) = %v, want %v", s, got, want)
		}
		if got, want := listed.Allows(s), s == ScopeAccountsRead || s == ScopeKeysManage; got != want {
			t.Errorf("allowed_scopes [accounts:read, keys:manage]: Allows(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestWideningOf(t *testing.T) {
	base := &Request{Environment: Sandbox, Scopes: []Scope{ScopeAccountsRead, ScopeTradingRead}}
	tests := []struct {
		name  string
		after func(r *Request)
		want  string
	}{
		{"same", func(r *Request) {}, ""},
		{"label", func(r *Request) { r.Label = "other" }, ""},
		{"fewer scopes", func(r *Request) { r.Scopes = []Scope{ScopeAccountsRead} }, ""},
		{"a scope added", func(r *Request) { r.Scopes = append(r.Scopes, ScopeTradingWrite) }, "adds trading:write"},
		{"a scope swapped", func(r *Request) { r.Scopes = []Scope{ScopeAccountsRead, ScopeMarketdataRead} }, "adds marketdata:read"},
		{"keys:manage added", func(r *Request) { r.Scopes = []Scope{ScopeKeysManage, ScopeAccountsRead} }, "adds keys:manage"},
		{"to production", func(r *Request) { r.Environment = Production }, "moves to production"},
		{"both", func(r *Request) { r.Environment = Production; r.Scopes = []Scope{ScopeKeysManage, ScopeFundingWrite} }, "adds funding:write, keys:manage; moves to production"},
		{"environment cleared", func(r *Request) { r.Environment = "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := base.Clone()
			tt.after(after)
			w := WideningOf(base, after)
			if w.String() != tt.want || w.Any() != (tt.want != "") {
				t.Errorf("WideningOf = %q (any %v), want %q", w.String(), w.Any(), tt.want)
			}
		})
	}
	none := &Request{}
	if w := WideningOf(none, &Request{Environment: Production}); !w.Production {
		t.Error("a request with no environment corrected to production does not widen")
	}
	if w := WideningOf(&Request{Environment: Production}, &Request{Environment: Sandbox}); w.Any() {
		t.Errorf("production → sandbox widens: %v", w)
	}
}
