package intake

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
)

// seedKeys writes the inventories the batch role would have listed:
// Acme's production account holds key-001 (label a), key-003 (label
// prod-trading-engine), key-004 and key-005 (both labelled md-feed) and
// the revoked key-002; its sandbox account key-001 (label sandbox-bot)
// and key-007 (label shared-name); Globex's sandbox account key-001
// (label globex-secret-engine, bm_key_globex1).
func (w *world) seedKeys() {
	w.t.Helper()
	ctx := context.Background()
	k := func(id, label, apiKey string, scopes ...keydesk.Scope) keydesk.InventoryKey {
		return keydesk.InventoryKey{KeyRef: keydesk.KeyRef{ID: id}, Label: label, APIKey: apiKey, Scopes: scopes, FirstSeen: worldStart, MadeBy: keydesk.MadeByKeydesk}
	}
	seed := func(partner string, env keydesk.Environment, keys ...keydesk.InventoryKey) {
		_, err := w.h.q.UpdateInventory(ctx, partner, env, func(inv *keydesk.Inventory) error {
			inv.ListedAt = worldStart
			for i := range keys {
				keys[i].Partner, keys[i].Environment = partner, env
			}
			inv.Keys = keys
			return nil
		})
		if err != nil {
			w.t.Fatal(err)
		}
	}
	revoked := k("key-002", "old", "bm_key_acme2", keydesk.ScopeAccountsRead)
	revoked.RevokedAt = worldStart
	seed("acme", keydesk.Production,
		k("key-001", "a", "bm_key_acme1", keydesk.ScopeAccountsRead),
		revoked,
		k("key-003", "prod-trading-engine", "bm_key_acme3", keydesk.ScopeTradingRead, keydesk.ScopeTradingWrite),
		k("key-004", "md-feed", "bm_key_acme4", keydesk.ScopeMarketdataRead),
		k("key-005", "md-feed", "bm_key_acme5", keydesk.ScopeMarketdataRead),
	)
	seed("acme", keydesk.Sandbox,
		k("key-001", "sandbox-bot", "bm_key_acmes1", keydesk.ScopeAccountsRead),
		k("key-007", "shared-name", "bm_key_acmes7", keydesk.ScopeAccountsRead),
	)
	seed("globex", keydesk.Sandbox, k("key-001", "globex-secret-engine", "bm_key_globex1", keydesk.ScopeAccountsRead))
}

// fromAda is a new email from Acme's requester.
func fromAda(id, subject, body string) []byte {
	return msg{from: "ada@acme.example", id: id, subject: subject, body: body}.raw()
}

// made is the requests an email made, in their order.
func (w *world) made(msgID string) []*keydesk.Request {
	var out []*keydesk.Request
	for _, r := range w.h.requests() {
		if r.SourceMessageID == msgID {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *keydesk.Request) int { return a.Index - b.Index })
	return out
}

// replyTo is the acknowledgement or rejection sent in reply to msgID.
func (w *world) replyTo(msgID string) *keydesk.Outgoing {
	w.t.Helper()
	for _, o := range w.h.outbox() {
		if o.InReplyTo == msgID {
			return o
		}
	}
	w.t.Fatalf("no reply to %s", msgID)
	return nil
}

