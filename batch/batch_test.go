package batch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

var secretRE = regexp.MustCompile(`bm_secret_[A-Za-z0-9]+`)

// TestGenerate runs a batch over approved requests and checks what a
// technical contact, support and the simulator see: one working key per
// request, delivered encrypted and signed, and no secret stored anywhere.
func TestGenerate(t *testing.T) {
	h := newHarness(t)
	reqs := []*keydesk.Request{
		h.request("sandbox-backend", nil),
		h.request("sandbox-backend", nil), // same label: handled one after the other
		h.request("reporting", nil),
	}
	pending := h.request("later", func(r *keydesk.Request) { r.State = keydesk.StatePendingReview })
	reg := metrics.New()
	var logs testenv.Buffer
	r := h.runner(func(o *batch.Options) {
		o.Metrics, o.Concurrency = reg, 4
		o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	b, err := r.RunNow(h.ctx, "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b.State != keydesk.BatchDone || b.Counts[batch.OutcomeGenerated] != 3 || len(b.Counts) != 1 {
		t.Fatalf("batch = %s", dump(b))
	}
	if got := h.batchRecord(b.ID); got.State != keydesk.BatchDone || len(got.Outcomes) != 3 {
		t.Fatalf("stored batch = %s", dump(got))
	}
	if got := reg.Counter("keydesk_batch_outcomes_total", "", "outcome").Value("generated"); got != 3 {
		t.Errorf("keydesk_batch_outcomes_total{generated} = %v, want 3", got)
	}
	if h.get(pending.ID).State != keydesk.StatePendingReview {
		t.Error("a request pending review was touched")
	}

	msgs := h.outbox()
	deliveries := kind(msgs, keydesk.KindKeyDelivery)
	if len(deliveries) != 3 {
		t.Fatalf("%d key deliveries, want 3", len(deliveries))
	}
	var keyIDs []string
	contact := cryptotest.Contact(t, crypto.Curve25519)
	signer := cryptotest.SigningKey(t)
	for _, req := range reqs {
		got := h.get(req.ID)
		if got.State != keydesk.StateGenerated || got.KeyID == "" || !strings.HasPrefix(got.APIKey, "bm_key_") || got.Attempt == nil {
			t.Fatalf("request after batch = %s", dump(got))
		}
		keyIDs = append(keyIDs, got.KeyID)
		i := slices.IndexFunc(deliveries, func(m *keydesk.Outgoing) bool { return m.RequestID == req.ID })
		if i < 0 {
			t.Fatalf("no delivery for %s", req.ID)
		}
		d := deliveries[i]
		if d.AttemptID != got.Attempt.ID || d.ID != req.ID+".key."+got.Attempt.ID || !slices.Equal(d.To, []string{"sec@acme.example"}) ||
			d.Subject != "Your Buildmarkets API key ("+req.ID+")" || d.Text != "" {
			t.Errorf("delivery = %+v", d)
		}
		// The contact decrypts it, the signature verifies, and the pair works.
		plain, err := crypto.DecryptAndVerify(d.Entity, contact.Private, contact.Passphrase, signer.Public)
		if err != nil {
			t.Fatalf("contact cannot open the delivery: %v", err)
		}
		secret := secretRE.Find(plain)
		if !bytes.Contains(plain, []byte(got.APIKey)) || secret == nil {
			t.Fatalf("delivery lacks the key pair")
		}
		if !h.api.Authenticate(got.APIKey, secret) {
			t.Errorf("the delivered pair of %s does not authenticate", req.ID)
		}
		assertNoSecretStored(t, h, secret)
		if bytes.Contains(logs.Bytes(), secret) {
			t.Error("a secret is in the log")
		}
	}
	slices.Sort(keyIDs)
	if live := h.liveKeyIDs("acme"); !slices.Equal(live, keyIDs) {
		t.Errorf("live keys %v, want exactly the recorded %v", live, keyIDs)
	}

	reports := kind(msgs, keydesk.KindBatchReport)
	if len(reports) != 1 || reports[0].To[0] != supportAddr || !strings.Contains(reports[0].Subject, "3 generated") ||
		!strings.Contains(reports[0].Text, "Waiting for review: 1") || !strings.Contains(reports[0].Text, "generated    3") {
		t.Errorf("report = %s", dump(reports))
	}
	audit, err := h.q.Audit(h.ctx, queue.AuditQuery{Kind: "batch", Ref: b.ID})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action)
	}
	if !slices.Equal(actions, []string{"batch-start", "batch-done"}) {
		t.Errorf("audit of the batch = %v", actions)
	}
}

