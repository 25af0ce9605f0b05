package review

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

const day = 24 * time.Hour

// seedKeys writes the key inventory as the batch role would: acme holds a
// key-001 in both environments (the API numbers keys per environment),
// and in sandbox a key-010 and a revoked key-002 too.
func (e *env) seedKeys() {
	e.t.Helper()
	now := e.clock.Now()
	inv := map[keydesk.Environment][]keydesk.InventoryKey{
		keydesk.Sandbox: {
			{KeyRef: keydesk.KeyRef{ID: "key-010"}, Label: "ci-runner", Scopes: []keydesk.Scope{keydesk.ScopeMarketdataRead}, CreatedAt: now.Add(-10 * day), MadeBy: keydesk.MadeByPartner},
			{KeyRef: keydesk.KeyRef{ID: "key-002"}, Label: "old-backtest", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, CreatedAt: now.Add(-200 * day), RevokedAt: now.Add(-20 * day), MadeBy: keydesk.MadeByKeydesk, RequestID: "KR-20260510-AAAA"},
			{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "sandbox-backend", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead}, CreatedAt: now.Add(-400 * day), MadeBy: keydesk.MadeByKeydesk, RequestID: "KR-20251022-BBBB"},
		},
		keydesk.Production: {
			{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "prod-trading", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingWrite}, CreatedAt: now.Add(-30 * day), MadeBy: keydesk.MadeByKeydesk, RequestID: "KR-20261028-CCCC"},
			{KeyRef: keydesk.KeyRef{ID: "key-002"}, Label: "prod-reporting", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, CreatedAt: now.Add(-340 * day), MadeBy: keydesk.MadeByPartner},
		},
	}
	for env, keys := range inv {
		_, err := e.q.UpdateInventory(context.Background(), "acme", env, func(x *keydesk.Inventory) error {
			x.ListedAt = now.Add(-time.Hour)
			x.Keys = keys
			for i := range x.Keys {
				x.Keys[i].Partner, x.Keys[i].Environment = "acme", env
				x.Keys[i].FirstSeen = x.Keys[i].CreatedAt
			}
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

func withRotationPolicy(o *Options) {
	o.RotationMaxAge, o.RotationRemindBefore = 365*day, 30*day
}

func newKeysEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvOn(t, queuetest.Open(t), withRotationPolicy)
	e.seedKeys()
	return e
}

// TestAPIListKeys: GET /api/v1/keys lists the inventory by partner,
// environment and key ID in natural order, with the age at now, who made
// each key and whether the rotation policy calls for it; the filters
// narrow it to one partner account and environment.
func TestAPIListKeys(t *testing.T) {
	e := newKeysEnv(t)
	code, body := e.api("viv", "GET", "/api/v1/keys", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/keys: %d %v", code, body)
	}
	var got []string
	for _, k := range body["keys"].([]any) {
		m := k.(map[string]any)
		got = append(got, m["environment"].(string)+"/"+m["key_id"].(string))
	}
	want := []string{"sandbox/key-001", "sandbox/key-002", "sandbox/key-010", "production/key-001", "production/key-002"}
	if !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	first := body["keys"].([]any)[0].(map[string]any)
	for field, want := range map[string]any{
		"partner": "acme", "label": "sandbox-backend", "age_days": 400.0, "made_by": "keydesk",
		"request_id": "KR-20251022-BBBB", "revoked_at": nil, "rotation_due": true,
	} {
		if first[field] != want {
			t.Errorf("sandbox/key-001 %s = %v, want %v", field, first[field], want)
		}
	}
	if rev := body["keys"].([]any)[1].(map[string]any); rev["revoked_at"] == nil || rev["rotation_due"] != nil {
		t.Errorf("the revoked key-002: revoked_at %v, rotation_due %v", rev["revoked_at"], rev["rotation_due"])
	}

	code, body = e.api("viv", "GET", "/api/v1/keys?partner=acme&environment=production", nil)
	if code != http.StatusOK {
		t.Fatalf("filtered: %d %v", code, body)
	}
	keys := body["keys"].([]any)
	if len(keys) != 2 {
		t.Fatalf("production keys: %v", keys)
	}
	for i, want := range []struct {
		id  string
		due any
	}{{"key-001", nil}, {"key-002", true}} {
		k := keys[i].(map[string]any)
		if k["environment"] != "production" || k["key_id"] != want.id || k["rotation_due"] != want.due {
			t.Errorf("production key %d: %v", i, k)
		}
	}
	if l := body["listings"].([]any); len(l) != 1 || l[0].(map[string]any)["listed_at"] == nil {
		t.Errorf("listings: %v", l)
	}
	if code, body := e.api("viv", "GET", "/api/v1/keys?environment=staging", nil); code != http.StatusBadRequest || body["code"] != "bad_request" {
		t.Errorf("environment=staging: %d %v", code, body)
	}
	if code, body := e.api("viv", "GET", "/api/v1/keys?partner=globex", nil); code != http.StatusOK || len(body["keys"].([]any)) != 0 {
		t.Errorf("partner=globex: %d %v", code, body)
	}
}

// TestAPIAskKeyRefused: a revoke or rotate that names no key keydesk
// knows live, or without a reason, or by a viewer, is refused with the
// API's error shape, and nothing is created.
func TestAPIAskKeyRefused(t *testing.T) {
	e := newKeysEnv(t)
	e.reg.Partners[0].Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {}, keydesk.Production: {}}
	e.reg.Partners = append(e.reg.Partners, &keydesk.Partner{ID: "globex", Name: "Globex",
		Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {}}})
	body := func(partner, env, key, reason string) map[string]string {
		return map[string]string{"partner": partner, "environment": env, "key_id": key, "reason": reason}
	}
	tests := []struct {
		name, user, path string
		body             any
		status           int
		code, msg        string
	}{
		{"no reason", "alice", "/api/v1/keys/revoke", body("acme", "production", "key-001", "  "), 400, "bad_request", "give a reason"},
		{"unknown partner", "alice", "/api/v1/keys/revoke", body("initech", "production", "key-001", "leaked"), 404, "unknown_partner", "initech"},
		{"no such environment", "alice", "/api/v1/keys/revoke", body("acme", "staging", "key-001", "leaked"), 400, "bad_request", "staging"},
		{"environment the partner has not", "alice", "/api/v1/keys/revoke", body("globex", "production", "key-001", "leaked"), 404, "unknown_environment", "globex"},
		{"never listed", "alice", "/api/v1/keys/rotate", body("globex", "sandbox", "key-001", "yearly"), 404, "unknown_key", "Refresh"},
		{"key not in the inventory", "alice", "/api/v1/keys/revoke", body("acme", "production", "key-010", "leaked"), 404, "unknown_key", "key-010"},
		{"revoked key", "alice", "/api/v1/keys/revoke", body("acme", "sandbox", "key-002", "leaked"), 409, "key_revoked", "revoked"},
		{"revoked key, rotate", "alice", "/api/v1/keys/rotate", body("acme", "sandbox", "key-002", "yearly"), 409, "key_revoked", "revoked"},
		{"no key ID", "alice", "/api/v1/keys/revoke", body("acme", "sandbox", "", "leaked"), 400, "bad_request", "key_id"},
		{"viewer", "viv", "/api/v1/keys/revoke", body("acme", "sandbox", "key-001", "leaked"), 403, "forbidden", "approver"},
		{"unknown field", "alice", "/api/v1/keys/revoke", map[string]string{"partner": "acme", "key": "key-001"}, 400, "bad_request", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := e.api(tt.user, "POST", tt.path, tt.body)
			if code != tt.status || out["code"] != tt.code || !strings.Contains(out["error"].(string), tt.msg) {
				t.Fatalf("%d %v, want %d %s with %q", code, out, tt.status, tt.code, tt.msg)
			}
		})
	}
	if all, err := e.q.List(context.Background(), queue.Filter{}); err != nil || len(all) != 0 {
		t.Fatalf("requests after refusals: %d %v", len(all), err)
	}
}

