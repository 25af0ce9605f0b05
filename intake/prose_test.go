package intake

import (
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestProseSuggestionStored: an email that asks for a key in a sentence
// is queued for review with its fields empty and the suggestion stored on
// the request as its proposal, for a person to accept or correct.
func TestProseSuggestionStored(t *testing.T) {
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, NewParseHandler(ParseOptions{
		Registry: testRegistry,
		Parse:    parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true},
	}))
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", []byte("Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n"+
		string(email("prose", "Hi,\r\n\r\ncould we get a sandbox key with accounts:read and marketdata:read, label it acme-md?\r\n\r\nAda"))))
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "request queued", func() bool { return len(h.requests()) == 1 })
	r := h.requests()[0]
	if r.State != keydesk.StatePendingReview || r.Environment != "" || r.Label != "" || !r.HasFlag(keydesk.FlagFromProse) {
		t.Fatalf("request %s %q %q flags %v: want pending_review, fields empty, from-prose", r.State, r.Environment, r.Label, r.Flags)
	}
	p := r.Proposal
	if p == nil || p.Environment != keydesk.Sandbox || keydesk.JoinScopes(p.Scopes) != "accounts:read, marketdata:read" || p.Label != "acme-md" || p.From != "ada@acme.example" {
		t.Fatalf("proposal %+v: want sandbox · accounts:read, marketdata:read · acme-md from ada", p)
	}
	if len(h.outbox()) != 0 {
		t.Errorf("a reply was queued for an email in review: %+v", h.outbox())
	}
}
