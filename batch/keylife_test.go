package batch_test

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

// scopes are the harness requests' scopes.
var scopes = []keydesk.Scope{"accounts:read", "trading:read"}

// withProduction gives the harness partner manager credentials in
// production too, whose API (h.prod) numbers its keys on its own.
func (h *harness) withProduction() {
	p := *h.partner
	p.Environments = maps.Clone(p.Environments)
	p.Environments[keydesk.Production] = keydesk.PartnerEnvironment{APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)}
	h.partner = &p
	h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{&p}}
}

// client is the partner's own keys:manage key in env, as the partner
// (or keydesk's requests, in a test's setup) uses it.
func (h *harness) client(env keydesk.Environment) *bmapi.Client {
	url := h.url
	if env == keydesk.Production {
		url = h.prodURL
	}
	return bmapi.New(bmapi.Options{BaseURL: url, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret), RetryBase: 10 * time.Millisecond})
}

// makeKey creates a key through the API, as the partner would by hand.
func (h *harness) makeKey(env keydesk.Environment, label string, sc []keydesk.Scope) *keydesk.CreatedKey {
	h.t.Helper()
	k, err := h.client(env).CreateKey(h.ctx, label, sc)
	if err != nil {
		h.t.Fatal(err)
	}
	k.APISecret.Wipe()
	return k
}

// delivered stores an issue request whose key k was delivered.
func (h *harness) delivered(env keydesk.Environment, k *keydesk.CreatedKey) *keydesk.Request {
	return h.request(k.Label, func(r *keydesk.Request) {
		r.Environment, r.State, r.KeyID, r.APIKey = env, keydesk.StateDelivered, k.ID, k.APIKey
		r.Attempt = &keydesk.Attempt{ID: "made-" + k.ID, StartedAt: time.Now()}
	})
}

// revokeRequest stores an approved revoke request for key id in env.
func (h *harness) revokeRequest(env keydesk.Environment, id string, mod func(*keydesk.Request)) *keydesk.Request {
	return h.request("", func(r *keydesk.Request) {
		r.Kind, r.Environment, r.KeyID, r.Scopes = keydesk.KindRevoke, env, id, nil
		r.Reason = "the secret was pasted into a ticket: bm_secret_Leaked123"
		if mod != nil {
			mod(r)
		}
	})
}

// liveIDs lists the live keys of acme at env's simulator, seeded ones
// aside.
func (h *harness) liveIDs(env keydesk.Environment) []string {
	api := h.api
	if env == keydesk.Production {
		api = h.prod
	}
	ids := []string{}
	for _, k := range api.LiveKeys("acme") {
		ids = append(ids, k.ID)
	}
	slices.Sort(ids)
	return ids
}

func (h *harness) inventory(env keydesk.Environment) *keydesk.Inventory {
	h.t.Helper()
	inv, err := h.q.Inventory(h.ctx, "acme", env)
	if err != nil {
		h.t.Fatal(err)
	}
	return inv
}