// TestAPIRevokeByStaff: a revocation asked through the API is a revoke
// request pending review, naming the key by its triple; a second one for
// the same key is refused with the first's ID; under four eyes
// (production) the asker gives one approval and another approver the
// second, which approves it and asks the batch role to revoke at once.
func TestAPIRevokeByStaff(t *testing.T) {
	e := newKeysEnv(t)
	code, out := e.api("alice", "POST", "/api/v1/keys/revoke", map[string]string{
		"partner": "acme", "environment": "production", "key_id": "key-001", "reason": "secret pasted in a public issue"})
	if code != http.StatusCreated {
		t.Fatalf("revoke: %d %v", code, out)
	}
	id := out["id"].(string)
	for field, want := range map[string]any{
		"kind": "revoke", "state": "pending_review", "partner": "acme", "environment": "production",
		"key_id": "key-001", "requester": "alice", "reason": "secret pasted in a public issue", "approvals_needed": 2.0,
	} {
		if out[field] != want {
			t.Errorf("%s = %v, want %v", field, out[field], want)
		}
	}
	r := e.get(id)
	if r.KindOf() != keydesk.KindRevoke || r.KeyRef() != (keydesk.KeyRef{Partner: "acme", Environment: keydesk.Production, ID: "key-001"}) || !staffMade(r) {
		t.Fatalf("stored: %+v", r)
	}
	// The audit trail names the key by its triple.
	testAuditHas(t, e, "ask-revoke", "acme/production/key-001")

	// The same key again: refused, naming the open request.
	code, again := e.api("bob", "POST", "/api/v1/keys/revoke", map[string]string{
		"partner": "acme", "environment": "production", "key_id": "key-001", "reason": "again"})
	if code != http.StatusConflict || again["code"] != "revoke_open" || !strings.Contains(again["error"].(string), id) {
		t.Fatalf("second revoke: %d %v", code, again)
	}
	// The sandbox key-001 is another key: its revocation is no duplicate.
	if code, sb := e.api("bob", "POST", "/api/v1/keys/revoke", map[string]string{
		"partner": "acme", "environment": "sandbox", "key_id": "key-001", "reason": "decommissioned"}); code != http.StatusCreated {
		t.Fatalf("revoke the sandbox key-001: %d %v", code, sb)
	}

	// Four eyes: the asker's approval is one of two.
	code, a1 := e.api("alice", "POST", "/api/v1/requests/"+id+"/approve", nil)
	if code != http.StatusOK || a1["state"] != "pending_review" {
		t.Fatalf("alice's approval: %d %v", code, a1)
	}
	if code, a2 := e.api("alice", "POST", "/api/v1/requests/"+id+"/approve", nil); code != http.StatusConflict || a2["code"] != "already_approved" {
		t.Fatalf("alice approving twice: %d %v", code, a2)
	}
	if n := len(revokeRuns(t, e)); n != 0 {
		t.Fatalf("%d revoke runs before the second approval", n)
	}
	code, a2 := e.api("bob", "POST", "/api/v1/requests/"+id+"/approve", nil)
	if code != http.StatusOK || a2["state"] != "approved" || !strings.Contains(a2["message"].(string), "revokes key key-001 now") {
		t.Fatalf("bob's approval: %d %v", code, a2)
	}
	runs := revokeRuns(t, e)
	if len(runs) != 1 || runs[0].By != "bob" || runs[0].State != keydesk.BatchRequested {
		t.Fatalf("revoke runs after approval: %+v", runs)
	}
}

