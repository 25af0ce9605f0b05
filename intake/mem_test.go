package intake

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/imaptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// TestBacklogThenIdle: a backlog is processed in order, each email ends in
// the right mailbox unread, with its requests, reply and intake record
// stored; then a new email arrives during IDLE and is taken in at once
// (the poll interval is an hour, so only IDLE can explain it).
func TestBacklogThenIdle(t *testing.T) {
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, &simpleHandler{})
	h.cfg.PollInterval = time.Hour
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	appendMsg(t, c, "INBOX", email("r1", "reject"))
	appendMsg(t, c, "INBOX", email("a2", "accept"))

	p := h.poller(nil)
	h.run(p)
	testenv.Eventually(t, 20*time.Second, "backlog moved out of INBOX", func() bool { return count(t, c, "INBOX") == 0 })
	if got := count(t, c, "Processed"); got != 2 {
		t.Errorf("Processed holds %d, want 2", got)
	}
	if got := count(t, c, "Rejected"); got != 1 {
		t.Errorf("Rejected holds %d, want 1", got)
	}
	rs := h.requests()
	if got := sourceIDs(rs); !slices.Equal(got, []string{"a1@acme.example", "a2@acme.example", "r1@acme.example"}) {
		t.Errorf("requests from %v", got)
	}
	for _, r := range rs {
		if r.MailRef == "" || r.MailRef != queue.MailRef(r.SourceKey) {
			t.Errorf("%s: mail ref %q", r.ID, r.MailRef)
		}
		rc, err := h.q.OpenMail(context.Background(), r.MailRef)
		if err != nil {
			t.Errorf("%s: raw mail not stored: %v", r.ID, err)
			continue
		}
		rc.Close()
	}
	if got := len(h.outbox()); got != 2 {
		t.Errorf("outbox holds %d replies, want 2", got)
	}
	recs := h.records()
	if len(recs) != 3 {
		t.Fatalf("%d intake records, want 3", len(recs))
	}
	for _, rec := range recs {
		if len(rec.Requests) != 1 || !rec.Stored || rec.UIDValidity == 0 {
			t.Errorf("record %+v", rec)
		}
	}
	if v := h.metrics.Counter("keydesk_emails_total", "", "outcome").Value("accept"); v != 2 {
		t.Errorf("emails_total{accept} = %v, want 2", v)
	}
	// Fetched with BODY.PEEK: a person still sees the mail as unread.
	if _, err := c.Select("Processed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if slices.Contains(m.Flags, imap.FlagSeen) {
			t.Errorf("message %d was marked \\Seen", m.SeqNum)
		}
	}
	if err := p.Ready(context.Background()); err != nil {
		t.Errorf("ready: %v", err)
	}

	start := time.Now()
	appendMsg(t, c, "INBOX", email("a3", "accept"))
	testenv.Eventually(t, 20*time.Second, "new mail taken in through IDLE", func() bool { return len(h.requests()) == 4 })
	t.Logf("append to queued: %s", time.Since(start))
}

// TestBadMailSetAside: a parser panic and an unreadable email are each
// set aside with a reason that review shows, and the email after them is
// still processed.
func TestBadMailSetAside(t *testing.T) {
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, &simpleHandler{})
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("p1", "panic"))
	appendMsg(t, c, "INBOX", email("g1", "garbage"))
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "all moved", func() bool { return count(t, c, "INBOX") == 0 })
	if got := count(t, c, "Rejected"); got != 2 {
		t.Errorf("Rejected holds %d, want 2", got)
	}
	if got := count(t, c, "Processed"); got != 1 {
		t.Errorf("Processed holds %d, want 1", got)
	}
	tests := []struct {
		id, state, reason string
	}{
		{"p1@acme.example", "rejected", "handler panicked: parser bug on p1@acme.example"},
		{"g1@acme.example", "rejected", "no MIME structure"},
		{"a1@acme.example", "pending_review", ""},
	}
	rs := h.requests()
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			i := slices.IndexFunc(rs, func(r *keydesk.Request) bool { return r.SourceMessageID == tc.id })
			if i < 0 {
				t.Fatalf("no request from %s", tc.id)
			}
			r := rs[i]
			if string(r.State) != tc.state {
				t.Errorf("state %s, want %s", r.State, tc.state)
			}
			if tc.reason != "" {
				if len(r.Reasons) != 1 || r.Reasons[0].Code != keydesk.ReasonMalformed || !strings.Contains(r.Problem, tc.reason) {
					t.Errorf("reasons %+v problem %q, want malformed mentioning %q", r.Reasons, r.Problem, tc.reason)
				}
				if r.Requester != "ada@acme.example" || r.MailRef == "" {
					t.Errorf("requester %q mail ref %q", r.Requester, r.MailRef)
				}
			}
		})
	}
	if v := h.metrics.Counter("keydesk_emails_total", "", "outcome").Value("malformed"); v != 2 {
		t.Errorf("emails_total{malformed} = %v, want 2", v)
	}
}