// assertNoSecretStored reads every stream of the store (records, audit,
// batch records, outbox, leases) and fails if the secret is in any.
func assertNoSecretStored(t *testing.T, h *harness, secret []byte) {
	t.Helper()
	err := h.q.EachStoredMessage(h.ctx, func(name string, seq uint64, data []byte, header map[string][]string) error {
		if bytes.Contains(data, secret) {
			t.Fatalf("stream %s message %d holds a secret in plain text", name, seq)
		}
		for k, vs := range header {
			for _, v := range vs {
				if strings.Contains(v, string(secret)) {
					t.Fatalf("stream %s message %d header %s holds a secret", name, seq, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFaults injects the API's failures and checks that every request ends
// with exactly one live key, or none and a clear state, and never two.
func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(h *harness)
		mod    func(o *batch.Options)
		// want: state of the request, live keys, revoked keys, count of reconciled.
		state      keydesk.State
		live       int
		revoked    int
		reconciled int
		problem    string
	}{
		{name: "connection dropped after create", inject: func(h *harness) { h.api.DropAfterCreate(1) },
			state: keydesk.StateGenerated, live: 1, revoked: 1, reconciled: 1},
		{name: "500 after create", inject: func(h *harness) { h.api.FailAfterCreate(1, 500) },
			state: keydesk.StateGenerated, live: 1, revoked: 1, reconciled: 1},
		{name: "503 before create", inject: func(h *harness) { h.api.FailNextOf("POST", 1, http.StatusServiceUnavailable) },
			state: keydesk.StateGenerated, live: 1, revoked: 0, reconciled: 1},
		{name: "429 then success", inject: func(h *harness) { h.api.FailNextOf("POST", 1, http.StatusTooManyRequests) },
			state: keydesk.StateGenerated, live: 1},
		{name: "429 and no tries left", inject: func(h *harness) { h.api.FailNextOf("POST", 1, http.StatusTooManyRequests) },
			mod: func(o *batch.Options) { o.MaxTries = 1 }, state: keydesk.StateApproved},
		// Not knowing the account's keys, the batch makes none there:
		// a reconciliation could not tell the partner's own keys.
		{name: "keys not listed", inject: func(h *harness) { h.api.FailNextOf("GET", 20, http.StatusServiceUnavailable) },
			state: keydesk.StateApproved},
		{name: "credentials refused", inject: func(h *harness) {
			pe := h.partner.Environments[keydesk.Sandbox]
			pe.APISecret = keydesk.SecretString("bm_secret_wrong")
			h.partner.Environments[keydesk.Sandbox] = pe
		}, state: keydesk.StateFailed, problem: "refused acme's sandbox credentials"},
		{name: "manager key lacks keys:manage", inject: func(h *harness) {
			h.partner.Environments[keydesk.Sandbox] = keydesk.PartnerEnvironment{APIKey: "bm_key_globex_reader", APISecret: keydesk.SecretString("bm_secret_globex_reader")}
		}, state: keydesk.StateFailed, problem: "keys:manage"},
		{name: "no credentials for the environment", inject: func(h *harness) {
			delete(h.partner.Environments, keydesk.Sandbox)
		}, state: keydesk.StateFailed, problem: "no keys:manage credentials configured for acme sandbox"},
		{name: "contact key does not match its pin", inject: func(h *harness) {
			h.partner.TechnicalContact.ArmoredKey = cryptotest.Other(t, crypto.Curve25519).Public
		}, state: keydesk.StateBlocked, problem: "cannot receive a key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			// A private copy: the test edits it.
			p := *h.partner
			p.Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: h.partner.Environments[keydesk.Sandbox]}
			h.partner = &p
			h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{&p}}
			req := h.request("backend", nil)
			tc.inject(h)
			b, err := h.runner(tc.mod).RunNow(h.ctx, "manual", "alice")
			if err != nil {
				t.Fatal(err)
			}
			got := h.get(req.ID)
			if got.State != tc.state || !strings.Contains(got.Problem, tc.problem) {
				t.Fatalf("request = %s\nbatch = %s", dump(got), dump(b))
			}
			if live := h.liveKeyIDs("acme"); len(live) != tc.live {
				t.Errorf("live keys %v, want %d", live, tc.live)
			} else if tc.live == 1 && live[0] != got.KeyID {
				t.Errorf("live key %s is not the recorded %s", live[0], got.KeyID)
			}
			if rev := h.revokedKeyIDs("acme"); len(rev) != tc.revoked {
				t.Errorf("revoked keys %v, want %d", rev, tc.revoked)
			}
			if b.Counts[batch.OutcomeReconciled] != tc.reconciled {
				t.Errorf("reconciled %d, want %d: %s", b.Counts[batch.OutcomeReconciled], tc.reconciled, dump(b))
			}
			if tc.state == keydesk.StateBlocked && h.api.Stats().Creates != 0 {
				t.Error("a key was created for a contact who cannot receive it")
			}
			alerts := kind(h.outbox(), keydesk.KindAlert)
			if wantAlert := tc.state == keydesk.StateFailed; (len(alerts) == 1) != wantAlert {
				t.Errorf("alerts = %s", dump(alerts))
			}
			if tc.revoked == 1 {
				hist, err := h.q.History(h.ctx, req.ID, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(hist, func(e queue.AuditEntry) bool {
					return strings.HasPrefix(e.Change, "reconciled: orphan key-") && e.From == keydesk.StateGenerating && e.To == keydesk.StateApproved
				}) {
					t.Errorf("the audit trail does not show the orphan revoked: %s", dump(hist))
				}
			}
		})
	}
}

// TestRefusedCredentialsSkipPartner: after a 401 the partner's other
// requests in that environment wait, untouched, for the next batch.
func TestRefusedCredentialsSkipPartner(t *testing.T) {
	h := newHarness(t)
	pe := h.partner.Environments[keydesk.Sandbox]
	p := *h.partner
	p.Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {APIKey: pe.APIKey, APISecret: keydesk.SecretString("bm_secret_wrong")}}
	h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{&p}}
	var ids []string
	for _, l := range []string{"a", "b", "c", "d"} {
		ids = append(ids, h.request(l, nil).ID)
	}
	b, err := h.runner(func(o *batch.Options) { o.Concurrency = 1 }).RunNow(h.ctx, "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if b.Counts[batch.OutcomeFailed] != 1 || b.Counts[batch.OutcomeSkipped] != 3 {
		t.Fatalf("batch = %s", dump(b))
	}
	if s := h.get(ids[0]).State; s != keydesk.StateFailed {
		t.Errorf("first request %s", s)
	}
	for _, id := range ids[1:] {
		if s := h.get(id).State; s != keydesk.StateApproved {
			t.Errorf("request %s is %s, want approved", id, s)
		}
	}
	// One refused listing of the account's keys at the batch's start,
	// one refused create; the other requests never reach the API.
	if n := h.api.Stats().Unauthorized; n != 2 {
		t.Errorf("%d calls refused: the partner was not skipped", n)
	}
	alerts := kind(h.outbox(), keydesk.KindAlert)
	if len(alerts) != 1 || alerts[0].To[0] != supportAddr || !strings.Contains(alerts[0].Subject, "Acme Capital") {
		t.Errorf("alerts = %s", dump(alerts))
	}
}

// TestMissingCredentials: a partner environment without keys:manage
// credentials (partners.yaml leaves them to the batch role, which lacks
// them) fails its first request with a problem that says so, skips the
// others of that pair, never calls the API, and alerts support once.
func TestMissingCredentials(t *testing.T) {
	tests := []struct {
		name string
		env  keydesk.Environment
		pe   *keydesk.PartnerEnvironment // nil: the environment is not in partners.yaml
	}{
		{"no secret", keydesk.Sandbox, &keydesk.PartnerEnvironment{APIKey: managerKey, AutoApprove: true}},
		{"empty secret", keydesk.Sandbox, &keydesk.PartnerEnvironment{APIKey: managerKey, APISecret: keydesk.SecretString("")}},
		{"no key", keydesk.Sandbox, &keydesk.PartnerEnvironment{APISecret: keydesk.SecretString(managerSecret)}},
		{"no environment", keydesk.Production, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			p := *h.partner
			p.Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{}
			if tc.pe != nil {
				p.Environments[tc.env] = *tc.pe
			}
			h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{&p}}
			first := h.request("a", func(r *keydesk.Request) { r.Environment = tc.env })
			second := h.request("b", func(r *keydesk.Request) { r.Environment = tc.env })
			b, err := h.runner(func(o *batch.Options) { o.Concurrency = 1 }).RunNow(h.ctx, "manual", "alice")
			if err != nil {
				t.Fatal(err)
			}
			if b.Counts[batch.OutcomeFailed] != 1 || b.Counts[batch.OutcomeSkipped] != 1 || b.Counts[batch.OutcomeGenerated] != 0 {
				t.Fatalf("batch = %s", dump(b))
			}
			got := h.get(first.ID)
			want := "no keys:manage credentials configured for acme " + string(tc.env) + ": give the batch role its api_key and api_secret in partners.yaml"
			if got.State != keydesk.StateFailed || !strings.HasPrefix(got.Problem, want) {
				t.Errorf("first request: %s %q, want failed %q", got.State, got.Problem, want)
			}
			if s := h.get(second.ID).State; s != keydesk.StateApproved {
				t.Errorf("second request is %s, want approved for the next batch", s)
			}
			if n := h.api.Stats().Requests + h.prod.Stats().Requests; n != 0 {
				t.Errorf("%d API calls without credentials", n)
			}
			alerts := kind(h.outbox(), keydesk.KindAlert)
			if len(alerts) != 1 || !strings.Contains(alerts[0].Subject, "No API credentials for Acme Capital ("+string(tc.env)+")") ||
				!strings.Contains(alerts[0].Text, want) {
				t.Errorf("alerts = %s", dump(alerts))
			}
		})
	}
}