// TestAPIRevokeSandboxOneApprover: without four eyes the asker may
// approve alone; a rejection of a staff request sends no email.
func TestAPIRevokeSandboxOneApprover(t *testing.T) {
	e := newKeysEnv(t)
	ask := func() string {
		t.Helper()
		code, out := e.api("alice", "POST", "/api/v1/keys/revoke", map[string]string{
			"partner": "acme", "environment": "sandbox", "key_id": "key-010", "reason": "CI decommissioned"})
		if code != http.StatusCreated || out["approvals_needed"] != 1.0 {
			t.Fatalf("revoke: %d %v", code, out)
		}
		return out["id"].(string)
	}
	id := ask()
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+id+"/reject", map[string]string{"reason": "wrong key"}); code != http.StatusOK || !strings.Contains(out["message"].(string), "no email") {
		t.Fatalf("reject: %d %v", code, out)
	}
	if m := outboxMessages(t, e.q); len(m) != 0 {
		t.Fatalf("rejecting a staff request queued %d emails", len(m))
	}
	id = ask() // the first is done (rejected): a new one may be asked
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+id+"/approve", nil); code != http.StatusOK || out["state"] != "approved" {
		t.Fatalf("approve: %d %v", code, out)
	}
	if runs := revokeRuns(t, e); len(runs) != 1 || runs[0].By != "alice" {
		t.Fatalf("revoke runs: %+v", runs)
	}
}