// TestRevokeAtOnce: a revoke request approved, and the revoke record the
// review role writes on approval, revoke the key at the API within
// seconds, with no batch due: the request and the request that made the
// key end revoked, the inventory shows it, the requester and the
// technical contact get one notice, the audit names the triple; no key
// is made for an approved issue request meanwhile.
func TestRevokeAtOnce(t *testing.T) {
	h := newHarness(t)
	k := h.makeKey(keydesk.Sandbox, "backend", scopes)
	other := h.makeKey(keydesk.Sandbox, "reporting", scopes)
	maker := h.delivered(keydesk.Sandbox, k)
	h.delivered(keydesk.Sandbox, other)
	waiting := h.request("new-service", nil) // approved issue request: waits for its batch
	r := h.runner(func(o *batch.Options) { o.SweepInterval = time.Hour })
	h.run(r)
	testenv.Eventually(t, 20*time.Second, "the inventory listed at start", func() bool {
		inv, err := h.q.Inventory(h.ctx, "acme", keydesk.Sandbox)
		return err == nil && !inv.ListedAt.IsZero()
	})

	rev := h.revokeRequest(keydesk.Sandbox, k.ID, func(r *keydesk.Request) { r.State = keydesk.StatePendingReview })
	if _, err := h.q.Apply(h.ctx, rev.ID, queue.Change{Actor: "alice", Action: "approve", From: keydesk.StatePendingReview, To: keydesk.StateApproved}); err != nil {
		t.Fatal(err)
	}
	trigger := &keydesk.Batch{ID: h.q.NewBatchID(), Trigger: keydesk.TriggerRevoke, By: "alice", State: keydesk.BatchRequested, Requested: time.Now()}
	if err := h.q.PutBatch(h.ctx, trigger); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the revocation", func() bool {
		return h.get(rev.ID).State == keydesk.StateRevoked
	})
	if live := h.liveIDs(keydesk.Sandbox); !slices.Equal(live, []string{other.ID}) {
		t.Errorf("live keys %v, want only %s (%s revoked)", live, other.ID, k.ID)
	}
	if got := h.get(rev.ID); got.RevokedAt.IsZero() || got.Attempt == nil {
		t.Errorf("revoke request = %s", dump(got))
	}
	if got := h.get(maker.ID); got.State != keydesk.StateRevoked || got.RevokedAt.IsZero() {
		t.Errorf("the request that made %s is %s, want revoked with its time", k.ID, dump(got))
	}
	if got := h.get(waiting.ID); got.State != keydesk.StateApproved {
		t.Errorf("an approved issue request is %s after a revocation: keys wait for their batch", got.State)
	}
	testenv.Eventually(t, 10*time.Second, "the revoke record done", func() bool {
		b, err := h.q.GetBatch(h.ctx, trigger.ID)
		return err == nil && b.State == keydesk.BatchDone
	})
	if ik := h.inventory(keydesk.Sandbox).Key(k.ID); ik == nil || ik.Live() || ik.RequestID != maker.ID || ik.MadeBy != keydesk.MadeByKeydesk {
		t.Errorf("inventory of %s = %+v, want revoked, made by %s", k.ID, ik, maker.ID)
	}
	notices := kind(h.outbox(), keydesk.KindKeyRevoked)
	if len(notices) != 1 {
		t.Fatalf("key-revoked notices = %s", dump(notices))
	}
	n := notices[0]
	if !slices.Equal(n.To, []string{"cto@acme.example", "sec@acme.example"}) || n.RequestID != rev.ID ||
		!strings.Contains(n.Subject, k.ID) || !strings.Contains(n.Text, "backend") || !strings.Contains(n.Text, "the secret was pasted into a ticket") ||
		strings.Contains(n.Text, "bm_secret") || strings.Contains(n.Text, "Leaked123") {
		t.Errorf("notice = %s", dump(n))
	}
	templatestest.Check(t, n.Text)
	audit, err := h.q.Audit(h.ctx, queue.AuditQuery{Kind: "batch", Ref: rev.ID})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(audit, func(e queue.AuditEntry) bool {
		return e.Action == "key-revoked" && strings.Contains(e.Change, "acme/sandbox/"+k.ID)
	}) {
		t.Errorf("the audit does not name the revoked triple: %s", dump(audit))
	}
	if h.api.Stats().Creates != 2 {
		t.Errorf("%d keys created, want only the test's 2", h.api.Stats().Creates)
	}
}