// TestReconcile is the restart after a crash between "generating" and
// "generated": the orphan is revoked, a key of another request with the
// same label is left alone, and the next batch makes one new key.
func TestReconcile(t *testing.T) {
	h := newHarness(t)
	client := bmapi.New(bmapi.Options{BaseURL: h.url, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)})
	scopes := []keydesk.Scope{"accounts:read", "trading:read"} // the requests'
	// Another request holds a live key with the same label.
	other, err := client.CreateKey(h.ctx, "backend", scopes)
	if err != nil {
		t.Fatal(err)
	}
	h.request("backend", func(r *keydesk.Request) {
		r.State, r.KeyID, r.APIKey = keydesk.StateDelivered, other.ID, other.APIKey
		r.Attempt = &keydesk.Attempt{ID: "old", StartedAt: time.Now()}
	})
	// The crashed attempt: generating, and the API made its key.
	start := time.Now()
	crashed := h.request("backend", func(r *keydesk.Request) {
		r.State = keydesk.StateGenerating
		r.Attempt = &keydesk.Attempt{ID: "crashed", StartedAt: start}
	})
	orphan, err := client.CreateKey(h.ctx, "backend", scopes)
	if err != nil {
		t.Fatal(err)
	}
	// A batch left running by the crashed instance.
	stale := &keydesk.Batch{ID: "B-20260101-000000-AAAAAA", State: keydesk.BatchRunning, Trigger: "schedule", By: "schedule"}
	if err := h.q.PutBatch(h.ctx, stale); err != nil {
		t.Fatal(err)
	}

	r := h.runner(nil)
	if err := r.Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	got := h.get(crashed.ID)
	if got.State != keydesk.StateApproved || got.Attempt != nil {
		t.Fatalf("after reconciliation: %s", dump(got))
	}
	if live := h.liveKeyIDs("acme"); !slices.Equal(live, []string{other.ID}) {
		t.Fatalf("live keys %v, want only %s (orphan %s revoked)", live, other.ID, orphan.ID)
	}
	if sb := h.batchRecord(stale.ID); sb.State != keydesk.BatchFailed || !strings.Contains(sb.Error, "interrupted") {
		t.Errorf("stale batch = %s", dump(sb))
	}

	b, err := r.RunNow(h.ctx, "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	got = h.get(crashed.ID)
	if got.State != keydesk.StateGenerated || b.Counts[batch.OutcomeGenerated] != 1 {
		t.Fatalf("after batch: %s\n%s", dump(got), dump(b))
	}
	want := []string{other.ID, got.KeyID}
	slices.Sort(want)
	if live := h.liveKeyIDs("acme"); !slices.Equal(live, want) {
		t.Errorf("live keys %v, want %v", live, want)
	}
}