// TestAPIRotateByStaff: a rotation copies the old key's label and scopes
// and names it as replaced; four eyes applies by environment and scope;
// approved, it waits for the batch like an issue (no immediate run).
func TestAPIRotateByStaff(t *testing.T) {
	e := newKeysEnv(t)
	code, out := e.api("alice", "POST", "/api/v1/keys/rotate", map[string]string{
		"partner": "acme", "environment": "sandbox", "key_id": "key-001", "reason": "older than a year"})
	if code != http.StatusCreated {
		t.Fatalf("rotate: %d %v", code, out)
	}
	id := out["id"].(string)
	r := e.get(id)
	if r.KindOf() != keydesk.KindRotate || r.ReplacesKeyID != "key-001" || r.KeyID != "" || r.Label != "sandbox-backend" ||
		keydesk.JoinScopes(r.Scopes) != "accounts:read, trading:read" || r.State != keydesk.StatePendingReview || r.Reason != "older than a year" {
		t.Fatalf("stored rotate: %+v", r)
	}
	if code, again := e.api("bob", "POST", "/api/v1/keys/rotate", map[string]string{
		"partner": "acme", "environment": "sandbox", "key_id": "key-001", "reason": "again"}); code != http.StatusConflict || again["code"] != "rotate_open" {
		t.Fatalf("second rotate: %d %v", code, again)
	}
	code, ap := e.api("bob", "POST", "/api/v1/requests/"+id+"/approve", nil)
	if code != http.StatusOK || ap["state"] != "approved" || !strings.Contains(ap["message"].(string), "next batch makes the new key") {
		t.Fatalf("approve: %d %v", code, ap)
	}
	if runs := revokeRuns(t, e); len(runs) != 0 {
		t.Fatalf("an approved rotation asked for %d revoke runs", len(runs))
	}
}