// TestRevokeFaults: a revocation is idempotent (a key already revoked, or
// never known, is revoked: the API's 404 says it is gone), survives 429
// and 5xx answers with the same triple, and fails with an alert when the
// partner's credentials are refused. Faults that outlast the client's
// tries leave it revoking, for the next sweep.
func TestRevokeFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(h *harness, k *keydesk.CreatedKey)
		keyID  string // default the key made
		state  keydesk.State
		// then, after a second sweep with the faults cleared
		then    keydesk.State
		alert   bool
		problem string
	}{
		{name: "live key", inject: func(*harness, *keydesk.CreatedKey) {}, state: keydesk.StateRevoked},
		{name: "already revoked at the API", inject: func(h *harness, k *keydesk.CreatedKey) {
			if err := h.client(keydesk.Sandbox).RevokeKey(h.ctx, k.ID); err != nil {
				t.Fatal(err)
			}
		}, state: keydesk.StateRevoked},
		{name: "a key the API never had", inject: func(*harness, *keydesk.CreatedKey) {}, keyID: "key-999", state: keydesk.StateRevoked},
		{name: "429 twice", inject: func(h *harness, _ *keydesk.CreatedKey) { h.api.FailNextOf("DELETE", 2, http.StatusTooManyRequests) },
			state: keydesk.StateRevoked},
		{name: "503 twice", inject: func(h *harness, _ *keydesk.CreatedKey) { h.api.FailNextOf("DELETE", 2, http.StatusServiceUnavailable) },
			state: keydesk.StateRevoked},
		{name: "5xx beyond the tries", inject: func(h *harness, _ *keydesk.CreatedKey) { h.api.FailNextOf("DELETE", 50, http.StatusBadGateway) },
			state: keydesk.StateRevoking, then: keydesk.StateRevoked},
		{name: "credentials refused", inject: func(h *harness, _ *keydesk.CreatedKey) {
			p := *h.partner
			p.Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {APIKey: managerKey, APISecret: keydesk.SecretString("bm_secret_wrong")}}
			h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{&p}}
		}, state: keydesk.StateFailed, alert: true, problem: "refused acme's sandbox credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			k := h.makeKey(keydesk.Sandbox, "backend", scopes)
			maker := h.delivered(keydesk.Sandbox, k)
			id := k.ID
			if tc.keyID != "" {
				id = tc.keyID
			}
			rev := h.revokeRequest(keydesk.Sandbox, id, nil)
			tc.inject(h, k)
			r := h.runner(nil)
			if _, err := r.SweepRevocations(h.ctx); err != nil {
				t.Fatal(err)
			}
			got := h.get(rev.ID)
			if got.State != tc.state || !strings.Contains(got.Problem, tc.problem) {
				t.Fatalf("revoke request = %s", dump(got))
			}
			if tc.then != "" {
				h.api.ClearFaults()
				if _, err := r.SweepRevocations(h.ctx); err != nil {
					t.Fatal(err)
				}
				if got = h.get(rev.ID); got.State != tc.then {
					t.Fatalf("after the next sweep: %s", dump(got))
				}
			}
			revoked := got.State == keydesk.StateRevoked
			if live := h.liveIDs(keydesk.Sandbox); (len(live) == 0) != (revoked && id == k.ID || tc.name == "already revoked at the API") {
				t.Errorf("live keys %v with the request %s", live, got.State)
			}
			if m := h.get(maker.ID); (m.State == keydesk.StateRevoked) != (revoked && id == k.ID) {
				t.Errorf("the key's own request is %s", m.State)
			}
			if n := len(kind(h.outbox(), keydesk.KindKeyRevoked)); n != map[bool]int{true: 1}[revoked] {
				t.Errorf("%d key-revoked notices", n)
			}
			if alerts := kind(h.outbox(), keydesk.KindAlert); (len(alerts) == 1) != tc.alert {
				t.Errorf("alerts = %s", dump(alerts))
			}
			if st := h.api.Stats(); st.Revokes > 1 {
				t.Errorf("the key was revoked %d times", st.Revokes)
			}
		})
	}
}

