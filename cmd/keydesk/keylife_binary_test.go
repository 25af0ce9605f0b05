package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/review"
)

// TestKeyLifeBinary runs the real binary, every role with its embedded
// NATS, through a key's life as a partner and support see it. The
// partner has keys of its own in both environments, each numbered
// key-001 there; the batch role lists them into the inventory at start.
// The partner's requester emails to revoke key-001 in production: one
// revoke request waits for review and is acknowledged; once support
// approves it, the key is revoked at the production API within seconds,
// not at the batch schedule (once a year), the sandbox key-001 stays
// live, and the requester and the technical contact hear of it. The
// requester then emails to rotate prod-md (production key-002): the
// rotation keeps its label and scopes, a batch makes key-003 and
// delivers it encrypted to the contact, and key-002 stays live until the
// contact replies "done" to that delivery; then it is revoked. The batch
// role looks at confirmed rotations every minute and after each batch:
// support runs a batch rather than wait for the minute.
func TestKeyLifeBinary(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	w, apis := newKeyLifeWorld(t, bin)
	sb, prod := apis[keydesk.Sandbox], apis[keydesk.Production]
	w.start()

	// 1. The inventory shows the partner's own keys, each environment's
	// key-001 apart.
	w.waitKeys("the partner's keys in the inventory", func(ks map[string]review.Key) bool {
		return ks["sandbox/key-001"].Label == "sb-engine" && ks["production/key-001"].Label == "prod-engine" && ks["production/key-002"].Label == "prod-md"
	})
	for ref, k := range w.keys() {
		if strings.HasSuffix(ref, "/key-001") || ref == "production/key-002" {
			if k.MadeBy != string(keydesk.MadeByPartner) || k.RevokedAt != nil {
				t.Errorf("%s in the inventory: made by %q, revoked %v; want the partner's, live", ref, k.MadeBy, k.RevokedAt)
			}
		}
	}

	// 2. Revoke by email.
	revMsg := w.deliver("life-revoke", "Leaked key", "", "Hello support,\n\nPlease revoke key-001 in production, it leaked.\n\nThanks,\nAda\n")
	ack := w.waitMail("the acknowledgement of the revocation", func(m *convMail) bool {
		return m.kind == "acknowledgement" && m.to == "ada@acme.example" && m.header("In-Reply-To") == revMsg
	})
	reqs := w.list()
	if len(reqs) != 1 {
		t.Fatalf("%d requests after the revoke email, want one", len(reqs))
	}
	rev := w.get(reqs[0].ID)
	if rev.Kind != keydesk.KindRevoke || rev.Environment != string(keydesk.Production) || rev.KeyID != "key-001" || rev.State != keydesk.StatePendingReview {
		t.Fatalf("the revoke email made a %s request, %s %s, in %s; want revoke production key-001 in pending_review", rev.Kind, rev.Environment, rev.KeyID, rev.State)
	}
	if !strings.Contains(ack.text, rev.ID) || !strings.Contains(ack.text, "key-001") {
		t.Errorf("the acknowledgement does not name %s and key-001:\n%s", rev.ID, ack.text)
	}
	w.approve(rev)
	// The schedule is far away: only the approval can revoke it now.
	testenv.Eventually(t, 20*time.Second, "production key-001 revoked at the API", func() bool {
		return revokedAt(prod, "key-001")
	})
	if revokedAt(sb, "key-001") {
		t.Errorf("sandbox key-001 was revoked with production key-001")
	}
	w.waitState(rev.ID, keydesk.StateRevoked)
	if r := w.get(rev.ID); r.RevokedAt == nil {
		t.Errorf("%s is revoked without revoked_at", rev.ID)
	}
	notice := w.mailsTo(func(m *convMail) bool { return strings.Contains(m.header("Message-ID"), rev.ID+".key-revoked") },
		"the key-revoked notice", "ada@acme.example", "sec@acme.example")
	for _, m := range notice {
		if !strings.Contains(m.text, "key-001") || !strings.Contains(m.text, "production") {
			t.Errorf("the key-revoked notice to %s does not name production key-001:\n%s", m.to, m.text)
		}
	}
	w.waitKeys("production key-001 revoked in the inventory", func(ks map[string]review.Key) bool {
		return ks["production/key-001"].RevokedAt != nil
	})
	if k := w.keys()["sandbox/key-001"]; k.RevokedAt != nil || k.Label != "sb-engine" {
		t.Errorf("sandbox key-001 in the inventory: %+v; want it live", k)
	}

	// 3. Rotate by email.
	rotMsg := w.deliver("life-rotate", "Rotation", "", "Hello support,\n\nPlease rotate prod-md\n\nThanks,\nAda\n")
	w.waitMail("the acknowledgement of the rotation", func(m *convMail) bool {
		return m.kind == "acknowledgement" && m.header("In-Reply-To") == rotMsg
	})
	var rot *review.Request
	for _, r := range w.list() {
		if r.ID != rev.ID {
			rot = w.get(r.ID)
		}
	}
	if rot == nil || rot.Kind != keydesk.KindRotate || rot.ReplacesKeyID != "key-002" || rot.Environment != string(keydesk.Production) ||
		rot.Label != "prod-md" || !sameScopes(rot.Scopes, "marketdata:read", "accounts:read") || rot.State != keydesk.StatePendingReview {
		t.Fatalf("the rotate email made %+v; want a production rotate of key-002, prod-md with marketdata:read and accounts:read, in pending_review", rot)
	}
	w.approve(rot)
	if err := w.client("ada").Do(context.Background(), "POST", "/api/v1/batches", nil, nil); err != nil {
		t.Fatalf("run a batch: %v", err)
	}
	w.waitState(rot.ID, keydesk.StateDelivered)
	newKey, ok := liveKey(prod, "key-003")
	if !ok || newKey.Label != "prod-md" || !sameScopes(scopeStrings(newKey.Scopes), "marketdata:read", "accounts:read") {
		t.Fatalf("the rotation made %+v at the API; want key-003, prod-md, with the old key's scopes", newKey)
	}
	if _, ok := liveKey(prod, "key-002"); !ok {
		t.Fatal("key-002 was revoked before the contact confirmed the new key")
	}
	rot = w.get(rot.ID)
	if rot.KeyID != "key-003" || rot.Rotation == nil || rot.Rotation.Due.IsZero() {
		t.Errorf("%s after delivery: key %s, rotation %+v; want key-003 and a due date", rot.ID, rot.KeyID, rot.Rotation)
	}
	w.checkDelivery(&convRequest{id: rot.ID, label: "prod-md"}, newKey, []string{"marketdata:read", "accounts:read"})
	var delivery *convMail
	for _, m := range w.sink.To("sec@acme.example") {
		if cm, err := readConvMail(m); err == nil && cm.kind == "key delivery" && strings.Contains(cm.header("Message-ID"), rot.ID+".key.") {
			delivery = cm
		}
	}

	// The contact confirms by answering the delivery.
	deliveryID := delivery.header("Message-ID")
	w.deliverFrom("Security Desk <sec@acme.example>", "life-done", "Re: "+delivery.header("Subject"),
		"In-Reply-To: "+deliveryID+"\r\nReferences: "+deliveryID+"\r\n", "done\n")
	testenv.Eventually(t, 20*time.Second, "the contact's confirmation recorded", func() bool {
		r := w.get(rot.ID)
		return r.Rotation != nil && !r.Rotation.ConfirmedAt.IsZero()
	})
	if by := w.get(rot.ID).Rotation.ConfirmedBy; by != "sec@acme.example" {
		t.Errorf("the rotation was confirmed by %q, want the contact", by)
	}
	// The batch role sweeps rotations every minute and after each batch;
	// support runs one rather than wait for the sweep.
	if err := w.client("ada").Do(context.Background(), "POST", "/api/v1/batches", nil, nil); err != nil {
		t.Fatalf("run a batch: %v", err)
	}
	testenv.Eventually(t, 20*time.Second, "key-002 revoked at the API", func() bool {
		return revokedAt(prod, "key-002")
	})
	if _, ok := liveKey(prod, "key-003"); !ok {
		t.Error("key-003 is not live after the rotation")
	}
	testenv.Eventually(t, 20*time.Second, "the rotation closed", func() bool {
		r := w.get(rot.ID)
		return r.Rotation != nil && !r.Rotation.OldRevokedAt.IsZero()
	})
}