// TestReconcileKeyIDsPerEnvironment: the API numbers keys per account and
// environment, so sandbox and production both hold a key-002. An orphan
// whose ID a request of the other environment records, or that this run
// revoked in the other environment, is still an orphan and is revoked;
// the recorded key of the other environment is left alone.
func TestReconcileKeyIDsPerEnvironment(t *testing.T) {
	h := newHarness(t)
	p := *h.partner
	p.Environments = maps.Clone(p.Environments)
	p.Environments[keydesk.Production] = keydesk.PartnerEnvironment{APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)}
	h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{&p}}
	sandbox := bmapi.New(bmapi.Options{BaseURL: h.url, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)})
	prod := bmapi.New(bmapi.Options{BaseURL: h.prodURL, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)})
	mustCreate := func(c *bmapi.Client, label string) string {
		t.Helper()
		k, err := c.CreateKey(h.ctx, label, []keydesk.Scope{"accounts:read", "trading:read"})
		if err != nil {
			t.Fatal(err)
		}
		return k.ID
	}
	start := time.Now()
	crashed := func(env keydesk.Environment, label string) *keydesk.Request {
		return h.request(label, func(r *keydesk.Request) {
			r.Environment, r.State = env, keydesk.StateGenerating
			r.Attempt = &keydesk.Attempt{ID: "crashed-" + string(env) + "-" + label, StartedAt: start}
		})
	}
	// Production: a delivered key, then a crashed attempt's orphan.
	delivered := mustCreate(prod, "trading")
	h.request("trading", func(r *keydesk.Request) {
		r.Environment, r.State, r.KeyID = keydesk.Production, keydesk.StateDelivered, delivered
	})
	prodCrash := crashed(keydesk.Production, "reports")
	prodOrphan := mustCreate(prod, "reports")
	// Sandbox: two crashed attempts whose orphans bear the same IDs.
	sbCrash1, sbCrash2 := crashed(keydesk.Sandbox, "trading"), crashed(keydesk.Sandbox, "reports")
	sbOrphan1, sbOrphan2 := mustCreate(sandbox, "trading"), mustCreate(sandbox, "reports")
	if sbOrphan1 != delivered || sbOrphan2 != prodOrphan {
		t.Fatalf("ids sandbox %s %s, production %s %s: the simulator must number keys per account", sbOrphan1, sbOrphan2, delivered, prodOrphan)
	}

	if err := h.runner(nil).Reconcile(h.ctx); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*keydesk.Request{prodCrash, sbCrash1, sbCrash2} {
		if got := h.get(req.ID); got.State != keydesk.StateApproved {
			t.Errorf("%s %s after reconciliation: %s", req.Environment, req.Label, got.State)
		}
	}
	if live := h.liveKeyIDs("acme"); len(live) != 0 {
		t.Errorf("sandbox keeps orphans %v alive: two live keys once their requests are generated again", live)
	}
	var prodLive []string
	for _, k := range h.prod.LiveKeys("acme") {
		prodLive = append(prodLive, k.ID)
	}
	if !slices.Equal(prodLive, []string{delivered}) {
		t.Errorf("production live keys %v, want only the delivered %s", prodLive, delivered)
	}
}