// TestBatchRevokes: a batch takes approved revoke requests too, and
// never makes a key for one.
func TestBatchRevokes(t *testing.T) {
	h := newHarness(t)
	k := h.makeKey(keydesk.Sandbox, "backend", scopes)
	h.delivered(keydesk.Sandbox, k)
	rev := h.revokeRequest(keydesk.Sandbox, k.ID, nil)
	issue := h.request("reporting", nil)
	b, err := h.runner(nil).RunNow(h.ctx, keydesk.TriggerManual, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b.Counts[batch.OutcomeRevoked] != 1 || b.Counts[batch.OutcomeGenerated] != 1 || len(b.Counts) != 2 {
		t.Fatalf("batch = %s", dump(b))
	}
	if s := h.get(rev.ID).State; s != keydesk.StateRevoked {
		t.Errorf("revoke request %s", s)
	}
	got := h.get(issue.ID)
	if live := h.liveIDs(keydesk.Sandbox); !slices.Equal(live, []string{got.KeyID}) {
		t.Errorf("live keys %v, want only the new %s", live, got.KeyID)
	}
}

// TestInventory: the batch lists each account's keys and joins them with
// its records: which request made a key, which the partner made itself,
// which went outside keydesk. The two environments both hold a key-002,
// kept apart. A listing that fails keeps the last keys and says why.
func TestInventoryJoin(t *testing.T) {
	h := newHarness(t)
	h.withProduction()
	sbMade := h.makeKey(keydesk.Sandbox, "backend", scopes)
	maker := h.delivered(keydesk.Sandbox, sbMade)
	prodOwn := h.makeKey(keydesk.Production, "partner-script", []keydesk.Scope{"marketdata:read"})
	gone := h.makeKey(keydesk.Production, "old-script", []keydesk.Scope{"marketdata:read"})
	if sbMade.ID != "key-002" || prodOwn.ID != "key-002" {
		t.Fatalf("ids %s and %s: the simulator must number keys per account and environment, key-001 (the manager key) first", sbMade.ID, prodOwn.ID)
	}
	r := h.runner(nil)
	if err := r.RefreshInventory(h.ctx); err != nil {
		t.Fatal(err)
	}
	sb, prod := h.inventory(keydesk.Sandbox), h.inventory(keydesk.Production)
	want := map[keydesk.Environment][]string{
		keydesk.Sandbox:    {"key-001 manager partner  live", "key-002 backend keydesk " + maker.ID + " live"},
		keydesk.Production: {"key-001 manager partner  live", "key-002 partner-script partner  live", "key-003 old-script partner  live"},
	}
	show := func(inv *keydesk.Inventory) []string {
		var out []string
		for _, k := range inv.Keys {
			st := "live"
			if !k.Live() {
				st = "revoked"
			}
			out = append(out, strings.Join([]string{k.ID, k.Label, string(k.MadeBy), k.RequestID, st}, " "))
			if k.Partner != "acme" || k.Environment != inv.Environment || k.FirstSeen.IsZero() {
				t.Errorf("key %+v in the %s inventory", k, inv.Environment)
			}
		}
		return out
	}
	if got := show(sb); !slices.Equal(got, want[keydesk.Sandbox]) {
		t.Errorf("sandbox inventory %q, want %q", got, want[keydesk.Sandbox])
	}
	if got := show(prod); !slices.Equal(got, want[keydesk.Production]) {
		t.Errorf("production inventory %q, want %q", got, want[keydesk.Production])
	}
	firstSeen := prod.Key(prodOwn.ID).FirstSeen

	// Revoked outside keydesk: noticed at the next listing; first seen kept.
	if err := h.client(keydesk.Production).RevokeKey(h.ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.RefreshInventory(h.ctx); err != nil {
		t.Fatal(err)
	}
	prod = h.inventory(keydesk.Production)
	if k := prod.Key(gone.ID); k == nil || k.Live() {
		t.Errorf("%s revoked outside keydesk: %+v", gone.ID, k)
	}
	if k := prod.Key(prodOwn.ID); !k.FirstSeen.Equal(firstSeen) || !k.Live() {
		t.Errorf("%s after a second listing: %+v (first seen %s)", prodOwn.ID, k, firstSeen)
	}
	if k := h.inventory(keydesk.Sandbox).Key("key-002"); k == nil || !k.Live() || k.Label != "backend" {
		t.Errorf("sandbox key-002 after production's key-003 went: %+v", k)
	}

	// A listing that fails: the keys stay, the problem is said.
	h.prod.FailNextOf("GET", 20, http.StatusServiceUnavailable)
	if err := r.RefreshInventory(h.ctx); err == nil {
		t.Error("a failed listing is not reported")
	}
	prod = h.inventory(keydesk.Production)
	if !strings.Contains(prod.Problem, "could not be listed") || len(prod.Keys) != 3 || prod.Key(prodOwn.ID) == nil || !prod.Key(prodOwn.ID).Live() {
		t.Errorf("production after a failed listing = %s", dump(prod))
	}
	if sb := h.inventory(keydesk.Sandbox); sb.Problem != "" {
		t.Errorf("sandbox has a problem: %q", sb.Problem)
	}
}

// TestInventoryTrigger: an inventory record (what the review role writes
// when a person asks for a fresh list) lists the keys at once.
func TestInventoryTrigger(t *testing.T) {
	h := newHarness(t)
	r := h.runner(nil)
	h.run(r)
	testenv.Eventually(t, 20*time.Second, "the inventory listed at start", func() bool {
		inv, err := h.q.Inventory(h.ctx, "acme", keydesk.Sandbox)
		return err == nil && !inv.ListedAt.IsZero()
	})
	k := h.makeKey(keydesk.Sandbox, "by-hand", scopes)
	trigger := &keydesk.Batch{ID: h.q.NewBatchID(), Trigger: keydesk.TriggerInventory, By: "alice", State: keydesk.BatchRequested, Requested: time.Now()}
	if err := h.q.PutBatch(h.ctx, trigger); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the new key in the inventory", func() bool {
		inv, err := h.q.Inventory(h.ctx, "acme", keydesk.Sandbox)
		return err == nil && inv.Key(k.ID) != nil
	})
	if ik := h.inventory(keydesk.Sandbox).Key(k.ID); ik.MadeBy != keydesk.MadeByPartner || ik.Label != "by-hand" {
		t.Errorf("%+v", ik)
	}
	testenv.Eventually(t, 10*time.Second, "the inventory record done", func() bool {
		b, err := h.q.GetBatch(h.ctx, trigger.ID)
		return err == nil && b.State == keydesk.BatchDone
	})
	if n := len(kind(h.outbox(), keydesk.KindBatchReport)); n != 0 {
		t.Errorf("%d batch reports for an inventory run", n)
	}
}

