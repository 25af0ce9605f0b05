package review

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// TestWideningCorrection: a correction that widens access (a new scope,
// keys:manage, production) warns its author, in the API answer and on the
// page, and its author cannot approve the request, even where four eyes
// does not otherwise apply. A correction that does not widen changes
// nothing of who may approve.
func TestWideningCorrection(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, field, value string
		warn               string // in the answer's warning; "" for none
		need               int    // approvals needed afterwards
	}{
		{"fewer scopes", "scopes", "accounts:read", "", 1},
		{"label", "label", "sandbox-reporting", "", 1},
		{"a scope added", "scopes", "accounts:read, trading:read, trading:write", "adds trading:write", 1},
		{"a scope swapped", "scopes", "accounts:read, marketdata:read", "adds marketdata:read", 1},
		{"keys:manage added", "scopes", "accounts:read, trading:read, keys:manage", "adds keys:manage); keys:manage lets the key create and revoke other keys", 2},
		{"to production", "environment", "production", "moves to production", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.request(nil, "")
			code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/correct", map[string]string{"field": tt.field, "value": tt.value})
			if code != http.StatusOK {
				t.Fatalf("correct: %d %v", code, out)
			}
			warning, _ := out["warning"].(string)
			if tt.warn == "" {
				if warning != "" || out["widened_by"] != nil {
					t.Fatalf("a correction that does not widen warns: %q %v", warning, out["widened_by"])
				}
				if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil); code != http.StatusOK || out["state"] != "approved" {
					t.Fatalf("the author of a narrowing correction approves: %d %v", code, out)
				}
				return
			}
			if !strings.Contains(warning, tt.warn) || !strings.Contains(warning, "cannot approve") {
				t.Errorf("warning %q, want it to say %q and that alice cannot approve", warning, tt.warn)
			}
			if wb, _ := out["widened_by"].([]any); len(wb) != 1 || wb[0] != "alice" {
				t.Errorf("widened_by = %v, want [alice]", out["widened_by"])
			}
			code, out = e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
			if code != http.StatusForbidden || out["code"] != "own_widening" || !strings.Contains(out["error"].(string), "another approver must") {
				t.Fatalf("the author approves her own widening: %d %v", code, out)
			}
			// Another approver may; with the approvals four eyes needs.
			code, out = e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
			wantState := map[int]string{1: "approved", 2: "pending_review"}[tt.need]
			if code != http.StatusOK || out["state"] != wantState {
				t.Fatalf("bob approves: %d %v, want %s", code, out, wantState)
			}
			if tt.need == 2 {
				// Four eyes: the second approver may not be alice either.
				if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil); code != http.StatusForbidden {
					t.Fatalf("alice as the second approver: %d %v", code, out)
				}
				if code, out := e.api("ada", "POST", "/api/v1/requests/"+r.ID+"/approve", nil); code != http.StatusOK || out["state"] != "approved" {
					t.Fatalf("ada as the second approver: %d %v", code, out)
				}
			}
			if got := e.get(r.ID); len(got.WidenedBy) != 1 || got.WidenedBy[0] != "alice" {
				t.Errorf("stored widened_by = %v", got.WidenedBy)
			}
		})
	}

	// In the UI: the form warns before, the result after, and the approve
	// button is gone for the author; approving anyway is refused with the
	// reason on the page.
	r := e.request(nil, "")
	b := e.login("alice")
	_, _, page := b.get("/requests/" + r.ID)
	if !strings.Contains(page, "widens access (adds a scope, adds <code>keys:manage</code>, or moves to production)") {
		t.Error("the correction form does not warn")
	}
	code, h, _ := b.post("/requests/"+r.ID+"/correct", url.Values{"field": {"environment"}, "value": {"production"}, "revision": {itoa(r.Revision)}})
	if code != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "?done=corrected-wider") {
		t.Fatalf("correct to production: %d %s", code, h.Get("Location"))
	}
	_, _, page = b.get(h.Get("Location"))
	for _, want := range []string{doneMessages["corrected-wider"], "Access was widened by a correction from alice: you cannot approve this request."} {
		if !strings.Contains(page, want) {
			t.Errorf("the page after the correction lacks %q", want)
		}
	}
	if strings.Contains(page, `action="/requests/`+r.ID+`/approve"`) {
		t.Error("the author of the widening still has an approve button")
	}
	code, _, page = b.post("/requests/"+r.ID+"/approve", nil)
	if code != http.StatusForbidden || !strings.Contains(page, "you cannot approve it: another approver must") {
		t.Fatalf("approve anyway: %d", code)
	}
	if _, _, page := e.login("bob").get("/requests/" + r.ID); !strings.Contains(page, "from alice: they cannot approve") || !strings.Contains(page, `action="/requests/`+r.ID+`/approve"`) {
		t.Error("bob does not see the widening or cannot approve")
	}
}