// TestRevokeUndelivered: keys whose delivery failed, or that were not
// delivered in time, are revoked and the requester is told.
func TestRevokeUndelivered(t *testing.T) {
	h := newHarness(t)
	client := bmapi.New(bmapi.Options{BaseURL: h.url, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)})
	mk := func(label string, state keydesk.State, started time.Time) (*keydesk.Request, string) {
		k, err := client.CreateKey(h.ctx, label, []keydesk.Scope{"accounts:read"})
		if err != nil {
			t.Fatal(err)
		}
		k.APISecret.Wipe()
		return h.request(label, func(r *keydesk.Request) {
			r.State, r.KeyID, r.APIKey = state, k.ID, k.APIKey
			r.Attempt = &keydesk.Attempt{ID: "a-" + label, StartedAt: started}
			if state == keydesk.StateDeliveryFailed {
				r.Problem = "<" + strings.ToUpper(h.partner.TechnicalContact.Email) + ">: 550 mailbox unavailable"
			}
		}), k.ID
	}
	now := time.Now()
	failed, failedKey := mk("bounced", keydesk.StateDeliveryFailed, now)
	old, oldKey := mk("stuck", keydesk.StateGenerated, now.Add(-73*time.Hour))
	fresh, freshKey := mk("fresh", keydesk.StateGenerated, now.Add(-time.Hour))

	r := h.runner(func(o *batch.Options) { o.RevokeUndeliveredAfter = 72 * time.Hour })
	b, err := r.RunNow(h.ctx, "schedule", "schedule")
	if err != nil {
		t.Fatal(err)
	}
	if b.Counts[batch.OutcomeRevoked] != 2 {
		t.Fatalf("batch = %s", dump(b))
	}
	for _, c := range []struct {
		req   *keydesk.Request
		state keydesk.State
	}{{failed, keydesk.StateRevoked}, {old, keydesk.StateRevoked}, {fresh, keydesk.StateGenerated}} {
		if s := h.get(c.req.ID).State; s != c.state {
			t.Errorf("%s (%s) is %s, want %s", c.req.ID, c.req.Label, s, c.state)
		}
	}
	if live := h.liveKeyIDs("acme"); !slices.Equal(live, []string{freshKey}) {
		t.Errorf("live keys %v, want only %s (revoked %s %s)", live, freshKey, failedKey, oldKey)
	}
	notices := kind(h.outbox(), keydesk.KindRevocationNotice)
	if len(notices) != 2 {
		t.Fatalf("notices = %s", dump(notices))
	}
	contact := h.partner.TechnicalContact.Email
	for _, n := range notices {
		if n.To[0] != "cto@acme.example" || n.InReplyTo == "" || !strings.Contains(n.Subject, n.RequestID) || !strings.Contains(n.Text, "revoked") {
			t.Errorf("notice = %s", dump(n))
		}
		// The requester is shown the contact masked, in the reason too.
		if strings.Contains(strings.ToLower(n.Text), strings.ToLower(contact)) || !strings.Contains(n.Text, keydesk.MaskAddress(contact)) {
			t.Errorf("the notice shows the contact %s unmasked, or not at all:\n%s", contact, n.Text)
		}
		templatestest.Check(t, n.Text)
	}
	if !strings.Contains(notices[0].Text+notices[1].Text, "550 mailbox unavailable") {
		t.Error("the notice does not say why")
	}

	// A second batch finds nothing more to do.
	b2, err := r.RunNow(h.ctx, "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(b2.Counts) != 0 {
		t.Errorf("second batch = %s", dump(b2))
	}
}

