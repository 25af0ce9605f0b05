package intake

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// dovecotHarness runs the poller against a real Dovecot.
func dovecotHarness(t *testing.T) (*dovecottest.Server, *harness) {
	t.Helper()
	testenv.Short(t)
	d := dovecottest.Start(t)
	h := newHarness(t, d.Addr, &simpleHandler{})
	h.cfg.Username, h.cfg.Password = d.User, secretString(d.Password)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log())
		}
	})
	return d, h
}

func dovecotClient(t *testing.T, d *dovecottest.Server) *imapclient.Client {
	return client(t, d.Addr, d.User, d.Password)
}

// allFiled waits until n emails are in Processed and Rejected and none in
// the inbox. An empty inbox alone proves nothing: Dovecot may answer
// STATUS from an index another session is still building, and say 0
// before the poller has moved anything.
func allFiled(t *testing.T, c *imapclient.Client, n int) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "every email filed", func() bool {
		return count(t, c, "Processed")+count(t, c, "Rejected") == n && count(t, c, "INBOX") == 0
	})
}

// TestDovecotIdleAndRestart: new mail reaches the queue through IDLE;
// Dovecot restarted while the poller is idling is reconnected to and mail
// delivered while it was down is taken in, none lost and none twice.
func TestDovecotIdleAndRestart(t *testing.T) {
	d, h := dovecotHarness(t)
	h.cfg.PollInterval = time.Hour // only IDLE can explain a quick pick-up
	if err := d.Deliver("INBOX", email("a1", "accept")); err != nil {
		t.Fatal(err)
	}
	p := h.poller(nil)
	h.run(p)
	testenv.Eventually(t, 20*time.Second, "backlog taken in", func() bool { return len(h.requests()) == 1 })

	start := time.Now()
	if err := d.Deliver("INBOX", email("a2", "accept")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "new mail taken in through IDLE", func() bool { return len(h.requests()) == 2 })
	t.Logf("delivery to queued: %s", time.Since(start))

	// Restart mid-IDLE, with mail arriving while the server is down.
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver("INBOX", email("a3", "accept")); err != nil {
		t.Fatal(err)
	}
	if err := d.Run(); err != nil {
		t.Fatal(err)
	}
	reconnects := h.metrics.Counter("keydesk_imap_reconnects_total", "")
	testenv.Eventually(t, 20*time.Second, "mail delivered during the outage taken in", func() bool { return len(h.requests()) == 3 })
	if reconnects.Value() < 1 {
		t.Errorf("reconnects_total = %v, want at least 1", reconnects.Value())
	}
	c := dovecotClient(t, d)
	testenv.Eventually(t, 20*time.Second, "inbox emptied", func() bool { return count(t, c, "INBOX") == 0 })
	if got := count(t, c, "Processed"); got != 3 {
		t.Errorf("Processed holds %d, want 3", got)
	}
	if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"a1@acme.example", "a2@acme.example", "a3@acme.example"}) {
		t.Errorf("requests from %v", got)
	}
	if got := len(h.outbox()); got != 3 {
		t.Errorf("outbox holds %d replies, want 3", got)
	}
	if err := p.Ready(context.Background()); err != nil {
		t.Errorf("ready: %v", err)
	}
}

// TestDovecotBadMail: on a real server, a poison email and an oversized one
// are set aside into Rejected with their reasons, and the email after them
// is processed.
func TestDovecotBadMail(t *testing.T) {
	d, h := dovecotHarness(t)
	h.cfg.HardMaxMessageBytes = 128 << 10
	for _, m := range [][]byte{
		email("p1", "panic"),
		email("big", "accept\r\n"+strings.Repeat("y", 200<<10)),
		email("a1", "accept"),
	} {
		if err := d.Deliver("INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
	h.run(h.poller(nil))
	c := dovecotClient(t, d)
	allFiled(t, c, 3)
	if got := count(t, c, "Rejected"); got != 2 {
		t.Errorf("Rejected holds %d, want 2", got)
	}
	if got := count(t, c, "Processed"); got != 1 {
		t.Errorf("Processed holds %d, want 1", got)
	}
	outcomes := map[string]string{}
	for _, r := range h.records() {
		outcomes[r.MessageID] = r.Outcome
	}
	want := map[string]string{"p1@acme.example": "malformed", "big@acme.example": "too-large", "a1@acme.example": "accept"}
	for id, o := range want {
		if outcomes[id] != o {
			t.Errorf("%s: outcome %q, want %q", id, outcomes[id], o)
		}
	}
}

// TestDovecotCrashAndUIDValidity: the poller dies after storing and before
// moving; then the mailbox's UIDVALIDITY changes (an index rebuilt). The
// next poller rescans and creates nothing twice.
func TestDovecotCrashAndUIDValidity(t *testing.T) {
	d, h := dovecotHarness(t)
	for _, id := range []string{"a1", "a2"} {
		if err := d.Deliver("INBOX", email(id, "accept")); err != nil {
			t.Fatal(err)
		}
	}
	p := h.poller(nil)
	p.beforeMove = func([]uint32) error { return errKilled }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != errKilled {
		t.Fatalf("Run: %v", err)
	}
	before := h.requests()
	if len(before) != 2 {
		t.Fatalf("%d requests stored before the crash, want 2", len(before))
	}
	if err := d.ChangeUIDValidity(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	h.run(h.poller(nil))
	c := dovecotClient(t, d)
	allFiled(t, c, 2)
	after := h.requests()
	if len(after) != 2 || after[0].Revision != before[0].Revision || after[1].Revision != before[1].Revision {
		t.Errorf("requests %v after restart, want the same as %v, unchanged", ids(after), ids(before))
	}
	if got := len(h.outbox()); got != 2 {
		t.Errorf("outbox holds %d replies, want 2", got)
	}
	evs, err := h.q.Audit(ctx, queue.AuditQuery{Kind: "system"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Action != "uidvalidity-changed" {
		t.Errorf("audit %+v, want one uidvalidity-changed event", evs)
	}
}

// TestDovecotUnreadableFile: the server cannot read one message's file
// (damaged storage); the poller sets that email aside with the server's
// answer as the reason and takes in the emails around it.
func TestDovecotUnreadableFile(t *testing.T) {
	d, h := dovecotHarness(t)
	if err := d.Deliver("INBOX", email("a1", "accept")); err != nil {
		t.Fatal(err)
	}
	bad, err := d.DeliverFile("INBOX", email("broken", "accept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver("INBOX", email("a2", "accept")); err != nil {
		t.Fatal(err)
	}
	h.run(h.poller(nil))
	c := dovecotClient(t, d)
	allFiled(t, c, 3)
	if got := count(t, c, "Rejected"); got != 1 {
		t.Errorf("Rejected holds %d, want 1", got)
	}
	// The set-aside one has no Message-ID: nothing of it could be read.
	if got := sourceIDs(h.requests()); !slices.Equal(got, []string{"", "a1@acme.example", "a2@acme.example"}) {
		t.Errorf("requests from %q, want a1, a2 and the set-aside one", got)
	}
	var found bool
	for _, r := range h.records() {
		if r.Disposition == string(Rejected) {
			found = true
			if r.Outcome != "malformed" || !strings.Contains(r.Reason, "connection to the mail server broke") {
				t.Errorf("record %+v", r)
			}
		}
	}
	if !found {
		t.Error("no intake record for the unreadable email")
	}
}