// TestKeysManageNeverByOmission: a partner without allowed_scopes may ask
// for the eleven other scopes unflagged, keys:manage only flagged.
func TestKeysManageNeverByOmission(t *testing.T) {
	e := newEnv(t)
	e.reg.Partners[0].AllowedScopes = nil
	plain := e.request(func(r *keydesk.Request) {
		r.Scopes = []keydesk.Scope{keydesk.ScopeAccountsWrite, keydesk.ScopeFundingWrite, keydesk.ScopeWebhooksWrite}
	}, "")
	km := e.request(func(r *keydesk.Request) { r.Scopes = []keydesk.Scope{keydesk.ScopeKeysManage} }, "")
	for _, tt := range []struct {
		r    *keydesk.Request
		want bool
	}{{plain, false}, {km, true}} {
		_, out := e.api("viv", "GET", "/api/v1/requests/"+tt.r.ID, nil)
		flags, _ := out["flags"].([]any)
		got := false
		for _, f := range flags {
			got = got || f == string(keydesk.FlagScopeNotAllowed)
		}
		if got != tt.want {
			t.Errorf("scopes %v: scope-not-allowed flag %v, want %v (flags %v)", tt.r.Scopes, got, tt.want, flags)
		}
	}
}

// TestCorrection checks how each field's new value is read, before any
// request is touched: the audit note, the field changed, the reasons it
// answers, and the sentence for a value that cannot be used.
func TestCorrection(t *testing.T) {
	r := &keydesk.Request{Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "old"}
	tests := []struct {
		name, field, value string
		note               string
		drop               []keydesk.ReasonCode
		check              func(*keydesk.Request) bool
		err                string
	}{
		{name: "environment", field: "environment", value: "production",
			note:  "environment: sandbox → production",
			drop:  []keydesk.ReasonCode{keydesk.ReasonMissingEnvironment, keydesk.ReasonInvalidEnvironment},
			check: func(x *keydesk.Request) bool { return x.Environment == keydesk.Production }},
		{name: "same environment", field: "environment", value: "sandbox", err: "the environment is already sandbox"},
		{name: "unknown environment", field: "environment", value: "staging", err: "staging"},
		{name: "scopes", field: "scopes", value: "accounts:read, trading:write",
			note: "scopes: accounts:read → accounts:read, trading:write",
			drop: []keydesk.ReasonCode{keydesk.ReasonMissingScopes, keydesk.ReasonUnknownScope},
			check: func(x *keydesk.Request) bool {
				return len(x.Scopes) == 2 && x.Scopes[1] == keydesk.ScopeTradingWrite
			}},
		{name: "same scopes", field: "scopes", value: "accounts:read", err: "the scopes are already accounts:read"},
		{name: "no scope", field: "scopes", value: " , ", err: "name at least one scope"},
		{name: "too many words", field: "scopes", value: strings.Repeat("x ", 2*len(keydesk.Scopes)+1), err: "scopes: there are only"},
		{name: "label", field: "label", value: " new ",
			note:  `label: "old" → "new"`,
			drop:  []keydesk.ReasonCode{keydesk.ReasonMissingLabel, keydesk.ReasonInvalidLabel},
			check: func(x *keydesk.Request) bool { return x.Label == "new" }},
		{name: "same label", field: "label", value: "old", err: `the label is already "old"`},
		{name: "label with a line break", field: "label", value: "a\nb", err: "line break"},
		{name: "unknown field", field: "partner", value: "x", err: `cannot correct "partner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := correction(r, tt.field, tt.value)
			if tt.err != "" {
				var e *Error
				if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Msg, tt.err) {
					t.Fatalf("error %v, want a bad request saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("correction: %v", err)
			}
			after := r.Clone()
			c.mutate(after)
			if c.note != tt.note || !slices.Equal(c.drop, tt.drop) || !tt.check(after) {
				t.Errorf("note %q drop %v after %+v; want note %q drop %v", c.note, c.drop, after, tt.note, tt.drop)
			}
			if r.Label != "old" || r.Environment != keydesk.Sandbox || len(r.Scopes) != 1 {
				t.Errorf("the request itself changed: %+v", r)
			}
		})
	}
}