// TestAPIPickKey: a revocation whose label matched several live keys
// cannot be approved until a person picks one of them; only a candidate
// may be picked, and the pick is the request's key.
func TestAPIPickKey(t *testing.T) {
	e := newKeysEnv(t)
	r := e.request(func(r *keydesk.Request) {
		r.Kind, r.Label, r.Scopes = keydesk.KindRevoke, "", nil
		r.KeyCandidates, r.Reason = []string{"key-001", "key-010"}, "we lost the laptop"
	}, "")
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil); code != http.StatusConflict || out["code"] != "key_not_picked" {
		t.Fatalf("approve before a pick: %d %v", code, out)
	}
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/correct", map[string]string{"field": "environment", "value": "production"}); code != http.StatusConflict || out["code"] != "not_correctable" {
		t.Fatalf("correcting a revocation: %d %v", code, out)
	}
	for _, tt := range []struct {
		user, key string
		status    int
		code      string
	}{
		{"alice", "key-002", 400, "bad_request"},
		{"alice", "", 400, "bad_request"},
		{"viv", "key-010", 403, "forbidden"},
	} {
		if code, out := e.api(tt.user, "POST", "/api/v1/requests/"+r.ID+"/key", map[string]string{"key_id": tt.key}); code != tt.status || out["code"] != tt.code {
			t.Errorf("%s picks %q: %d %v", tt.user, tt.key, code, out)
		}
	}
	code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/key", map[string]string{"key_id": "key-010"})
	if code != http.StatusOK || out["key_id"] != "key-010" || out["key_candidates"] != nil {
		t.Fatalf("pick: %d %v", code, out)
	}
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/key", map[string]string{"key_id": "key-001"}); code != http.StatusConflict || out["code"] != "no_candidates" {
		t.Fatalf("second pick: %d %v", code, out)
	}
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/approve", nil); code != http.StatusOK || out["state"] != "approved" {
		t.Fatalf("approve after the pick: %d %v", code, out)
	}
	// Found in both environments, the candidates name theirs, and the pick
	// sets the request's environment.
	both := e.request(func(r *keydesk.Request) {
		r.Kind, r.Environment, r.Label, r.Scopes = keydesk.KindRevoke, "", "", nil
		r.KeyCandidates = []string{"sandbox/key-001", "production/key-001"}
	}, "")
	code, out = e.api("alice", "POST", "/api/v1/requests/"+both.ID+"/key", map[string]string{"key_id": "production/key-001"})
	if code != http.StatusOK || out["key_id"] != "key-001" || out["environment"] != "production" {
		t.Fatalf("pick across environments: %d %v", code, out)
	}
	// A revocation that names no key at all cannot be approved either.
	none := e.request(func(r *keydesk.Request) { r.Kind, r.Label, r.Scopes = keydesk.KindRevoke, "gone-label", nil }, "")
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+none.ID+"/approve", nil); code != http.StatusConflict || out["code"] != "incomplete" || !strings.Contains(out["error"].(string), "no key") {
		t.Fatalf("approve a revocation without a key: %d %v", code, out)
	}
	if runs := revokeRuns(t, e); len(runs) != 1 {
		t.Fatalf("revoke runs: %d", len(runs))
	}
}

// TestAPIConfirmRotation: staff confirm a delivered rotation once; the
// rotation records who and when, for the batch's sweep to revoke the old
// key. A rotation not yet delivered, or an issue, cannot be confirmed.
func TestAPIConfirmRotation(t *testing.T) {
	e := newKeysEnv(t)
	due := e.clock.Now().Add(7 * day)
	rot := e.request(func(r *keydesk.Request) {
		r.Kind, r.State, r.ReplacesKeyID, r.KeyID = keydesk.KindRotate, keydesk.StateDelivered, "key-001", "key-011"
		r.Rotation = &keydesk.Rotation{Due: due}
	}, "")
	early := e.request(func(r *keydesk.Request) { r.Kind, r.ReplacesKeyID = keydesk.KindRotate, "key-010" }, "")
	issue := e.request(func(r *keydesk.Request) { r.State = keydesk.StateDelivered }, "")
	for _, tt := range []struct {
		id, user, code string
		status         int
	}{
		{early.ID, "alice", "invalid_state", 409},
		{issue.ID, "alice", "not_rotation", 409},
		{rot.ID, "viv", "forbidden", 403},
	} {
		if code, out := e.api(tt.user, "POST", "/api/v1/requests/"+tt.id+"/rotation/confirm", nil); code != tt.status || out["code"] != tt.code {
			t.Errorf("confirm %s as %s: %d %v", tt.id, tt.user, code, out)
		}
	}
	runs := len(revokeRuns(t, e))
	code, out := e.api("alice", "POST", "/api/v1/requests/"+rot.ID+"/rotation/confirm", nil)
	if code != http.StatusOK {
		t.Fatalf("confirm: %d %v", code, out)
	}
	// The old key goes now, not at the batch role's next pass.
	if n := len(revokeRuns(t, e)); n != runs+1 {
		t.Errorf("revoke runs after the confirmation: %d, want %d", n, runs+1)
	}
	got := e.get(rot.ID)
	if got.Rotation == nil || got.Rotation.ConfirmedBy != "alice" || !got.Rotation.ConfirmedAt.Equal(e.clock.Now()) || !got.Rotation.Due.Equal(due) || got.State != keydesk.StateDelivered {
		t.Fatalf("stored rotation: %+v", got.Rotation)
	}
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+rot.ID+"/rotation/confirm", nil); code != http.StatusConflict || out["code"] != "rotation_confirmed" {
		t.Fatalf("second confirm: %d %v", code, out)
	}
}