// TestOversizeMovedUnread: an email over hard_max_message_bytes is
// recorded as too large from its header, moved to Rejected, and its body
// is never handed to the parser.
func TestOversizeMovedUnread(t *testing.T) {
	srv := startMem(t, nil)
	hd := &simpleHandler{}
	h := newHarness(t, srv.Addr, hd)
	h.cfg.HardMaxMessageBytes = 80 << 10
	c := client(t, srv.Addr, testUser, testPass)
	big := email("big", "accept\r\n"+strings.Repeat("x", 100<<10))
	appendMsg(t, c, "INBOX", big)
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "all moved", func() bool { return count(t, c, "INBOX") == 0 })
	if got := count(t, c, "Rejected"); got != 1 {
		t.Errorf("Rejected holds %d, want 1", got)
	}
	hd.mu.Lock()
	seen := slices.Clone(hd.seen)
	hd.mu.Unlock()
	if !slices.Equal(seen, []uint32{2}) {
		t.Errorf("handler saw UIDs %v, want only [2]", seen)
	}
	rs := h.requests()
	i := slices.IndexFunc(rs, func(r *keydesk.Request) bool { return r.SourceMessageID == "big@acme.example" })
	if i < 0 {
		t.Fatal("no record of the oversized email in the queue")
	}
	r := rs[i]
	if r.State != keydesk.StateRejected || len(r.Reasons) != 1 || r.Reasons[0].Code != keydesk.ReasonTooLarge {
		t.Errorf("oversized: state %s reasons %+v", r.State, r.Reasons)
	}
	if r.Subject != "API key big" || r.Requester != "ada@acme.example" {
		t.Errorf("oversized: subject %q requester %q", r.Subject, r.Requester)
	}
	if !strings.Contains(r.Problem, "80.0 KiB") {
		t.Errorf("problem %q does not name the limit", r.Problem)
	}
	rec, err := GetRecord(context.Background(), h.q, queue.MailRef(r.SourceKey))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != "too-large" || rec.Stored || rec.Size <= 100<<10 {
		t.Errorf("record %+v", rec)
	}
}

// TestCrashBeforeMove: the poller dies after its records are stored but
// before the emails are moved; the next one finds them again, creates
// nothing twice, queues no second reply, and moves them.
func TestCrashBeforeMove(t *testing.T) {
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, &simpleHandler{})
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	appendMsg(t, c, "INBOX", email("a2", "accept"))

	crash := errors.New("killed between enqueue and move")
	p := h.poller(nil)
	p.beforeMove = func([]uint32) error { return crash }
	if err := p.Run(context.Background()); !errors.Is(err, crash) {
		t.Fatalf("Run: %v, want the crash", err)
	}
	if got := count(t, c, "INBOX"); got != 2 {
		t.Fatalf("INBOX holds %d after the crash, want 2", got)
	}
	before := h.requests()
	if len(before) != 2 {
		t.Fatalf("%d requests after the crash, want 2", len(before))
	}

	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "moved after restart", func() bool { return count(t, c, "INBOX") == 0 })
	after := h.requests()
	if len(after) != 2 || after[0].ID != before[0].ID || after[1].ID != before[1].ID {
		t.Errorf("requests after restart %v, want the same two as before %v", ids(after), ids(before))
	}
	for i, r := range after {
		if r.Revision != before[i].Revision {
			t.Errorf("%s was written again (revision %d, was %d)", r.ID, r.Revision, before[i].Revision)
		}
	}
	if got := len(h.outbox()); got != 2 {
		t.Errorf("outbox holds %d replies, want 2 (one per email)", got)
	}
}

