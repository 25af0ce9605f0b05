package intake

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/templates"
)

func testRegistry() *keydesk.Registry {
	return &keydesk.Registry{Partners: []*keydesk.Partner{{
		ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: "sec@acme.example"},
		AllowedScopes:    []keydesk.Scope{"accounts:read", "marketdata:read", "trading:read"},
		Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
			keydesk.Sandbox: {APIKey: "mgr", AutoApprove: true},
		},
	}}}
}

// TestWithParser runs the poller with the real parser and reply builder:
// what each kind of email becomes, where it goes, and who hears back.
func TestWithParser(t *testing.T) {
	tpl := templates.MustLoadEmbedded()
	next := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	handler := NewParseHandler(ParseOptions{
		Registry: testRegistry,
		Parse:    parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true, InternalDomains: []string{"buildmarkets.ai"}},
		Reply:    func(res *parse.Result) (*keydesk.Outgoing, error) { return reply.Build(res, tpl, next) },
	})
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, handler)
	c := client(t, srv.Addr, testUser, testPass)
	files := []string{"accept.eml", "reject-no-environment.eml", "review-unknown-sender.eml", "ignore-auto-reply.eml"}
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		appendMsg(t, c, "INBOX", raw)
	}
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "inbox emptied", func() bool { return count(t, c, "INBOX") == 0 })
	if got := count(t, c, "Processed"); got != 3 {
		t.Errorf("Processed holds %d, want 3 (accept, review, ignore)", got)
	}
	if got := count(t, c, "Rejected"); got != 1 {
		t.Errorf("Rejected holds %d, want 1", got)
	}

	recs := map[string]*Record{}
	for _, r := range h.records() {
		recs[r.MessageID] = r
	}
	reqs := map[string]*keydesk.Request{}
	for _, r := range h.requests() {
		reqs[r.SourceMessageID] = r
	}
	replies := map[string]*keydesk.Outgoing{}
	for _, o := range h.outbox() {
		replies[o.InReplyTo] = o
	}
	tests := []struct {
		msgID     string
		outcome   string
		state     keydesk.State // "" : no request
		replyKind keydesk.MessageKind
	}{
		{"accept-1@acme.example", "accept", keydesk.StateApproved, keydesk.KindAcknowledgement},
		{"reject-1@acme.example", "reject", keydesk.StateRejected, keydesk.KindRejection},
		{"unknown-1@stranger.example", "review", keydesk.StatePendingReview, ""},
		{"ooo-1@acme.example", "ignore", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.outcome, func(t *testing.T) {
			rec := recs[tc.msgID]
			if rec == nil {
				t.Fatalf("no intake record for %s", tc.msgID)
			}
			if rec.Outcome != tc.outcome {
				t.Errorf("outcome %q, want %q", rec.Outcome, tc.outcome)
			}
			r := reqs[tc.msgID]
			switch {
			case tc.state == "" && r != nil:
				t.Errorf("request %s created, want none", r.ID)
			case tc.state != "" && r == nil:
				t.Errorf("no request, want one in %s", tc.state)
			case r != nil && r.State != tc.state:
				t.Errorf("request in %s, want %s", r.State, tc.state)
			case r != nil && !slices.Contains(rec.Requests, r.ID):
				t.Errorf("record lists %v, not %s", rec.Requests, r.ID)
			}
			var reply *keydesk.Outgoing
			for _, o := range replies {
				if o.InReplyTo == tc.msgID || o.InReplyTo == "<"+tc.msgID+">" {
					reply = o
				}
			}
			switch {
			case tc.replyKind == "" && reply != nil:
				t.Errorf("reply %s sent, want none (no backscatter)", reply.Kind)
			case tc.replyKind != "" && reply == nil:
				t.Errorf("no reply, want %s", tc.replyKind)
			case reply != nil && (reply.Kind != tc.replyKind || !slices.Equal(reply.To, []string{"ada@acme.example"}) || rec.Reply != reply.ID):
				t.Errorf("reply %s to %v (record says %q), want %s to ada", reply.Kind, reply.To, rec.Reply, tc.replyKind)
			}
		})
	}
}

// TestIDCollisionSalted: two emails of one day whose request IDs collide
// (c-329 and c-535 from ada hash to the same four characters) are both
// stored, the second under a salted ID, and each acknowledgement quotes the
// ID its request was stored under.
func TestIDCollisionSalted(t *testing.T) {
	tpl := templates.MustLoadEmbedded()
	handler := NewParseHandler(ParseOptions{
		Registry: testRegistry,
		Parse:    parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true},
		Reply:    func(res *parse.Result) (*keydesk.Outgoing, error) { return reply.Build(res, tpl, time.Time{}) },
	})
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, handler)
	c := client(t, srv.Addr, testUser, testPass)
	raw, err := os.ReadFile(filepath.Join("testdata", "accept.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c-329@acme.example", "c-535@acme.example"} {
		appendMsg(t, c, "INBOX", []byte(strings.Replace(string(raw), "accept-1@acme.example", id, 1)))
	}
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "inbox emptied", func() bool { return count(t, c, "INBOX") == 0 })
	rs := h.requests()
	if len(rs) != 2 || rs[0].ID == rs[1].ID {
		t.Fatalf("requests %v, want two with distinct IDs", ids(rs))
	}
	acks := h.outbox()
	if len(acks) != 2 {
		t.Fatalf("%d acknowledgements, want 2", len(acks))
	}
	for _, r := range rs {
		i := slices.IndexFunc(acks, func(o *keydesk.Outgoing) bool { return strings.Contains(o.InReplyTo, r.SourceMessageID) })
		if i < 0 {
			t.Errorf("no acknowledgement for %s", r.SourceMessageID)
			continue
		}
		if acks[i].RequestID != r.ID || !strings.Contains(acks[i].Text, r.ID) {
			t.Errorf("acknowledgement of %s names %q, want the stored ID %s", r.SourceMessageID, acks[i].RequestID, r.ID)
		}
	}
}