// TestAPIRefreshKeys: an approver asks for the keys to be listed now: a
// batch record with the inventory trigger; a viewer may not.
func TestAPIRefreshKeys(t *testing.T) {
	e := newKeysEnv(t)
	if code, out := e.api("viv", "POST", "/api/v1/keys/refresh", nil); code != http.StatusForbidden {
		t.Fatalf("viewer refresh: %d %v", code, out)
	}
	code, out := e.api("bob", "POST", "/api/v1/keys/refresh", nil)
	if code != http.StatusAccepted || out["trigger"] != keydesk.TriggerInventory || out["state"] != "requested" || out["by"] != "bob" {
		t.Fatalf("refresh: %d %v", code, out)
	}
}

func TestNaturalCompare(t *testing.T) {
	ids := []string{"key-10", "key-2", "key-001", "key-1", "abc", "key-02x", "key-2a"}
	slices.SortStableFunc(ids, naturalCompare)
	want := []string{"abc", "key-001", "key-1", "key-2", "key-2a", "key-02x", "key-10"}
	if !slices.Equal(ids, want) {
		t.Fatalf("sorted %v, want %v", ids, want)
	}
}

// revokeRuns are the batch records that ask for revocations now.
func revokeRuns(t *testing.T, e *env) []*keydesk.Batch {
	t.Helper()
	bs, err := e.q.ListBatches(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(bs, func(b *keydesk.Batch) bool { return b.Trigger != keydesk.TriggerRevoke })
}

// testAuditHas fails unless a staff event action's change names what.
func testAuditHas(t *testing.T, e *env, action, what string) {
	t.Helper()
	entries, err := e.q.Audit(context.Background(), queue.AuditQuery{Kind: "staff"})
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Action == action && strings.Contains(en.Change, what) {
			return
		}
	}
	t.Fatalf("no %s audit event naming %s in %+v", action, what, entries)
}

