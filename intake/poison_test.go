package intake

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

const supportAddr = "support-team@buildmarkets.ai"

// withAlerts gives a poller the alert template and support's address.
func withAlerts(o *Options) {
	o.Templates = templates.MustLoadEmbedded()
	o.SupportAddress = supportAddr
}

// attemptCounts reads the durable attempt counts of INBOX.
func attemptCounts(t *testing.T, q *queue.Conn) map[uint32]int {
	t.Helper()
	ctx := context.Background()
	st, err := loadMailboxState(ctx, mailboxes(q), "INBOX")
	if err != nil || st == nil {
		t.Fatalf("mailbox state %+v, %v", st, err)
	}
	counts, err := q.Attempts("INBOX").Load(ctx, st.UIDValidity)
	if err != nil {
		t.Fatal(err)
	}
	return counts
}

// alerts returns the alerts waiting in the outbox.
func (h *harness) alerts() []*keydesk.Outgoing {
	h.t.Helper()
	return slices.DeleteFunc(h.outbox(), func(o *keydesk.Outgoing) bool { return o.Kind != keydesk.KindAlert })
}

// TestPoisonEmail: an email that kills the poller process each time it is
// parsed. Three poller processes die on it in turn, and its count of
// attempts that did not end survives each death on disk. The fourth
// poller does not hand it to the parser: it moves it to Rejected with a
// reason support can read, records it in the mail log, counts it, alerts
// support once, and takes in the emails around it. A poller that dies
// after storing all that and before moving it alerts nobody twice.
func TestPoisonEmail(t *testing.T) {
	srv := startMem(t, nil)
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("g1", "accept")) // UID 1
	appendMsg(t, c, "INBOX", email("p1", "kill"))   // UID 2
	appendMsg(t, c, "INBOX", email("g2", "accept")) // UID 3
	dir := t.TempDir()

	for run := 1; run <= 3; run++ {
		runKilled(t, "kill-mail", srv.Addr, dir)
		q := queuetest.OpenDir(t, dir)
		if got := attemptCounts(t, q)[2]; got != run {
			t.Errorf("after %d deaths: the poison email's count is %d, want %d", run, got, run)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// g1 was taken in alone after the first death, when it could be told
	// apart from the email that kills; g2 always came after the poison one.
	if got := count(t, c, "INBOX"); got != 2 {
		t.Errorf("INBOX holds %d after three deaths, want 2 (p1, g2)", got)
	}

	hd := &simpleHandler{} // "kill" mail is an error here, not a death
	h := newHarness(t, srv.Addr, hd)
	h.q = queuetest.OpenDir(t, dir)
	crash := errors.New("died after storing, before moving")
	p := h.poller(withAlerts)
	p.beforeMove = func([]uint32) error { return crash }
	if err := p.Run(context.Background()); !errors.Is(err, crash) {
		t.Fatalf("Run: %v, want the crash", err)
	}
	h.run(h.poller(withAlerts))
	testenv.Eventually(t, 20*time.Second, "inbox emptied", func() bool { return count(t, c, "INBOX") == 0 })
	testenv.Eventually(t, 20*time.Second, "moves seen", func() bool { return count(t, c, "Processed") == 2 && count(t, c, "Rejected") == 1 })

	hd.mu.Lock()
	seen := slices.Clone(hd.seen)
	hd.mu.Unlock()
	if slices.Contains(seen, 2) {
		t.Errorf("the handler was given the poison email again (UIDs %v)", seen)
	}

	var rec *Record
	for _, r := range h.records() {
		if r.UID == 2 {
			rec = r
		}
	}
	const reason = "Set aside after 3 attempts that did not finish: the email may crash keydesk; open it with care."
	if rec == nil {
		t.Fatal("no mail log record of the poison email")
	}
	if rec.Outcome != "poison" || rec.Disposition != string(Rejected) || !strings.Contains(rec.Reason, reason) || len(rec.Requests) != 1 {
		t.Errorf("mail log record %+v", rec)
	}
	var rs []*keydesk.Request
	for _, r := range h.requests() {
		if r.SourceMessageID == "p1@acme.example" {
			rs = append(rs, r)
		}
	}
	if len(rs) != 1 {
		t.Fatalf("%d requests for the poison email, want 1", len(rs))
	}
	if r := rs[0]; r.State != keydesk.StateRejected || len(r.Reasons) != 1 || r.Reasons[0].Code != keydesk.ReasonPoison ||
		!strings.Contains(r.Problem, reason) || r.Requester != "ada@acme.example" || r.Subject != "API key p1" {
		t.Errorf("request %s: state %s reasons %+v requester %q subject %q", r.ID, r.State, r.Reasons, r.Requester, r.Subject)
	}

	alerts := h.alerts()
	if len(alerts) != 1 {
		t.Fatalf("%d alerts in the outbox, want exactly 1", len(alerts))
	}
	a := alerts[0]
	for _, want := range []string{"p1@acme.example", "API key p1", "UID 2", rs[0].ID, "Rejected", "open the email with care"} {
		if !strings.Contains(a.Text, want) {
			t.Errorf("alert does not say %q:\n%s", want, a.Text)
		}
	}
	if !slices.Equal(a.To, []string{supportAddr}) || !strings.Contains(a.Subject, "may crash keydesk") || rec.Reply != a.ID {
		t.Errorf("alert %q to %v (record says %q)", a.Subject, a.To, rec.Reply)
	}

	if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"g1@acme.example", "g2@acme.example", "p1@acme.example"}) {
		t.Errorf("requests from %v", got)
	}
	if v := h.metrics.Counter("keydesk_emails_total", "", "outcome").Value("poison"); v < 1 {
		t.Errorf("emails_total{poison} = %v, want at least 1", v)
	}
	testenv.Eventually(t, 20*time.Second, "attempt counts forgotten", func() bool { return len(attemptCounts(t, h.q)) == 0 })
}

