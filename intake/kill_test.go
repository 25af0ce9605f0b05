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
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

// killChildEnv makes the test binary a poller process that SIGKILLs
// itself. Its value is "when,imap-address,data-dir", when being one of
//
//	before-move  once its records are stored and before it moves anything
//	kill-mail    when the handler is given an email whose body is "kill"
//
// Before killing itself it says so on stderr (killedMark), so that a test
// tells its kill from one by the test's own timeout.
const killChildEnv = "KEYDESK_INTAKE_KILL_CHILD"

const killedMark = "child: killing myself"

func runKillChild() int {
	when, rest, _ := strings.Cut(os.Getenv(killChildEnv), ",")
	addr, dir, _ := strings.Cut(rest, ",")
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := New(Options{
		IMAP: Mailbox{
			MailServer: mailauth.MailServer{Address: addr, Security: mailauth.SecurityNone, Username: testUser,
				Password: keydesk.SecretString(testPass), Timeout: 10 * time.Second},
			Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
			PollInterval: time.Minute, MaxMessageBytes: 64 << 10,
		},
		Queue: q, Handler: &simpleHandler{kill: killSelf}, SpoolDir: filepath.Join(dir, "spool"),
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch when {
	case "before-move":
		p.beforeMove = func([]uint32) error { killSelf(); return nil }
	case "kill-mail":
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown %q\n", killChildEnv, when)
		return 2
	}
	err = p.Run(ctx)
	fmt.Fprintln(os.Stderr, "poller returned:", err)
	return 3
}

func killSelf() {
	fmt.Fprintln(os.Stderr, killedMark)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// runKilled runs a poller process (runKillChild) on the IMAP server addr
// and the data directory dir, and fails the test unless it killed itself.
func runKilled(t *testing.T, when, addr, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+when+","+addr+","+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL || !strings.Contains(string(out), killedMark) {
		t.Fatalf("poller process ended with %v, want it to kill itself (%s):\n%s", err, when, out)
	}
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
	runKilled(t, "before-move", srv.Addr, dir)
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
	testenv.Eventually(t, 20*time.Second, "moved after restart", func() bool { return count(t, c, "INBOX") == 0 })
	after := h.requests()
	if len(after) != 2 || after[0].Revision != before[0].Revision || after[1].Revision != before[1].Revision {
		t.Errorf("requests %v after restart, want %v unchanged", ids(after), ids(before))
	}
	if got := len(h.outbox()); got != 2 {
		t.Errorf("outbox holds %d replies, want 2", got)
	}
}