// TestOneBatchAtATime: while another instance holds the batch lease, a
// batch is refused and recorded as such; nothing is touched.
func TestOneBatchAtATime(t *testing.T) {
	h := newHarness(t)
	req := h.request("backend", nil)
	l, err := h.q.Acquire(h.ctx, batch.LeaseName, "other-instance", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := h.runner(func(o *batch.Options) { o.LeaseWait = 300 * time.Millisecond }).RunNow(h.ctx, "manual", "alice")
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("refused after %s, before waiting for the lease", took)
	}
	if !errors.Is(err, queue.ErrLeaseHeld) {
		t.Fatalf("err = %v, want lease held", err)
	}
	got := h.batchRecord(b.ID)
	if got.State != keydesk.BatchFailed || !strings.Contains(got.Error, "refused") || !strings.Contains(got.Error, "other-instance") {
		t.Errorf("batch = %s", dump(got))
	}
	if h.get(req.ID).State != keydesk.StateApproved || h.api.Stats().Creates != 0 {
		t.Error("a refused batch touched a request")
	}
	if err := l.Release(h.ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRateLimit: the per-environment limiter keeps all requests under the
// API's rate (the simulator answers 429 above it).
func TestRateLimit(t *testing.T) {
	h := newHarness(t)
	const n, rps = 12, 20.0
	for i := range n {
		h.request("svc-"+string(rune('a'+i)), func(r *keydesk.Request) { r.Environment = keydesk.Sandbox })
	}
	h.api.RateLimit(rps + 5)
	h.api.Latency(20 * time.Millisecond)
	o := h.options()
	o.Concurrency = 8
	var mu sync.Mutex
	observed := map[string]int{}
	o.Accounts = batch.NewBMAPI(batch.BMAPIOptions{Envs: map[keydesk.Environment]batch.APIEnv{
		keydesk.Sandbox: {BaseURL: h.url, Timeout: 5 * time.Second, Limiter: newLimiter(rps)},
	}, Observe: func(env keydesk.Environment, method string, status int, d time.Duration) {
		mu.Lock()
		observed[fmt.Sprintf("%s %s %d", env, method, status)]++
		mu.Unlock()
	}})
	r, err := batch.New(o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := r.RunNow(h.ctx, "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if b.Counts[batch.OutcomeGenerated] != n {
		t.Fatalf("batch = %s", dump(b))
	}
	if st := h.api.Stats(); st.RateLimited != 0 {
		t.Errorf("the API refused %d calls for rate: the limiter did not pace them", st.RateLimited)
	}
	// The metrics hook saw every call, by environment, method and status.
	mu.Lock()
	// The batch lists the account's keys once, then creates.
	if len(observed) != 2 || observed["sandbox POST 201"]+observed["sandbox POST 200"] != n || observed["sandbox GET 200"] != 1 {
		t.Errorf("observed calls %v, want one sandbox GET and %d sandbox POSTs", observed, n)
	}
	mu.Unlock()
	// n calls at rps with a burst of one take at least (n-1)/rps.
	if min := time.Duration(float64(n-1) / rps * float64(time.Second)); took < min {
		t.Errorf("took %s, less than the limit allows (%s)", took, min)
	}
}

// TestStop: a batch whose context ends (the role stopping) finishes the
// request in hand, leaves the rest approved and closes its record.
func TestStop(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for _, l := range []string{"a", "b", "c", "d", "e", "f"} {
		ids = append(ids, h.request(l, nil).ID)
	}
	h.api.Latency(150 * time.Millisecond)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	go func() {
		// Not testenv.Eventually: this is not the test's goroutine.
		for h.api.Stats().Creates < 1 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	b, err := h.runner(func(o *batch.Options) { o.Concurrency = 1 }).RunNow(ctx, "manual", "alice")
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	got := h.batchRecord(b.ID)
	if got.State != keydesk.BatchDone || !strings.Contains(got.Error, "stopped") || got.Counts[batch.OutcomeLeft] == 0 {
		t.Fatalf("batch = %s", dump(got))
	}
	generated := 0
	for _, id := range ids {
		switch s := h.get(id).State; s {
		case keydesk.StateGenerated:
			generated++
		case keydesk.StateApproved:
		default:
			t.Errorf("request %s is %s after the stop", id, s)
		}
	}
	if generated == 0 || generated == len(ids) || generated != got.Counts[batch.OutcomeGenerated] {
		t.Errorf("%d generated: %s", generated, dump(got))
	}
	if live := h.liveKeyIDs("acme"); len(live) != generated {
		t.Errorf("live keys %v for %d generated", live, generated)
	}
}