// TestQueueKindFilter: the queue page filters by kind and marks the
// requests that are not issues with their kind.
func TestQueueKindFilter(t *testing.T) {
	e := newKeysEnv(t)
	issue := e.request(nil, "")
	revoke := e.request(func(r *keydesk.Request) { r.Kind, r.KeyID, r.Label, r.Scopes = keydesk.KindRevoke, "key-010", "", nil }, "")
	b := e.login("alice")
	rowRE := regexp.MustCompile(`data-id="(KR-[^"]+)"`)
	ids := func(body string) []string {
		var out []string
		for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	code, _, body := b.get("/queue?view=all&kind=revoke")
	if code != http.StatusOK || !slices.Equal(ids(body), []string{revoke.ID}) || !strings.Contains(body, `<span class="tag kind kind-revoke">revoke</span>`) {
		t.Fatalf("kind=revoke: %d rows %v", code, ids(body))
	}
	if _, _, body := b.get("/queue?view=all&kind=issue"); !slices.Equal(ids(body), []string{issue.ID}) {
		t.Fatalf("kind=issue: rows %v", ids(body))
	}
	if code, _, _ := b.get("/queue?kind=renew"); code != http.StatusBadRequest {
		t.Fatalf("kind=renew: %d", code)
	}
}

// TestPartnerPageForms drives the partner page's and request page's
// forms over HTTP: a listing that failed shows why; a viewer sees the
// keys but no Revoke… or Rotate…; a second revocation of a key shows the
// page again with the open request named; Refresh asks for a listing;
// Confirm rotation is offered on a delivered rotation and records who.
func TestPartnerPageForms(t *testing.T) {
	e := newKeysEnv(t)
	if _, err := e.q.UpdateInventory(context.Background(), "acme", keydesk.Production, func(x *keydesk.Inventory) error {
		x.Problem = "the API refused the partner's credentials (401)"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	viv := e.login("viv")
	code, _, body := viv.get("/partners/acme")
	if code != http.StatusOK || !strings.Contains(body, `data-key="key-010"`) || strings.Contains(body, `action="/keys/revoke"`) || strings.Contains(body, `action="/keys/refresh"`) {
		t.Fatalf("viewer's partner page: %d, forms shown or keys missing", code)
	}
	if !strings.Contains(body, "The last listing failed: the API refused the partner&#39;s credentials (401)") {
		t.Fatalf("the listing's problem is not shown")
	}
	if code, _, _ := viv.get("/partners/initech"); code != http.StatusNotFound {
		t.Fatalf("unknown partner page: %d", code)
	}

	alice := e.login("alice")
	alice.get("/partners/acme")
	form := url.Values{"partner": {"acme"}, "environment": {"sandbox"}, "key_id": {"key-010"}, "reason": {"CI retired"}}
	code, h, _ := alice.post("/keys/revoke", form)
	if code != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "?done=asked-revoke") {
		t.Fatalf("revoke form: %d %s", code, h.Get("Location"))
	}
	first := strings.TrimPrefix(strings.TrimSuffix(h.Get("Location"), "?done=asked-revoke"), "/requests/")
	code, _, body = alice.post("/keys/revoke", form)
	if code != http.StatusConflict || !strings.Contains(body, first) || !strings.Contains(body, `class="error"`) || !strings.Contains(body, `data-key="key-010"`) {
		t.Fatalf("second revoke form: %d (want the partner page with an error naming %s)", code, first)
	}
	code, _, body = alice.post("/keys/revoke", url.Values{"partner": {"acme"}, "environment": {"sandbox"}, "key_id": {"key-001"}, "reason": {""}})
	if code != http.StatusBadRequest || !strings.Contains(body, "give a reason") {
		t.Fatalf("revoke without a reason: %d", code)
	}
	code, h, _ = alice.post("/keys/refresh", url.Values{"partner": {"acme"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/partners/acme?done=refresh" {
		t.Fatalf("refresh: %d %s", code, h.Get("Location"))
	}
	if _, _, body := alice.get("/partners/acme?done=refresh"); !strings.Contains(body, "a listing is asked for") {
		t.Fatalf("the partner page does not say a listing is asked for")
	}

	rot := e.request(func(r *keydesk.Request) {
		r.Kind, r.State, r.ReplacesKeyID, r.KeyID = keydesk.KindRotate, keydesk.StateDelivered, "key-001", "key-011"
		r.Rotation = &keydesk.Rotation{Due: e.clock.Now().Add(7 * day)}
	}, "")
	_, _, body = alice.get("/requests/" + rot.ID)
	if !strings.Contains(body, `action="/requests/`+rot.ID+`/rotation/confirm"`) {
		t.Fatalf("no Confirm rotation on a delivered rotation")
	}
	code, h, _ = alice.post("/requests/"+rot.ID+"/rotation/confirm", nil)
	if code != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "?done=rotation-confirmed") {
		t.Fatalf("confirm: %d %s", code, h.Get("Location"))
	}
	_, _, body = alice.get("/requests/" + rot.ID)
	if strings.Contains(body, `/rotation/confirm"`) || !regexp.MustCompile(`class="confirmed">[^<]+ by alice`).MatchString(body) {
		t.Fatalf("after confirming, the page still offers it or does not say who confirmed")
	}
}