// TestRevokeByEmail: a partner's email asks to revoke keys in the ways
// partners write it; each becomes a revoke request that waits for a
// person (never auto-approved, even in the auto-approving sandbox), with
// the key resolved in the partner's own inventory, or a rejection that
// names the partner's own keys and nothing of another partner's. Against
// a real Dovecot.
func TestRevokeByEmail(t *testing.T) {
	w := newWorld(t, true)
	w.seedKeys()
	type want struct {
		kind       keydesk.RequestKind
		state      keydesk.State
		env        keydesk.Environment
		keyID      string
		label      string
		candidates []string
		flags      []keydesk.Flag
	}
	cases := []struct {
		name, body string
		want       []want
		reply      keydesk.MessageKind
		replyHas   []string
		replyLacks []string
	}{
		{name: "by key id", body: "Hello,\n\nPlease revoke key-003 in production, it was exposed in a log.\n\nThanks, Ada\n",
			want:     []want{{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, env: keydesk.Production, keyID: "key-003", label: "prod-trading-engine", flags: []keydesk.Flag{keydesk.FlagProduction}}},
			reply:    keydesk.KindAcknowledgement,
			replyHas: []string{"Revoke:      key-003 (label prod-trading-engine, production)", "waiting for review by our support team"}},
		{name: "sandbox never auto-approved", body: "Hi,\n\nbitte widerrufen Sie den Schlüssel key-001 in der Testumgebung.\n",
			want:  []want{{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, env: keydesk.Sandbox, keyID: "key-001", label: "sandbox-bot"}},
			reply: keydesk.KindAcknowledgement},
		{name: "label with two live keys", body: "Hello,\n\nPlease revoke the key labelled md-feed.\n",
			want: []want{{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, env: keydesk.Production, label: "md-feed",
				candidates: []string{"key-004", "key-005"}, flags: []keydesk.Flag{keydesk.FlagNeedsReview}}},
			reply: keydesk.KindAcknowledgement, replyHas: []string{"the keys labelled md-feed (key-004, key-005, production)"}},
		{name: "several keys in one email", body: "Hello,\n\nPlease revoke key-001 and key-003 in production.\n",
			want: []want{{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, env: keydesk.Production, keyID: "key-001"},
				{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, env: keydesk.Production, keyID: "key-003"}},
			reply: keydesk.KindAcknowledgement},
		{name: "unknown key", body: "Hello,\n\nPlease deactivate key-099 in production.\n",
			want:       []want{{kind: keydesk.KindRevoke, state: keydesk.StateRejected, env: keydesk.Production, keyID: "key-099"}},
			reply:      keydesk.KindRejection,
			replyHas:   []string{"key-099 is not a live key of Acme Capital's production", "key-001 (label a)", "key-003", "request about your Buildmarkets API keys"},
			replyLacks: []string{"globex", "key-002"}},
		{name: "already revoked", body: "Hello,\n\nPlease revoke key-002 (production).\n",
			want:  []want{{kind: keydesk.KindRevoke, state: keydesk.StateRejected, env: keydesk.Production, keyID: "key-002"}},
			reply: keydesk.KindRejection, replyHas: []string{"already revoked"}},
		{name: "another partner's public key", body: "Hello,\n\nPlease revoke bm_key_globex1 right away.\n",
			want:       []want{{kind: keydesk.KindRevoke, state: keydesk.StateRejected}},
			reply:      keydesk.KindRejection,
			replyHas:   []string{"bm_key_globex1 is not a live key of Acme Capital's accounts", "sandbox-bot", "prod-trading-engine"},
			replyLacks: []string{"globex-secret-engine", "Globex", "another partner"}},
		{name: "revoke and create", body: "Hello,\n\nPlease revoke key-001 in production.\n\nAnd a new key please:\nEnvironment: sandbox\nScopes: accounts:read\nLabel: fresh-bot\n",
			want: []want{{kind: keydesk.KindIssue, state: keydesk.StateApproved, env: keydesk.Sandbox, label: "fresh-bot"},
				{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, env: keydesk.Production, keyID: "key-001"}},
			reply: keydesk.KindAcknowledgement, replyHas: []string{"Label:       fresh-bot", "Revoke:      key-001 (label a, production)"}},
		{name: "all our keys", body: "Hello,\n\nWe are ending the integration: please revoke all our keys.\n",
			want:  []want{{kind: keydesk.KindRevoke, state: keydesk.StatePendingReview, flags: []keydesk.Flag{keydesk.FlagNeedsReview}}},
			reply: keydesk.KindAcknowledgement, replyHas: []string{"Revoke:      all keys"}},
		{name: "rotate by label", body: "Hi team,\n\nplease rotate prod-trading-engine\n",
			want:  []want{{kind: keydesk.KindRotate, state: keydesk.StatePendingReview, env: keydesk.Production, label: "prod-trading-engine", flags: []keydesk.Flag{keydesk.FlagProduction}}},
			reply: keydesk.KindAcknowledgement, replyHas: []string{"Rotate:      key-003 (label prod-trading-engine, production)", "at the end of 7 days"}},
	}
	defer func() { w.t = t }()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "life-" + string(rune('a'+i)) + "@acme.example"
			w.t = t
			w.send(fromAda(id, "Keys", tc.body))
			got := w.made(id)
			if len(got) != len(tc.want) {
				t.Fatalf("%d requests, want %d: %+v", len(got), len(tc.want), got)
			}
			for j, wt := range tc.want {
				r := got[j]
				if r.KindOf() != wt.kind || r.State != wt.state || r.Partner != "acme" || (wt.env != "" && r.Environment != wt.env) {
					t.Errorf("request %d: %s %s of %q in %q, want %s %s in %q", j, r.KindOf(), r.State, r.Partner, r.Environment, wt.kind, wt.state, wt.env)
				}
				if wt.kind == keydesk.KindRevoke && r.KeyID != wt.keyID {
					t.Errorf("request %d names key %q, want %q", j, r.KeyID, wt.keyID)
				}
				if wt.label != "" && r.Label != wt.label {
					t.Errorf("request %d label %q, want %q", j, r.Label, wt.label)
				}
				if !slices.Equal(r.KeyCandidates, wt.candidates) {
					t.Errorf("request %d candidates %v, want %v", j, r.KeyCandidates, wt.candidates)
				}
				for _, f := range wt.flags {
					if !r.HasFlag(f) {
						t.Errorf("request %d flags %v lack %s", j, r.Flags, f)
					}
				}
				if wt.kind != keydesk.KindIssue && r.Reason == "" {
					t.Errorf("request %d has no reason: the partner's sentence is its reason", j)
				}
				if wt.kind == keydesk.KindRotate {
					if r.ReplacesKeyID != "key-003" || r.KeyID != "" || !slices.Equal(r.Scopes, []keydesk.Scope{keydesk.ScopeTradingRead, keydesk.ScopeTradingWrite}) {
						t.Errorf("rotation replaces %q with key %q, scopes %v; want key-003's scopes and no key yet", r.ReplacesKeyID, r.KeyID, r.Scopes)
					}
				}
			}
			if tc.name == "all our keys" && (got[0].KeyID != "" || len(got[0].KeyCandidates) != 0) {
				t.Errorf("revoke-all names keys %q %v: a person handles it", got[0].KeyID, got[0].KeyCandidates)
			}
			if tc.name == "another partner's public key" && !slices.ContainsFunc(got[0].Warnings, func(s string) bool { return strings.Contains(s, "another partner") }) {
				t.Errorf("support is not told the key is another partner's: %v", got[0].Warnings)
			}
			o := w.replyTo(id)
			if o.Kind != tc.reply || o.To[0] != "ada@acme.example" {
				t.Fatalf("reply %s to %v, want %s to ada", o.Kind, o.To, tc.reply)
			}
			for _, s := range tc.replyHas {
				if !strings.Contains(o.Text, s) {
					t.Errorf("reply lacks %q:\n%s", s, o.Text)
				}
			}
			for _, s := range tc.replyLacks {
				if strings.Contains(o.Text, s) {
					t.Errorf("reply holds %q:\n%s", s, o.Text)
				}
			}
		})
	}
}