// TestPoisonThreshold: what a count of attempts that did not end does to
// the next attempt, for max_attempts 3 and 1. No process dies here: the
// counts are set as deaths would leave them.
func TestPoisonThreshold(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		unended     int
		wantOutcome string
		wantFrom    string // "" : the header was not read
	}{
		{"under the limit: parsed", 3, 2, "accept", "ada@acme.example"},
		{"at the limit: set aside with its header", 3, 3, "poison", "ada@acme.example"},
		{"reading the header did not end either: set aside unread", 3, 4, "poison", ""},
		{"max_attempts 1", 1, 1, "poison", "ada@acme.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMem(t, nil)
			c := client(t, srv.Addr, testUser, testPass)
			appendMsg(t, c, "INBOX", email("p1", "accept"))
			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			hd := &simpleHandler{}
			h := newHarness(t, srv.Addr, hd)
			h.cfg.MaxAttempts = tc.maxAttempts
			for range tc.unended {
				if _, err := h.q.Attempts("INBOX").Begin(context.Background(), sel.UIDValidity, []uint32{1}); err != nil {
					t.Fatal(err)
				}
			}
			h.run(h.poller(withAlerts))
			testenv.Eventually(t, 20*time.Second, "inbox emptied", func() bool { return count(t, c, "INBOX") == 0 })
			recs := h.records()
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if r := recs[0]; r.Outcome != tc.wantOutcome || r.From != tc.wantFrom {
				t.Errorf("record: outcome %q from %q, want %q from %q", r.Outcome, r.From, tc.wantOutcome, tc.wantFrom)
			}
			hd.mu.Lock()
			parsed := len(hd.seen) > 0
			hd.mu.Unlock()
			if poison := tc.wantOutcome == "poison"; parsed == poison {
				t.Errorf("parsed: %v, want %v", parsed, !poison)
			}
			wantAlerts := 0
			if tc.wantOutcome == "poison" {
				wantAlerts = 1
			}
			if got := len(h.alerts()); got != wantAlerts {
				t.Errorf("%d alerts, want %d", got, wantAlerts)
			}
			testenv.Eventually(t, 20*time.Second, "attempt counts forgotten", func() bool { return len(attemptCounts(t, h.q)) == 0 })
		})
	}
}

// TestAttemptsOfFailuresThatEnd: an email whose processing fails and ends
// (a temporary failure, a parser panic that is recovered) is not counted
// as one that did not end: with max_attempts 1, it is still parsed again.
func TestAttemptsOfFailuresThatEnd(t *testing.T) {
	srv := startMem(t, nil)
	hd := &simpleHandler{temporary: true}
	h := newHarness(t, srv.Addr, hd)
	h.cfg.MaxAttempts = 1
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("t1", "temporary"))
	h.run(h.poller(withAlerts))
	testenv.Eventually(t, 20*time.Second, "a temporary failure", func() bool {
		hd.mu.Lock()
		defer hd.mu.Unlock()
		return len(hd.seen) >= 1
	})
	hd.setTemporary(false)
	testenv.Eventually(t, 20*time.Second, "taken in", func() bool { return count(t, c, "INBOX") == 0 })
	recs := h.records()
	if len(recs) != 1 || recs[0].Outcome != "temporary" {
		t.Errorf("records %+v, want t1 parsed (outcome temporary), not set aside", recs)
	}
	if got := len(h.alerts()); got != 0 {
		t.Errorf("%d alerts, want none", got)
	}
}
