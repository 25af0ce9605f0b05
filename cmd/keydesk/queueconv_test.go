package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
)

// TestQueueConversationCLI drives a request's conversation with 'keydesk
// queue show|note|reply|assign|accept|refuse' and the list's --kind,
// --assignee and --q against 'keydesk serve --roles review'.
func TestQueueConversationCLI(t *testing.T) {
	w := newCLIWorld(t)
	propose := func(scopes ...keydesk.Scope) func(*keydesk.Request) {
		return func(r *keydesk.Request) {
			r.Proposal = &keydesk.Proposal{ID: "p-" + r.Label, From: r.Requester, MessageID: "<re-" + r.Label + "@acme.example>",
				At: time.Now(), Environment: r.Environment, Scopes: scopes, Label: r.Label}
			r.Flags = []keydesk.Flag{keydesk.FlagProposedChange}
		}
	}
	wider := w.request(keydesk.Sandbox, "sandbox-backend", propose(keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead))
	refused := w.request(keydesk.Sandbox, "sandbox-reports", propose(keydesk.ScopeMarketdataRead))
	ctx := context.Background()
	if _, err := w.a.q.AppendThread(ctx, keydesk.ThreadEntry{ID: "in1", RequestID: wider.ID, At: time.Now(), Kind: keydesk.ThreadEmailIn,
		From: "dev@acme.example", Subject: "Re: keys", MessageID: "<re-sandbox-backend@acme.example>",
		Text: "please add trading:read\x1b[2J\nthanks"}); err != nil {
		t.Fatal(err)
	}

	for _, sub := range []string{"note", "reply", "assign", "accept", "refuse", "show", "list"} {
		if _, err := w.cli("viv", "queue", sub, "--help"); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("queue %s --help: %v", sub, err)
		}
	}
	for _, bad := range [][]string{{"note", wider.ID}, {"assign", wider.ID}, {"assign", wider.ID, "bob", "--unassign"}, {"accept"}} {
		if _, err := w.cli("alice", append([]string{"queue"}, bad...)...); !errors.Is(err, errUsage) {
			t.Errorf("queue %v: %v, want a usage error", bad, err)
		}
	}

	out := w.must("viv", "queue", "show", wider.ID)
	for _, want := range []string{"Proposed change from dev@acme.example", "  scopes:\n    - accounts:read\n    + accounts:read, trading:read",
		"Conversation:", "email in  dev@acme.example", "    | please add trading:read\uFFFD[2J\n    | thanks", "Assignee:     -", "Kind:         issue"} {
		if !strings.Contains(out, want) {
			t.Errorf("queue show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Fatalf("queue show let an escape sequence through:\n%q", out)
	}

	_, err := w.cli("viv", "queue", "note", wider.ID, "hello")
	wantAPIError(t, err, 403, "forbidden")
	if out := w.must("alice", "queue", "note", wider.ID, "called", "Dana:", "trading:read", "is", "right"); !strings.Contains(out, "Note added.") {
		t.Fatalf("queue note:\n%s", out)
	}
	_, err = w.cli("alice", "queue", "reply", wider.ID, "the secret is bm_secret_abc")
	wantAPIError(t, err, 400, "secret")
	file := filepath.Join(t.TempDir(), "reply.txt")
	if err := os.WriteFile(file, []byte("Hello Dana,\n\nwe will add trading:read.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := w.must("alice", "queue", "reply", wider.ID, "--file", file); !strings.Contains(out, "Reply to dev@acme.example queued") {
		t.Fatalf("queue reply:\n%s", out)
	}
	msgs, err := w.a.q.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Kind != keydesk.KindStaffReply || !slices.Equal(msgs[0].To, []string{"dev@acme.example"}) ||
		!strings.Contains(msgs[0].Text, "we will add trading:read.") {
		t.Fatalf("outbox after a reply: %+v", msgs)
	}

	_, err = w.cli("alice", "queue", "assign", wider.ID, "mallory")
	wantAPIError(t, err, 400, "bad_request")
	if out := w.must("alice", "queue", "assign", wider.ID, "bob"); !strings.Contains(out, "Assigned to bob.") {
		t.Fatalf("queue assign:\n%s", out)
	}
	if out := w.must("bob", "queue", "list", "--assignee", "me"); !strings.Contains(out, wider.ID) || strings.Contains(out, refused.ID) {
		t.Fatalf("queue list --assignee me:\n%s", out)
	}
	if out := w.must("bob", "queue", "list", "--q", "REPORTS"); !strings.Contains(out, refused.ID) || strings.Contains(out, wider.ID) {
		t.Fatalf("queue list --q REPORTS:\n%s", out)
	}
	if out := w.must("bob", "queue", "list", "--kind", "revoke"); !strings.Contains(out, "No requests match.") {
		t.Fatalf("queue list --kind revoke:\n%s", out)
	}
	if out := w.must("bob", "queue", "assign", wider.ID, "--unassign"); !strings.Contains(out, "Unassigned.") {
		t.Fatalf("queue assign --unassign:\n%s", out)
	}

	out = w.must("alice", "queue", "accept", wider.ID)
	if !strings.Contains(out, wider.ID+": pending_review") || !strings.Contains(out, "Change accepted") || !strings.Contains(out, "Warning: Accepting this change widens access (adds trading:read)") {
		t.Fatalf("queue accept:\n%s", out)
	}
	_, err = w.cli("alice", "queue", "approve", wider.ID)
	wantAPIError(t, err, 403, "own_widening")
	if out := w.must("bob", "queue", "refuse", refused.ID); !strings.Contains(out, "Change refused") {
		t.Fatalf("queue refuse:\n%s", out)
	}
	_, err = w.cli("bob", "queue", "refuse", refused.ID)
	wantAPIError(t, err, 409, "no_proposal")
	for id, scopes := range map[string]string{wider.ID: "accounts:read, trading:read", refused.ID: "accounts:read"} {
		r, err := w.a.q.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Proposal != nil || keydesk.JoinScopes(r.Scopes) != scopes || r.State != keydesk.StatePendingReview {
			t.Errorf("%s after the decision: %s %v %+v", id, r.State, r.Scopes, r.Proposal)
		}
	}
}