func ids(rs []*keydesk.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestTemporaryFailureRetried: an email whose processing fails for a
// passing reason stays in the inbox, the others go on, and it is taken in
// once the cause is gone.
func TestTemporaryFailureRetried(t *testing.T) {
	srv := startMem(t, nil)
	hd := &simpleHandler{temporary: true}
	h := newHarness(t, srv.Addr, hd)
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("t1", "temporary"))
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	h.run(h.poller(nil))
	// A move is not atomic to an observer: wait for both sides of it.
	testenv.Eventually(t, 20*time.Second, "the good email processed", func() bool {
		return count(t, c, "Processed") == 1 && count(t, c, "INBOX") == 1
	})
	if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"a1@acme.example"}) {
		t.Fatalf("requests from %v, want only a1 while t1 fails", got)
	}
	hd.setTemporary(false)
	testenv.Eventually(t, 20*time.Second, "the failing email retried", func() bool { return count(t, c, "INBOX") == 0 })
	if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"a1@acme.example", "t1@acme.example"}) {
		t.Errorf("requests from %v", got)
	}
}

// TestUIDValidityChange: the mailbox is recreated (new UIDVALIDITY) with
// an email already stored still in it; the poller notices, audits it,
// rescans, and creates nothing twice.
func TestUIDValidityChange(t *testing.T) {
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, &simpleHandler{})
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	stop := h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "first pass", func() bool { return count(t, c, "INBOX") == 0 })
	_ = stop()
	st, err := loadMailboxState(context.Background(), mailboxes(h.q), "INBOX")
	if err != nil || st == nil {
		t.Fatalf("mailbox state %v, %v", st, err)
	}

	// A restore from backup: the inbox is rebuilt and holds the email again.
	if err := srv.User.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := srv.User.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "INBOX", email("a1", "accept"))
	appendMsg(t, c, "INBOX", email("a2", "accept"))
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "rescan", func() bool { return count(t, c, "INBOX") == 0 })
	if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"a1@acme.example", "a2@acme.example"}) {
		t.Errorf("requests from %v, want a1 once and a2", got)
	}
	st2, err := loadMailboxState(context.Background(), mailboxes(h.q), "INBOX")
	if err != nil || st2 == nil || st2.UIDValidity == st.UIDValidity {
		t.Fatalf("mailbox state %+v after the change (was %+v), %v", st2, st, err)
	}
	evs, err := h.q.Audit(context.Background(), queue.AuditQuery{Kind: "system"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != "uidvalidity-changed" {
		t.Errorf("audit %+v, want one uidvalidity-changed event", evs)
	}
}

// TestMoveFallback: servers without MOVE get COPY, STORE \Deleted and
// UID EXPUNGE; without UIDPLUS a plain EXPUNGE is used only when it cannot
// remove anyone else's \Deleted message.
func TestMoveFallback(t *testing.T) {
	tests := []struct {
		name        string
		caps        imap.CapSet
		otherDelete bool // someone else flagged a message \Deleted
		wantInbox   int  // messages left in INBOX (flagged or not)
	}{
		{"uidplus", imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, true, 1},
		{"no uidplus, nothing else flagged", imap.CapSet{imap.CapIMAP4rev1: {}}, false, 0},
		{"no uidplus, another message flagged", imap.CapSet{imap.CapIMAP4rev1: {}}, true, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMem(t, tc.caps)
			h := newHarness(t, srv.Addr, &simpleHandler{})
			c := client(t, srv.Addr, testUser, testPass)
			if tc.otherDelete {
				appendMsg(t, c, "INBOX", email("x1", "accept"))
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					t.Fatal(err)
				}
				if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
					t.Fatal(err)
				}
				if err := c.Unselect().Wait(); err != nil {
					t.Fatal(err)
				}
			}
			appendMsg(t, c, "INBOX", email("a1", "accept"))
			h.run(h.poller(nil))
			testenv.Eventually(t, 20*time.Second, "copied to Processed", func() bool { return count(t, c, "Processed") == 1 })
			testenv.Eventually(t, 20*time.Second, "inbox settled", func() bool { return count(t, c, "INBOX") == tc.wantInbox })
			if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"a1@acme.example"}) {
				t.Errorf("requests from %v (a \\Deleted message must not be taken in)", got)
			}
		})
	}
}

