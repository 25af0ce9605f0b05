package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

// killChildEnv makes the test binary a poller process that SIGKILLs itself
// once its records are stored and before it moves anything. Its value is
// "imap-address,data-dir".
const killChildEnv = "KEYDESK_INTAKE_KILL_CHILD"

func runKillChild() int {
	addr, dir, _ := strings.Cut(os.Getenv(killChildEnv), ",")
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := New(Options{
		IMAP: config.IMAP{
			MailServer: config.MailServer{Address: addr, Security: config.SecurityNone, Username: testUser,
				Password: keydesk.SecretString(testPass), Timeout: 10 * time.Second},
			Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
			PollInterval: time.Minute, MaxMessageBytes: 64 << 10,
		},
		Queue: q, Handler: &simpleHandler{}, SpoolDir: filepath.Join(dir, "spool"),
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p.beforeMove = func([]uint32) error {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	err = p.Run(ctx)
	fmt.Fprintln(os.Stderr, "poller returned:", err)
	return 3
}

// TestKilledBeforeMove: a poller process is SIGKILLed after storing two
// emails' records and before moving them. What it stored survives the kill
// on disk; the next poller, on the same data directory, finds the emails
// still in the inbox, creates nothing twice, queues no second reply, and
// moves them.
func TestKilledBeforeMove(t *testing.T) {
	srv := startMem(t, nil)
	c := client(t, srv.Addr, testUser, testPass)
	appendMsg(t, c, "INBOX", email("k1", "accept"))
	appendMsg(t, c, "INBOX", email("k2", "accept"))
	dir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+srv.Addr+","+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("poller process ended with %v, want SIGKILL:\n%s", err, out)
	}
	if got := count(t, c, "INBOX"); got != 2 {
		t.Fatalf("INBOX holds %d after the kill, want 2", got)
	}

	h := newHarness(t, srv.Addr, &simpleHandler{})
	h.q = queuetest.OpenDir(t, dir)
	before := h.requests()
	if got := sourceIDs(before); len(got) != 2 {
		t.Fatalf("requests stored before the kill: %v, want k1 and k2", got)
	}
	if got := len(h.outbox()); got != 2 {
		t.Fatalf("outbox holds %d after the kill, want 2", got)
	}
	h.run(h.poller(nil))
	eventually(t, "moved after restart", func() bool { return count(t, c, "INBOX") == 0 })
	after := h.requests()
	if len(after) != 2 || after[0].Revision != before[0].Revision || after[1].Revision != before[1].Revision {
		t.Errorf("requests %v after restart, want %v unchanged", ids(after), ids(before))
	}
	if got := len(h.outbox()); got != 2 {
		t.Errorf("outbox holds %d replies, want 2", got)
	}
}