// TestRevokeNotListed: without an inventory for the partner, the request
// is not rejected: it waits for a person, who is told why.
func TestRevokeNotListed(t *testing.T) {
	w := newWorld(t, false)
	w.send(fromAda("nl@acme.example", "Revoke", "Hello,\n\nPlease revoke key-003 in production.\n"))
	got := w.made("nl@acme.example")
	if len(got) != 1 || got[0].State != keydesk.StatePendingReview || got[0].KindOf() != keydesk.KindRevoke || got[0].KeyID != "key-003" {
		t.Fatalf("requests %+v, want one revoke of key-003 pending review", got)
	}
	if !slices.ContainsFunc(got[0].Warnings, func(s string) bool { return strings.Contains(s, NotListedWarning) }) {
		t.Errorf("warnings %v lack %q", got[0].Warnings, NotListedWarning)
	}
}

// TestQuotedRevokeAsksNothing: "please revoke key-001" in the history a
// reply quotes is not the sender's ask.
func TestQuotedRevokeAsksNothing(t *testing.T) {
	w := newWorld(t, false)
	w.seedKeys()
	w.send(fromAda("q@acme.example", "Re: our keys", "Thanks, noted.\n\nOn Mon, 30 Nov 2026, Bob <bob@acme.example> wrote:\n> Please revoke key-001 in production.\n> Bob\n"))
	for _, r := range w.made("q@acme.example") {
		if r.KindOf() != keydesk.KindIssue || r.KeyID != "" {
			t.Errorf("the quoted ask made %s request for %q", r.KindOf(), r.KeyID)
		}
	}
}