// newKeyLifeWorld is newConvWorld's world with an API simulator per
// environment. Each simulator starts with keydesk's keys:manage key as
// key-000, so that the partner's own keys, made through the API, are
// key-001 onwards, as on an account where the partner made them first.
func newKeyLifeWorld(t *testing.T, bin string) (*convWorld, map[keydesk.Environment]*fake.Server) {
	w, dir, pass := newWorldServers(t, bin)

	own := map[keydesk.Environment][]struct {
		label  string
		scopes []keydesk.Scope
	}{
		keydesk.Sandbox:    {{"sb-engine", []keydesk.Scope{"trading:write", "accounts:read"}}},
		keydesk.Production: {{"prod-engine", []keydesk.Scope{"trading:write", "accounts:read"}}, {"prod-md", []keydesk.Scope{"marketdata:read", "accounts:read"}}},
	}
	apis := map[keydesk.Environment]*fake.Server{}
	world := map[keydesk.Environment]worldAPI{}
	for _, env := range keydesk.Environments {
		key, secret := "bm_key_acme_"+string(env), "bm_secret_acme_"+demo.RandHex(8)
		sum := sha256.Sum256([]byte(secret))
		state, err := json.Marshal(map[string]any{"version": 1, "keys": []map[string]any{{
			"id": "key-000", "account": "acme", "label": "keydesk", "api_key": key, "secret_sha256": hex.EncodeToString(sum[:]),
			"scopes": []keydesk.Scope{keydesk.ScopeKeysManage}, "created_at": time.Now().UTC().Add(-time.Hour), "seeded": true,
		}}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "api-"+string(env)+".json")
		if err := os.WriteFile(path, state, 0o600); err != nil {
			t.Fatal(err)
		}
		api, err := fake.New(fake.Options{StatePath: path})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		apis[env], world[env] = api, worldAPI{url: srv.URL, key: key, secret: secret}
		c := bmapi.New(bmapi.Options{BaseURL: srv.URL, APIKey: key, APISecret: keydesk.SecretString(secret)})
		for _, k := range own[env] {
			made, err := c.CreateKey(context.Background(), k.label, k.scopes)
			if err != nil {
				t.Fatal(err)
			}
			made.APISecret.Wipe()
		}
	}
	w.api = apis[keydesk.Production]
	w.configure(dir, pass, world)
	return w, apis
}

// deliverFrom puts an email from from in the support inbox, DMARC
// checked, and returns its Message-ID.
func (w *convWorld) deliverFrom(from, id, subject, extra, body string) string {
	w.t.Helper()
	w.sent++
	raw := demo.Message(time.Now().Add(time.Duration(w.sent)*time.Second), id, from, subject, extra, body)
	if _, err := w.imap.User.Append("INBOX", bytes.NewReader([]byte(raw)), &imap.AppendOptions{Time: time.Now()}); err != nil {
		w.t.Fatal(err)
	}
	return "<" + id + "@mail.acme.example>"
}

// approve approves r with as many approvers as it needs.
func (w *convWorld) approve(r *review.Request) {
	w.t.Helper()
	if r.ApprovalsNeeded < 1 || r.ApprovalsNeeded > 2 {
		w.t.Fatalf("%s needs %d approvals", r.ID, r.ApprovalsNeeded)
	}
	for _, u := range []string{"alice", "bob"}[:r.ApprovalsNeeded] {
		w.act(u, r.ID, "approve")
	}
}

// keys is GET /api/v1/keys of the partner, by "environment/key_id".
func (w *convWorld) keys() map[string]review.Key {
	w.t.Helper()
	var l review.KeyList
	if err := w.client("alice").Do(context.Background(), "GET", "/api/v1/keys?partner=acme", nil, &l); err != nil {
		w.t.Fatalf("list keys: %v", err)
	}
	out := map[string]review.Key{}
	for _, k := range l.Keys {
		if k.Partner == "acme" {
			out[k.Environment+"/"+k.KeyID] = k
		}
	}
	return out
}

func (w *convWorld) waitKeys(what string, ok func(map[string]review.Key) bool) {
	w.t.Helper()
	var last map[string]review.Key
	if err := testenv.Poll(30*time.Second, what, func() bool {
		last = w.keys()
		return ok(last)
	}); err != nil {
		w.t.Fatalf("%v: the inventory holds %+v", err, last)
	}
}

// mailsTo waits until the emails match picks have reached each of to,
// and returns them.
func (w *convWorld) mailsTo(match func(*convMail) bool, what string, to ...string) []*convMail {
	w.t.Helper()
	var got []*convMail
	if err := testenv.Poll(30*time.Second, what, func() bool {
		got = nil
		var reached []string
		for _, m := range w.sink.Messages() {
			cm, err := readConvMail(m)
			if err != nil || !match(cm) {
				continue
			}
			got = append(got, cm)
			reached = append(reached, m.To...)
		}
		for _, a := range to {
			if !slices.Contains(reached, a) {
				return false
			}
		}
		return true
	}); err != nil {
		w.t.Fatal(err)
	}
	return got
}

func revokedAt(api *fake.Server, id string) bool {
	for _, k := range api.Keys("acme") {
		if k.ID == id {
			return k.Revoked
		}
	}
	return false
}

func liveKey(api *fake.Server, id string) (fake.KeyInfo, bool) {
	for _, k := range api.LiveKeys("acme") {
		if k.ID == id {
			return k, true
		}
	}
	return fake.KeyInfo{}, false
}
