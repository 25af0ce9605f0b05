package reply

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/templates"
)

const signOff = "\nKind regards,\nBuildmarkets Partner Support\n"

// TestConversationGolden: the status reply, the received notice and the
// correction acknowledgement read as their golden files; every line fits
// 72 columns, each ends with the company's sign-off after the line that
// says to reply, and none says when the next batch runs unless the
// request is approved.
func TestConversationGolden(t *testing.T) {
	set := templates.MustLoadEmbedded()
	acme := &keydesk.Partner{ID: "acme", Name: "Acme Capital"}
	res := &parse.Result{From: "jane.doe@acme.example", Partner: acme, Authenticated: true, MessageID: "q1@acme.example",
		Subject: "Re: New keys", InReplyTo: []string{"KR-20261130-SAF2.ack@buildmarkets.ai"}, References: []string{"orig@acme.example"}, SourceKey: "k"}
	pending := &keydesk.Request{ID: "KR-20261130-SAF2", State: keydesk.StatePendingReview, Environment: keydesk.Production,
		Scopes: []keydesk.Scope{"accounts:read", "trading:read", "trading:write", "marketdata:read", "accounts:write"}, Label: "production-trading-engine"}
	approved := &keydesk.Request{ID: "KR-20261130-0EPD", State: keydesk.StateApproved, Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{"accounts:read"}, Label: "sandbox-backend"}
	proposal := &keydesk.Proposal{ID: "p", Environment: keydesk.Production, Scopes: []keydesk.Scope{"accounts:read"}, Label: "production-trading-engine", WasApproved: true}
	build := map[string]func() (*keydesk.Outgoing, error){
		"status-reply-pending": func() (*keydesk.Outgoing, error) {
			return Status(res, []*keydesk.Request{pending}, set, nextBatch, "KR-20261130-SAF2.status.x")
		},
		"status-reply-two": func() (*keydesk.Outgoing, error) {
			return Status(res, []*keydesk.Request{pending, approved}, set, nextBatch, "KR-20261130-SAF2.status.x")
		},
		"received": func() (*keydesk.Outgoing, error) {
			return Received(res, []*keydesk.Request{pending}, set)
		},
		"correction-received": func() (*keydesk.Outgoing, error) {
			return CorrectionReceived(res, pending, proposal, set, "KR-20261130-SAF2.correction.x")
		},
	}
	for name, f := range build {
		t.Run(name, func(t *testing.T) {
			out, err := f()
			if err != nil {
				t.Fatal(err)
			}
			if len(out.To) != 1 || out.To[0] != res.From || out.InReplyTo != res.MessageID || out.Subject != "Re: New keys" {
				t.Errorf("to %v in reply to %q subject %q", out.To, out.InReplyTo, out.Subject)
			}
			for i, l := range strings.Split(out.Text, "\n") {
				if utf8.RuneCountInString(l) > 72 {
					t.Errorf("line %d is %d columns: %q", i+1, utf8.RuneCountInString(l), l)
				}
			}
			reply := "For anything about this request, reply to this email.\n"
			if len(out.Requests()) > 1 {
				reply = "For anything about these requests, reply to this email.\n"
			}
			if !strings.HasSuffix(out.Text, reply+signOff) {
				t.Errorf("the text does not end with %q and the sign-off:\n%s", reply, out.Text)
			}
			if batch := strings.Contains(out.Text, "Next batch"); batch != (name == "status-reply-two") {
				t.Errorf("next batch named: %v, want it only for the approved request", batch)
			}
			got := render(out)
			golden := filepath.Join("testdata", name+".golden")
			testenv.Golden(t, golden, got, *update)
		})
	}
}

// TestStateInWords: the next batch is promised only to an approved
// request, and a request held by a correction says so.
func TestStateInWords(t *testing.T) {
	for _, s := range keydesk.States {
		r := &keydesk.Request{State: s}
		state, next := StateInWords(r, time.Time{})
		if state == "" || next == "" {
			t.Errorf("%s: %q, %q", s, state, next)
		}
		if strings.Contains(next, "batch") != (s == keydesk.StatePendingReview || s == keydesk.StateReceived || s == keydesk.StateApproved) {
			t.Errorf("%s: %q", s, next)
		}
	}
	held := &keydesk.Request{State: keydesk.StatePendingReview, Proposal: &keydesk.Proposal{}}
	if state, _ := StateInWords(held, time.Time{}); !strings.Contains(state, "correction") {
		t.Errorf("held request reads %q", state)
	}
}