// TestRotationConfirmed: the technical contact answers the delivery of a
// rotation with "Done"; the rotation records it (who, when), the thread
// says so, no request is made and nothing is sent. The same "done" to a
// rotation not yet delivered is only a reply in its thread.
func TestRotationConfirmed(t *testing.T) {
	w := newWorld(t, false)
	w.seedKeys()
	w.send(fromAda("rot@acme.example", "Rotate", "Hello,\n\nPlease rotate the key labelled prod-trading-engine.\n"))
	rot := w.made("rot@acme.example")[0]
	ack := rot.ID + ".ack@buildmarkets.ai"
	if err := w.h.q.IndexMessage(context.Background(), ack, rot.ID); err != nil {
		t.Fatal(err)
	}
	n := len(w.h.requests())
	// Not delivered yet: a "done" is a reply like any other.
	w.send(msg{from: "ada@acme.example", id: "early@acme.example", subject: "Re: Rotate", inReplyTo: ack, body: "Done.\n"}.raw())
	if r := w.get(rot.ID); r.Rotation != nil {
		t.Errorf("a rotation pending review recorded a confirmation: %+v", r.Rotation)
	}
	ctx := context.Background()
	w.approve(rot.ID)
	for _, s := range [][2]keydesk.State{{keydesk.StateApproved, keydesk.StateGenerating}, {keydesk.StateGenerating, keydesk.StateGenerated}, {keydesk.StateGenerated, keydesk.StateDelivered}} {
		if _, err := w.h.q.Transition(ctx, rot.ID, s[0], s[1], "batch", "", func(r *keydesk.Request) error { r.KeyID = "key-006"; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	delivery := rot.ID + ".delivery@buildmarkets.ai"
	if err := w.h.q.IndexMessage(ctx, delivery, rot.ID); err != nil {
		t.Fatal(err)
	}
	before := len(w.h.outbox())
	w.advance(time.Hour)
	w.send(msg{from: "sec@acme.example", id: "done@acme.example", subject: "Re: Your new Buildmarkets API key", inReplyTo: delivery,
		body: "Confirmed: the new key is in use.\n\nSec team\n"}.raw())
	r := w.get(rot.ID)
	if r.Rotation == nil || r.Rotation.ConfirmedBy != "sec@acme.example" || !r.Rotation.ConfirmedAt.Equal(worldStart.Add(time.Hour)) {
		t.Fatalf("rotation %+v, want confirmed by sec@acme.example at %v", r.Rotation, worldStart.Add(time.Hour))
	}
	if r.State != keydesk.StateDelivered || r.ReplacesKeyID != "key-003" {
		t.Errorf("rotation %s replacing %q, want delivered replacing key-003", r.State, r.ReplacesKeyID)
	}
	if got := len(w.h.requests()); got != n {
		t.Errorf("%d requests after the confirmation, want %d: it makes none", got, n)
	}
	if out := w.h.outbox()[before:]; len(out) != 0 {
		t.Errorf("the confirmation sent %d emails, want none: %s", len(out), out[0].Kind)
	}
	th := w.thread(rot.ID)
	if !slices.ContainsFunc(th, func(e keydesk.ThreadEntry) bool {
		return e.Kind == keydesk.ThreadSystem && strings.Contains(e.Text, "confirmed that the new key is in use") && strings.Contains(e.Text, "key-003")
	}) || !slices.ContainsFunc(th, func(e keydesk.ThreadEntry) bool {
		return e.Kind == keydesk.ThreadEmailIn && e.MessageID == "done@acme.example"
	}) {
		t.Errorf("thread %+v lacks the email and the system entry", th)
	}
	// A second confirmation keeps the first.
	w.advance(time.Hour)
	w.send(msg{from: "ada@acme.example", id: "done2@acme.example", subject: "Re: Your new Buildmarkets API key", inReplyTo: delivery, body: "erledigt\n"}.raw())
	if r2 := w.get(rot.ID); r2.Rotation.ConfirmedBy != "sec@acme.example" || len(w.h.requests()) != n {
		t.Errorf("second confirmation: rotation %+v, %d requests", r2.Rotation, len(w.h.requests()))
	}
}

// TestRotationConfirmedByContact: the technical contact, who is no
// requester, confirms a delivered rotation by replying to the delivery;
// another partner's "done" to the same delivery confirms nothing.
// deliveredPartnerRotation makes Initech's rotation of its own key
// tps-reports (key-001) and brings it to delivered, its delivery email
// indexed; it returns the request and that email's Message-ID.
func deliveredPartnerRotation(t *testing.T, w *world) (*keydesk.Request, string) {
	t.Helper()
	ctx := context.Background()
	_, err := w.h.q.UpdateInventory(ctx, "initech", keydesk.Production, func(inv *keydesk.Inventory) error {
		inv.ListedAt = worldStart
		inv.Keys = []keydesk.InventoryKey{{KeyRef: keydesk.KeyRef{Partner: "initech", Environment: keydesk.Production, ID: "key-001"},
			Label: "tps-reports", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, FirstSeen: worldStart, MadeBy: keydesk.MadeByPartner}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.send(msg{from: "ops@initech.example", id: "rot@initech.example", subject: "Rotate", body: "Hello,\n\nplease rotate tps-reports\n"}.raw())
	rot := w.made("rot@initech.example")[0]
	if rot.KindOf() != keydesk.KindRotate || rot.ReplacesKeyID != "key-001" || rot.Label != "tps-reports" {
		t.Fatalf("rotation %s replacing %q labelled %q", rot.KindOf(), rot.ReplacesKeyID, rot.Label)
	}
	w.approve(rot.ID)
	for _, s := range [][2]keydesk.State{{keydesk.StateApproved, keydesk.StateGenerating}, {keydesk.StateGenerating, keydesk.StateGenerated}, {keydesk.StateGenerated, keydesk.StateDelivered}} {
		if _, err := w.h.q.Transition(ctx, rot.ID, s[0], s[1], "batch", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	delivery := rot.ID + ".delivery@buildmarkets.ai"
	if err := w.h.q.IndexMessage(ctx, delivery, rot.ID); err != nil {
		t.Fatal(err)
	}
	return rot, delivery
}

func TestRotationConfirmedByContact(t *testing.T) {
	w := newWorld(t, false)
	rot, delivery := deliveredPartnerRotation(t, w)
	n := len(w.h.requests())
	w.send(msg{from: "ops@globex.example", id: "g-done@globex.example", subject: "Re: key", inReplyTo: delivery, body: "Done.\n"}.raw())
	if r := w.get(rot.ID); r.Rotation != nil {
		t.Errorf("another partner's reply confirmed the rotation: %+v", r.Rotation)
	}
	w.send(msg{from: "keys@initech-sec.example", id: "c-done@initech-sec.example", subject: "Re: key", inReplyTo: delivery, body: "Done, the new key is in use.\n"}.raw())
	r := w.get(rot.ID)
	if r.Rotation == nil || r.Rotation.ConfirmedBy != "keys@initech-sec.example" || r.Rotation.ConfirmedAt.IsZero() || r.State != keydesk.StateDelivered {
		t.Fatalf("rotation %+v in %s, want confirmed by the contact, still delivered", r.Rotation, r.State)
	}
	if got := len(w.h.requests()); got != n+1 {
		t.Errorf("%d requests, want %d: Globex's email is a new review item, the confirmation makes none", got, n+1)
	}
}

// TestRotationConfirmedBySubjectID: a fresh email, not a reply (no
// In-Reply-To, no References), whose subject names the rotation's
// request ID confirms it when its sender may speak for the partner; the
// same subject from another partner confirms nothing, and neither does
// the ID quoted in the body alone.
func TestRotationConfirmedBySubjectID(t *testing.T) {
	w := newWorld(t, false)
	rot, _ := deliveredPartnerRotation(t, w)
	w.send(msg{from: "ops@globex.example", id: "g-subj@globex.example", subject: "Key " + rot.ID + " done", body: "Done.\n"}.raw())
	w.send(msg{from: "ops@initech.example", id: "body-only@initech.example", subject: "Our new key",
		body: "Done, the new key from " + rot.ID + " is in use.\n"}.raw())
	if r := w.get(rot.ID); r.Rotation != nil {
		t.Fatalf("rotation confirmed by another partner's subject or by an ID in the body alone: %+v", r.Rotation)
	}
	w.send(msg{from: "ops@initech.example", id: "subj@initech.example", subject: "Rotation " + rot.ID + ": done",
		body: "Hello,\n\nthe new key is in use now.\n"}.raw())
	r := w.get(rot.ID)
	if r.Rotation == nil || r.Rotation.ConfirmedBy != "ops@initech.example" || r.State != keydesk.StateDelivered {
		t.Fatalf("rotation %+v in %s, want confirmed by ops@initech.example through the subject's ID", r.Rotation, r.State)
	}
	th := w.thread(rot.ID)
	if !slices.ContainsFunc(th, func(e keydesk.ThreadEntry) bool {
		return e.Kind == keydesk.ThreadEmailIn && e.MessageID == "subj@initech.example"
	}) {
		t.Errorf("thread %+v lacks the confirming email", th)
	}
}
