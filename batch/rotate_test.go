package batch_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

const day = 24 * time.Hour

var tradingScopes = []keydesk.Scope{"accounts:read", "trading:write"}

// deliver moves a generated request to delivered, as the delivery role
// does once the key delivery is sent.
func (h *harness) deliver(id string) *keydesk.Request {
	h.t.Helper()
	r, err := h.q.Transition(h.ctx, id, keydesk.StateGenerated, keydesk.StateDelivered, "delivery", "sent", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// sweep runs one rotation sweep and fails the test on an error.
func (h *harness) sweep(r *batch.Runner) {
	h.t.Helper()
	if err := r.SweepRotations(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// requestsOfKind lists the stored requests of kind k.
func (h *harness) requestsOfKind(k keydesk.RequestKind) []*keydesk.Request {
	h.t.Helper()
	all, err := h.q.List(h.ctx, queue.Filter{})
	if err != nil {
		h.t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(r *keydesk.Request) bool { return r.KindOf() != k })
}

// revokeBatches lists the batch records asked for with the revoke trigger.
func (h *harness) revokeBatches() []*keydesk.Batch {
	h.t.Helper()
	bs, err := h.q.ListBatches(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return slices.DeleteFunc(bs, func(b *keydesk.Batch) bool { return b.Trigger != keydesk.TriggerRevoke })
}

// rotation is a rotate request of an issued, delivered key, generated
// and delivered by runner r.
type rotation struct {
	old, rot *keydesk.Request
	made     time.Time // the clock when the new key was made
}

// rotated issues prod-trading-engine, delivers it, then rotates it through
// a batch and delivers the new key, with the clock at clock.
func rotated(t *testing.T, h *harness, r *batch.Runner, clock *fakeClock) rotation {
	t.Helper()
	issue := h.request("prod-trading-engine", func(x *keydesk.Request) { x.Scopes = tradingScopes })
	if b, err := r.RunNow(h.ctx, "manual", "alice"); err != nil || b.Counts[batch.OutcomeGenerated] != 1 {
		t.Fatalf("issue batch = %s, %v", dump(b), err)
	}
	old := h.deliver(issue.ID)
	rot := h.request("prod-trading-engine", func(x *keydesk.Request) {
		x.Kind, x.ReplacesKeyID, x.Scopes = keydesk.KindRotate, old.KeyID, tradingScopes
		x.Reason = "yearly rotation"
	})
	made := clock.Now()
	if b, err := r.RunNow(h.ctx, "manual", "alice"); err != nil || b.Counts[batch.OutcomeGenerated] != 1 || len(b.Counts) != 1 {
		t.Fatalf("rotate batch = %s, %v", dump(b), err)
	}
	return rotation{old: old, rot: h.get(rot.ID), made: made}
}

// TestRotateGenerates: an approved rotate request goes through the batch
// as an issue does: a new key with the old key's label and scopes, sealed
// to the contact, whose email says which key it replaces and when that
// one stops working; the old key stays live (it is no orphan of the
// attempt), and Rotation.Due is fixed to what the email says.
func TestRotateGenerates(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now().UTC())
	r := h.runner(func(o *batch.Options) { o.Clock = clock })
	rt := rotated(t, h, r, clock)
	old, rot := rt.old, rt.rot

	if rot.State != keydesk.StateGenerated || rot.KeyID == "" || rot.KeyID == old.KeyID || rot.ReplacesKeyID != old.KeyID {
		t.Fatalf("rotate request after the batch = %s", dump(rot))
	}
	wantDue := rt.made.Add(7 * day).Truncate(time.Minute).Add(time.Minute)
	if rot.Rotation == nil || !rot.Rotation.Due.Equal(wantDue) {
		t.Fatalf("Rotation = %s, want Due %s", dump(rot.Rotation), wantDue)
	}
	if live := h.liveKeyIDs("acme"); !slices.Equal(live, []string{old.KeyID, rot.KeyID}) {
		t.Errorf("live keys %v, want the old %s and the new %s", live, old.KeyID, rot.KeyID)
	}
	for _, k := range h.api.Keys("acme") {
		if k.ID == rot.KeyID && (k.Label != "prod-trading-engine" || !slices.Equal(k.Scopes, tradingScopes)) {
			t.Errorf("new key %s has label %q scopes %v, want the old key's", k.ID, k.Label, k.Scopes)
		}
	}

	i := slices.IndexFunc(h.outbox(), func(m *keydesk.Outgoing) bool {
		return m.Kind == keydesk.KindKeyDelivery && m.RequestID == rot.ID
	})
	if i < 0 {
		t.Fatal("no key delivery for the rotation")
	}
	d := h.outbox()[i]
	if d.AttemptID != rot.Attempt.ID || !slices.Equal(d.To, []string{h.partner.TechnicalContact.Email}) {
		t.Errorf("delivery = %+v", d)
	}
	contact := cryptotest.Contact(t, crypto.Curve25519)
	plain, err := crypto.DecryptAndVerify(d.Entity, contact.Private, contact.Passphrase, cryptotest.SigningKey(t).Public)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(plain), "\r\n", "\n")
	stops := wantDue.Format("Mon 2 Jan 2006 15:04 MST")
	for _, want := range []string{"Replaces:     " + old.KeyID, "This key replaces " + old.KeyID, stops} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("the encrypted email lacks %q:\n%s", want, text)
		}
	}
}

// TestRotateWithoutOldKeyFails: a rotation that names no key to replace
// makes no key (it would leave two live keys for good).
func TestRotateWithoutOldKeyFails(t *testing.T) {
	h := newHarness(t)
	rot := h.request("prod-trading-engine", func(x *keydesk.Request) { x.Kind = keydesk.KindRotate })
	b, err := h.runner(nil).RunNow(h.ctx, "manual", "alice")
	if err != nil || b.Counts[batch.OutcomeFailed] != 1 {
		t.Fatalf("batch = %s, %v", dump(b), err)
	}
	if got := h.get(rot.ID); got.State != keydesk.StateFailed || !strings.Contains(got.Problem, "no key to replace") {
		t.Errorf("request = %s", dump(got))
	}
	if live := h.liveKeyIDs("acme"); len(live) != 0 {
		t.Errorf("keys made: %v", live)
	}
}

// checkRevokeChild checks the revoke request a rotation made for its old
// key and the revoke batch asked for, and returns the child.
func checkRevokeChild(t *testing.T, h *harness, rt rotation) *keydesk.Request {
	t.Helper()
	rot := h.get(rt.rot.ID)
	children := h.requestsOfKind(keydesk.KindRevoke)
	if len(children) != 1 {
		t.Fatalf("%d revoke requests, want 1: %s", len(children), dump(children))
	}
	c := children[0]
	if c.State != keydesk.StateApproved || c.KeyID != rt.old.KeyID || c.RevokeOf != rot.ID || c.Partner != "acme" ||
		c.Environment != keydesk.Sandbox || c.Reason != "rotated: replaced by "+rot.KeyID || c.Requester != rot.Requester {
		t.Errorf("revoke request = %s", dump(c))
	}
	if c.LastEvent == nil || c.LastEvent.Actor != "batch" {
		t.Errorf("revoke request made by %s, want the batch", dump(c.LastEvent))
	}
	if rot.Rotation.RevokeRequest != c.ID {
		t.Errorf("Rotation.RevokeRequest = %q, want %s", rot.Rotation.RevokeRequest, c.ID)
	}
	bs := h.revokeBatches()
	if len(bs) != 1 || bs[0].State != keydesk.BatchRequested {
		t.Errorf("revoke batches = %s, want one requested", dump(bs))
	}
	return c
}

// TestRotateConfirmed: once the contact confirms (ConfirmedAt, as intake
// or review set it), the next sweep makes one approved revoke request of
// the old key and asks for a revoke batch; sweeping again makes nothing
// more; a batch revokes the old key and makes no key for it; and the
// rotation records the old key's end.
func TestRotateConfirmed(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now().UTC())
	r := h.runner(func(o *batch.Options) { o.Clock = clock })
	rt := rotated(t, h, r, clock)
	h.deliver(rt.rot.ID)

	h.sweep(r)
	if got := h.get(rt.rot.ID); got.Rotation.RevokeRequest != "" || len(h.requestsOfKind(keydesk.KindRevoke)) != 0 {
		t.Fatalf("the old key is to be revoked before confirmation or grace: %s", dump(got))
	}
	clock.Advance(2 * time.Hour)
	if _, err := h.q.Apply(h.ctx, rt.rot.ID, queue.Change{Actor: "intake", Action: "rotation-confirm", Mutate: func(x *keydesk.Request) error {
		x.Rotation.ConfirmedAt, x.Rotation.ConfirmedBy = clock.Now(), h.partner.TechnicalContact.Email
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	h.sweep(r)
	child := checkRevokeChild(t, h, rt)

	// Again, and from a second instance: nothing more.
	h.sweep(r)
	h.sweep(h.runner(func(o *batch.Options) { o.Clock, o.Holder = clock, "instance-2" }))
	checkRevokeChild(t, h, rt)

	// A batch makes no key for the revoke request: it revokes the old
	// key, and the new one stays live.
	if b, err := r.RunNow(h.ctx, "manual", "alice"); err != nil || b.Counts[batch.OutcomeGenerated] != 0 {
		t.Fatalf("batch = %s, %v", dump(b), err)
	}
	got := h.get(child.ID)
	if got.State != keydesk.StateRevoked || got.KeyID != rt.old.KeyID {
		t.Errorf("the old key's revoke request after a batch: %s", dump(got))
	}
	if live := h.liveKeyIDs("acme"); len(live) != 1 || live[0] != rt.rot.KeyID {
		t.Errorf("live keys %v, want the new one, %s, alone", live, rt.rot.KeyID)
	}
	revokedAt := got.RevokedAt
	h.sweep(r)
	if got := h.get(rt.rot.ID); !got.Rotation.OldRevokedAt.Equal(revokedAt) || got.State != keydesk.StateDelivered {
		t.Errorf("rotation after the old key's revocation = %s", dump(got))
	}
	if n := len(kind(h.outbox(), keydesk.KindRotationReminder)); n != 0 {
		t.Errorf("%d reminders of a confirmed rotation", n)
	}
}

// TestRotateGraceEnds: without confirmation, one reminder goes a day
// before Due to the requester and the contact — once, whatever sweeps
// and instances and restarts come — and at Due the old key's revoke
// request is made. A revocation that fails alerts support.
func TestRotateGraceEnds(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now().UTC())
	r := h.runner(func(o *batch.Options) { o.Clock = clock })
	rt := rotated(t, h, r, clock)
	h.deliver(rt.rot.ID)
	due := h.get(rt.rot.ID).Rotation.Due

	clock.Advance(due.Add(-batch.RotationReminderLead - time.Second).Sub(clock.Now()))
	h.sweep(r)
	if n := len(kind(h.outbox(), keydesk.KindRotationReminder)); n != 0 {
		t.Fatalf("a reminder %s before Due", due.Sub(clock.Now()))
	}
	clock.Advance(time.Second)
	h.sweep(r)
	other := h.runner(func(o *batch.Options) { o.Clock, o.Holder = clock, "instance-2" })
	h.sweep(other)
	// A restart: a new runner's first sweep queues a reminder claimed
	// within the hour again (the process may have died before queuing
	// it), which the outbox keeps to one.
	clock.Advance(30 * time.Minute)
	h.sweep(h.runner(func(o *batch.Options) { o.Clock = clock }))
	clock.Advance(time.Hour)
	h.sweep(r)
	reminders := kind(h.outbox(), keydesk.KindRotationReminder)
	if len(reminders) != 1 {
		t.Fatalf("%d reminders, want exactly 1: %s", len(reminders), dump(reminders))
	}
	m := reminders[0]
	if !slices.Equal(m.To, []string{"cto@acme.example", h.partner.TechnicalContact.Email}) || m.RequestID != rt.rot.ID ||
		!strings.Contains(m.Subject, rt.old.KeyID) || !strings.Contains(m.Text, due.Format("Mon 2 Jan 2006 15:04 MST")) ||
		!strings.Contains(m.Text, rt.rot.KeyID) {
		t.Errorf("reminder = %s", dump(m))
	}
	if got := h.get(rt.rot.ID); got.Rotation.RemindedAt.IsZero() || got.Rotation.RevokeRequest != "" {
		t.Errorf("rotation after the reminder = %s", dump(got.Rotation))
	}

	clock.Advance(due.Sub(clock.Now()))
	h.sweep(r)
	h.sweep(other)
	child := checkRevokeChild(t, h, rt)
	if n := len(kind(h.outbox(), keydesk.KindRotationReminder)); n != 1 {
		t.Errorf("%d reminders after Due", n)
	}

	// The revocation fails (the partner's credentials were refused):
	// both keys work beyond the grace, and support hears of it once.
	if _, err := h.q.Transition(h.ctx, child.ID, keydesk.StateApproved, keydesk.StateFailed, "batch", "", func(x *keydesk.Request) error {
		x.Problem = "the Buildmarkets API refused acme's sandbox credentials"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.sweep(r)
	h.sweep(r)
	h.sweep(other)
	alerts := slices.DeleteFunc(kind(h.outbox(), keydesk.KindAlert), func(m *keydesk.Outgoing) bool {
		return !strings.HasPrefix(m.ID, "rotation.")
	})
	if len(alerts) != 1 || alerts[0].To[0] != supportAddr || !strings.Contains(alerts[0].Text, child.ID) ||
		!strings.Contains(alerts[0].Text, "refused") || !strings.Contains(alerts[0].Subject, rt.old.KeyID) {
		t.Errorf("alerts = %s", dump(alerts))
	}
	if got := h.get(rt.rot.ID); !got.Rotation.OldRevokedAt.IsZero() {
		t.Errorf("the rotation is closed while its old key lives: %s", dump(got.Rotation))
	}
}

// TestRotationPolicy: with rotation.max_age set, the requester of each
// live key older than max_age − remind_before gets one reminder with the
// line to reply with; a key made outside keydesk reminds the partner's
// first requester address; young, revoked and already rotating keys get
// none; a second pass, later passes and a restart send nothing more. With
// max_age unset, nothing is sent.
func TestRotationPolicy(t *testing.T) {
	h := newHarness(t)
	h.partner.Requesters = []string{"*@acme.example", "treasury@acme.example"}
	now := time.Now().UTC()
	clock := newFakeClock(now)
	issue := h.request("prod-trading-engine", func(x *keydesk.Request) {
		x.State, x.KeyID, x.Requester = keydesk.StateDelivered, "key-001", "dana@acme.example"
	})
	h.request("reporting", func(x *keydesk.Request) {
		x.State, x.Kind, x.ReplacesKeyID = keydesk.StatePendingReview, keydesk.KindRotate, "key-005"
	})
	keys := []keydesk.InventoryKey{
		{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "prod-trading-engine", CreatedAt: now.Add(-340 * day), MadeBy: keydesk.MadeByKeydesk, RequestID: issue.ID},
		{KeyRef: keydesk.KeyRef{ID: "key-002"}, Label: "legacy", CreatedAt: now.Add(-400 * day), MadeBy: keydesk.MadeByPartner},
		{KeyRef: keydesk.KeyRef{ID: "key-003"}, Label: "young", CreatedAt: now.Add(-10 * day), MadeBy: keydesk.MadeByPartner},
		{KeyRef: keydesk.KeyRef{ID: "key-004"}, Label: "gone", CreatedAt: now.Add(-400 * day), RevokedAt: now.Add(-day), MadeBy: keydesk.MadeByPartner},
		{KeyRef: keydesk.KeyRef{ID: "key-005"}, Label: "reporting", CreatedAt: now.Add(-400 * day), MadeBy: keydesk.MadeByPartner},
	}
	if _, err := h.q.UpdateInventory(h.ctx, "acme", keydesk.Sandbox, func(inv *keydesk.Inventory) error {
		inv.Keys = keys
		for i := range inv.Keys {
			inv.Keys[i].Partner, inv.Keys[i].Environment, inv.Keys[i].FirstSeen = "acme", keydesk.Sandbox, now.Add(-500*day)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	h.sweep(h.runner(func(o *batch.Options) { o.Clock = clock })) // no policy
	if n := len(kind(h.outbox(), keydesk.KindRotationDue)); n != 0 {
		t.Fatalf("%d policy reminders with rotation.max_age unset", n)
	}

	policy := func(o *batch.Options) {
		o.Clock, o.RotationMaxAge, o.RotationRemindBefore = clock, 365*day, 30*day
	}
	r := h.runner(policy)
	h.sweep(r)
	h.sweep(r)
	clock.Advance(2 * time.Hour)
	h.sweep(r)
	h.sweep(h.runner(policy)) // a restart

	got := map[string]*keydesk.Outgoing{}
	for _, m := range kind(h.outbox(), keydesk.KindRotationDue) {
		if got[m.ID] != nil {
			t.Errorf("reminder %s queued twice", m.ID)
		}
		got[m.ID] = m
	}
	if len(got) != 2 {
		t.Fatalf("policy reminders = %s, want key-001's and key-002's", dump(got))
	}
	for id, want := range map[string]struct{ to, label string }{
		"key-001": {"dana@acme.example", "prod-trading-engine"},
		"key-002": {"treasury@acme.example", "legacy"},
	} {
		m := got["rotation-due.acme.sandbox."+id]
		if m == nil {
			t.Errorf("no reminder about %s", id)
			continue
		}
		line := batch.RotationReplyLine(id, want.label, keydesk.Sandbox)
		if !slices.Equal(m.To, []string{want.to}) || m.RequestID != "" || m.Partner != "acme" ||
			!strings.Contains(m.Text, "\n    "+line+"\n") || strings.Contains(m.Subject, "KR-") {
			t.Errorf("reminder about %s = %s", id, dump(m))
		}
	}
	inv, err := h.q.Inventory(h.ctx, "acme", keydesk.Sandbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range inv.Keys {
		if reminded := !k.RotationRemindedAt.IsZero(); reminded != (k.ID == "key-001" || k.ID == "key-002") {
			t.Errorf("%s RotationRemindedAt = %v", k.ID, k.RotationRemindedAt)
		}
	}
}

// TestRotationOptions: the rotation settings outside what keydesk
// supports are refused, each naming its key.
func TestRotationOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    batch.Options
		want string // "" valid
	}{
		{"defaults", batch.Options{}, ""},
		{"policy", batch.Options{RotationMaxAge: 365 * day, RotationRemindBefore: 30 * day, RotationGrace: 7 * day}, ""},
		{"grace too short", batch.Options{RotationGrace: time.Minute}, "rotation.grace"},
		{"max_age too short", batch.Options{RotationMaxAge: time.Hour}, "rotation.max_age"},
		{"remind_before not shorter", batch.Options{RotationMaxAge: 20 * day}, "rotation.remind_before: 30d is not shorter than rotation.max_age (20d)"},
		{"grace within undelivered", batch.Options{RotationGrace: 2 * day, RevokeUndeliveredAfter: 3 * day}, "rotation.grace: 2d is not longer than delivery.revoke_undelivered_after (3d)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRotationMailsGolden renders the reminders from fixed data.
func TestRotationMailsGolden(t *testing.T) {
	tpl := templates.MustLoadEmbedded()
	when := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		data any
	}{
		{"rotation-reminder", batch.RotationReminder{RequestID: "KR-20261120-7QX4", PartnerName: "Acme Capital", Environment: "production",
			Label: "prod-trading-engine", NewKeyID: "key-012", OldKeyID: "key-007", Contact: "s***@acme.example", Due: when.Add(7 * day)}},
		{"rotation-due", batch.RotationDue{PartnerName: "Acme Capital", Environment: "production", Label: "prod-trading-engine",
			KeyID: "key-007", APIKey: "bm_key_abc123", Created: when.Add(-340 * day), AgeDays: 340, MaxAgeDays: 365, DueAt: when.Add(25 * day),
			ReplyLine: batch.RotationReplyLine("key-007", "prod-trading-engine", keydesk.Production), Contact: "s***@acme.example", Grace: "7 days"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tpl.RenderPartnerMail(tc.name, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, "Subject: "+m.Subject+"\n\n"+m.Body)
		})
	}
}

// TestRunSweepsRotations: the role sweeps rotations when it starts and
// every minute after, by its clock.
func TestRunSweepsRotations(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now().UTC())
	rotation := func(label, oldKey string, due time.Time) *keydesk.Request {
		return h.request(label, func(x *keydesk.Request) {
			x.Kind, x.State, x.KeyID, x.ReplacesKeyID = keydesk.KindRotate, keydesk.StateDelivered, oldKey+"-new", oldKey
			x.Rotation = &keydesk.Rotation{Due: due}
		})
	}
	past := rotation("backend", "key-001", clock.Now().Add(-time.Minute))
	soon := rotation("reporting", "key-002", clock.Now().Add(30*time.Second))
	r := h.runner(func(o *batch.Options) { o.Clock = clock })
	h.run(r)
	revokeOf := func(id string) bool {
		return slices.ContainsFunc(h.requestsOfKind(keydesk.KindRevoke), func(c *keydesk.Request) bool { return c.RevokeOf == id })
	}
	testenv.Eventually(t, 30*time.Second, "the start's sweep", func() bool { return revokeOf(past.ID) })
	testenv.Eventually(t, 30*time.Second, "the loop waiting", func() bool { return clock.Waiters() == 1 })
	if revokeOf(soon.ID) {
		t.Fatal("a rotation was revoked before its Due")
	}
	clock.Advance(batch.SweepInterval)
	testenv.Eventually(t, 30*time.Second, "the sweep a minute later", func() bool { return revokeOf(soon.ID) })
}

// TestRotateConfirmedRevokedAtOnce: a revoke run asked for by a record
// (as review asks when staff confirm a rotation) sweeps the rotations
// first, so the old key of a rotation just confirmed is revoked in that
// run, not at the next minute's sweep.
func TestRotateConfirmedRevokedAtOnce(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock(time.Now().UTC())
	r := h.runner(func(o *batch.Options) { o.Clock = clock })
	rt := rotated(t, h, r, clock)
	h.deliver(rt.rot.ID)
	h.run(r)
	// An inventory run done says Run is past its start, and its sweep.
	list := &keydesk.Batch{ID: h.q.NewBatchID(), Trigger: keydesk.TriggerInventory, By: "alice", State: keydesk.BatchRequested, Requested: time.Now()}
	if err := h.q.PutBatch(h.ctx, list); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the inventory run done", func() bool {
		b, err := h.q.GetBatch(h.ctx, list.ID)
		return err == nil && b.State == keydesk.BatchDone
	})
	// The fake clock never reaches the next sweep: only the record can
	// revoke the old key.
	if _, err := h.q.Apply(h.ctx, rt.rot.ID, queue.Change{Actor: "alice", Action: "confirm-rotation", Mutate: func(x *keydesk.Request) error {
		x.Rotation.ConfirmedAt, x.Rotation.ConfirmedBy = clock.Now(), "alice"
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	trigger := &keydesk.Batch{ID: h.q.NewBatchID(), Trigger: keydesk.TriggerRevoke, By: "alice", State: keydesk.BatchRequested, Requested: time.Now()}
	if err := h.q.PutBatch(h.ctx, trigger); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the old key revoked", func() bool {
		live := h.liveKeyIDs("acme")
		return len(live) == 1 && live[0] == h.get(rt.rot.ID).KeyID
	})
}