// TestReconcileSparesPartnerKeys: after a crash mid-attempt, the orphan is
// revoked but never a key of the partner's own with the same label: one
// the inventory knew before the attempt began (though made within the
// clock-skew window), nor one made during the attempt with other scopes.
// When two unknown keys match, none is revoked: the request is blocked
// and support alerted.
func TestReconcileSparesPartnerKeys(t *testing.T) {
	tests := []struct {
		name string
		// before runs before the attempt starts, during after it.
		before, during func(h *harness) []string // keys that must survive
		orphans        int                       // orphans of the attempt
		state          keydesk.State
		revoked        int
	}{
		{name: "known before the attempt", before: func(h *harness) []string {
			k := h.makeKey(keydesk.Sandbox, "backend", scopes)
			if err := h.runner(nil).RefreshInventory(h.ctx); err != nil {
				h.t.Fatal(err)
			}
			return []string{k.ID}
		}, orphans: 1, state: keydesk.StateApproved, revoked: 1},
		{name: "made during the attempt with other scopes", during: func(h *harness) []string {
			return []string{h.makeKey(keydesk.Sandbox, "backend", []keydesk.Scope{"accounts:read"}).ID}
		}, orphans: 1, state: keydesk.StateApproved, revoked: 1},
		{name: "two unknown candidates", during: func(h *harness) []string {
			return []string{h.makeKey(keydesk.Sandbox, "backend", scopes).ID}
		}, orphans: 1, state: keydesk.StateBlocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var keep []string
			if tc.before != nil {
				keep = append(keep, tc.before(h)...)
			}
			crashed := h.request("backend", func(r *keydesk.Request) {
				r.State = keydesk.StateGenerating
				r.Attempt = &keydesk.Attempt{ID: "crashed", StartedAt: time.Now()}
			})
			var orphans []string
			for range tc.orphans {
				orphans = append(orphans, h.makeKey(keydesk.Sandbox, "backend", scopes).ID)
			}
			if tc.during != nil {
				keep = append(keep, tc.during(h)...)
			}
			if err := h.runner(nil).Reconcile(h.ctx); err != nil {
				t.Fatal(err)
			}
			got := h.get(crashed.ID)
			if got.State != tc.state {
				t.Fatalf("request = %s", dump(got))
			}
			live := h.liveIDs(keydesk.Sandbox)
			for _, id := range keep {
				if !slices.Contains(live, id) {
					t.Errorf("the partner's key %s was revoked (live %v)", id, live)
				}
			}
			if n := len(h.revokedKeyIDs("acme")); n != tc.revoked {
				t.Errorf("%d keys revoked, want %d (orphans %v, live %v)", n, tc.revoked, orphans, live)
			}
			alerts := kind(h.outbox(), keydesk.KindAlert)
			if tc.state == keydesk.StateBlocked {
				if len(alerts) != 1 || !strings.Contains(alerts[0].Text, orphans[0]) || !strings.Contains(got.Problem, orphans[0]) || !strings.Contains(got.Problem, keep[0]) {
					t.Errorf("alerts = %s\nproblem %q", dump(alerts), got.Problem)
				}
			} else if len(alerts) != 0 {
				t.Errorf("alerts = %s", dump(alerts))
			}
		})
	}
}

// TestStaleRunRecords: a batch closes the batch records a dead instance
// left running, but not a revocation's, which may be running beside it
// under its own lease; the next revocation sweep closes that one.
func TestStaleRunRecords(t *testing.T) {
	h := newHarness(t)
	stale := map[string]*keydesk.Batch{}
	for _, trigger := range []string{keydesk.TriggerSchedule, keydesk.TriggerRevoke} {
		b := &keydesk.Batch{ID: h.q.NewBatchID() + "-" + trigger, Trigger: trigger, By: "x", State: keydesk.BatchRunning, Requested: time.Now()}
		if err := h.q.PutBatch(h.ctx, b); err != nil {
			t.Fatal(err)
		}
		stale[trigger] = b
	}
	r := h.runner(nil)
	if err := r.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	if s := h.batchRecord(stale[keydesk.TriggerSchedule].ID).State; s != keydesk.BatchFailed {
		t.Errorf("stale batch is %s, want failed", s)
	}
	if s := h.batchRecord(stale[keydesk.TriggerRevoke].ID).State; s != keydesk.BatchRunning {
		t.Errorf("a revocation's record is %s after a batch's reconciliation, want left running", s)
	}
	if _, err := r.SweepRevocations(h.ctx); err != nil {
		t.Fatal(err)
	}
	if got := h.batchRecord(stale[keydesk.TriggerRevoke].ID); got.State != keydesk.BatchFailed || !strings.Contains(got.Error, "interrupted") {
		t.Errorf("stale revocation record after a sweep = %s", dump(got))
	}
}