// TestPollingWithoutIdle: without IDLE the mailbox is scanned every
// poll_interval, and new mail is found by the next scan.
func TestPollingWithoutIdle(t *testing.T) {
	srv := startMem(t, nil)
	h := newHarness(t, srv.Addr, &simpleHandler{})
	h.cfg.PollInterval = 300 * time.Millisecond
	p := h.poller(func(o *Options) { o.NoIdle = true })
	h.run(p)
	testenv.Eventually(t, 20*time.Second, "first scan", func() bool { return p.lastContact.Load() != 0 })
	c := client(t, srv.Addr, testUser, testPass)
	for _, id := range []string{"a1", "a2"} {
		appendMsg(t, c, "INBOX", email(id, "accept"))
		testenv.Eventually(t, 20*time.Second, id+" found by polling", func() bool {
			return slices.Contains(sourceIDs(h.requests()), id+"@acme.example")
		})
	}
}

// refusingSession is an imapmemserver session whose server answers NO to
// any download of one message's body, as a server does for a message it
// cannot read.
type refusingSession struct {
	imapserver.Session
	refuse imap.UID
}

func (s *refusingSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	if set, ok := numSet.(imap.UIDSet); ok && set.Contains(s.refuse) {
		for _, bs := range o.BodySection {
			if bs.Specifier == imap.PartSpecifierNone {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "cannot read message file"}
			}
		}
	}
	return s.Session.Fetch(w, numSet, o)
}

func (s *refusingSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

// TestServerRefusesOne: the server answers NO for one message's body; the
// others of the batch are taken in, and that one is set aside, described
// from its header, with the server's answer as the reason.
func TestServerRefusesOne(t *testing.T) {
	srv := imaptest.Start(t, testUser, testPass, imaptest.Options{
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}, imap.CapUIDPlus: {}},
		Wrap:   func(s imapserver.Session) imapserver.Session { return &refusingSession{Session: s, refuse: 2} },
		Logger: testLogger{t},
	})

	h := newHarness(t, srv.Addr, &simpleHandler{})
	c := client(t, srv.Addr, testUser, testPass)
	for _, id := range []string{"a1", "bad", "a2"} {
		appendMsg(t, c, "INBOX", email(id, "accept"))
	}
	h.run(h.poller(nil))
	testenv.Eventually(t, 20*time.Second, "inbox emptied", func() bool { return count(t, c, "INBOX") == 0 })
	if got := count(t, c, "Rejected"); got != 1 {
		t.Errorf("Rejected holds %d, want 1", got)
	}
	rs := h.requests()
	if got := sourceIDs(rs); !slices.Equal(got, []string{"a1@acme.example", "a2@acme.example", "bad@acme.example"}) {
		t.Fatalf("requests from %v", got)
	}
	for _, r := range rs {
		if r.SourceMessageID == "bad@acme.example" {
			if r.State != keydesk.StateRejected || !strings.Contains(r.Problem, "cannot read message file") || r.Subject != "API key bad" {
				t.Errorf("set-aside request: state %s subject %q problem %q", r.State, r.Subject, r.Problem)
			}
		}
	}
}
