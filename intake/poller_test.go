package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/imaptest"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

const (
	testUser = "support@buildmarkets.ai"
	testPass = "correct horse"
)

// startMem starts go-imap's in-memory server with the given capabilities
// (nil: the IMAP4rev2 set, which includes MOVE and UIDPLUS).
func startMem(t *testing.T, caps imap.CapSet) *imaptest.Server {
	t.Helper()
	return imaptest.Start(t, testUser, testPass, imaptest.Options{Caps: caps, Logger: testLogger{t}})
}

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, args ...any) {}

// client logs in to addr as a second, independent IMAP client: what a
// person looking at the mailbox would see.
func client(t *testing.T, addr, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func appendMsg(t *testing.T, c *imapclient.Client, mailbox string, raw []byte) {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// count returns how many messages a mailbox holds, or -1 if it does not exist.
func count(t *testing.T, c *imapclient.Client, mailbox string) int {
	t.Helper()
	d, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return -1
		}
		t.Fatal(err)
	}
	return int(*d.NumMessages)
}

// email builds a test message; body says what the test handler does.
func email(id, body string) []byte {
	return []byte("From: Ada <ada@acme.example>\r\n" +
		"To: support@buildmarkets.ai\r\n" +
		"Subject: API key " + id + "\r\n" +
		"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n" +
		"Message-ID: <" + id + "@acme.example>\r\n" +
		"\r\n" + body + "\r\n")
}

type harness struct {
	t       *testing.T
	q       *queue.Conn
	metrics *metrics.Registry
	cfg     Mailbox
	handler Handler
	spool   string
}

func newHarness(t *testing.T, addr string, h Handler) *harness {
	cfg := Mailbox{
		MailServer: mailauth.MailServer{
			Address: addr, Security: mailauth.SecurityNone, Username: testUser,
			Password: keydesk.SecretString(testPass), Timeout: 10 * time.Second,
		},
		Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
		PollInterval: 5 * time.Second, MaxMessageBytes: 64 << 10,
	}
	return &harness{t: t, q: queuetest.Open(t), metrics: metrics.New(), cfg: cfg, handler: h, spool: t.TempDir()}
}

func (h *harness) poller(mut func(*Options)) *Poller {
	h.t.Helper()
	o := Options{
		IMAP: h.cfg, Queue: h.q, Handler: h.handler, SpoolDir: h.spool, Metrics: h.metrics,
		Log:        slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxBackoff: 200 * time.Millisecond,
	}
	if mut != nil {
		mut(&o)
	}
	p, err := New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// run runs p until the test ends (or stop is called) and returns a
// function that stops it and returns Run's error.
func (h *harness) run(p *Poller) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("poller did not stop within 30s")
			}
		})
		return err
	}
	h.t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
			h.t.Errorf("poller: %v", err)
		}
	})
	return stop
}

func (h *harness) requests() []*keydesk.Request {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := h.q.List(ctx, queue.Filter{})
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

func (h *harness) records() []*Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := Records(ctx, h.q)
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

// outbox returns the messages waiting in the outbox.
func (h *harness) outbox() []*keydesk.Outgoing {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.q.Outbox(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// simpleHandler is a stand-in for the parser where a test is about the
// poller's own behaviour with a given decision: the body's first word says
// what to decide ("accept", "reject", "panic", "garbage", "temporary",
// "kill").
type simpleHandler struct {
	mu        sync.Mutex
	temporary bool // "temporary" mail fails while set
	seen      []uint32
	// kill is called for "kill" mail: a poller process (runKillChild)
	// ends itself there. Without it, "kill" mail is an error.
	kill func()
}

func (s *simpleHandler) setTemporary(v bool) {
	s.mu.Lock()
	s.temporary = v
	s.mu.Unlock()
}

func (s *simpleHandler) Handle(_ context.Context, m *Message) (*Decision, error) {
	s.mu.Lock()
	s.seen = append(s.seen, m.UID)
	temp := s.temporary
	s.mu.Unlock()
	r, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	h := parseHead(raw)
	_, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	word := strings.Fields(string(body) + " none")[0]
	key := keydesk.SourceKey(h.from, h.messageID, raw)
	d := &Decision{Outcome: word, Disposition: Processed, SourceKey: key, MessageID: h.messageID, From: h.from, Subject: h.subject}
	req := &keydesk.Request{State: keydesk.StatePendingReview, Requester: h.from, SourceMessageID: h.messageID,
		SourceDate: h.date, SourceKey: key, Environment: keydesk.Sandbox, Subject: h.subject}
	switch word {
	case "accept":
		d.Requests = []*keydesk.Request{req}
		d.Reply = &keydesk.Outgoing{ID: "ack-" + h.messageID, Kind: keydesk.KindAcknowledgement, To: []string{h.from}, Subject: "Re: " + h.subject, Text: "received"}
	case "reject":
		req.State = keydesk.StateRejected
		d.Requests = []*keydesk.Request{req}
		d.Disposition = Rejected
	case "panic":
		panic("parser bug on " + h.messageID)
	case "garbage":
		return nil, errors.New("no MIME structure")
	case "kill":
		if s.kill == nil {
			return nil, errors.New("an email that kills the process was handed to the handler")
		}
		s.kill()
	case "temporary":
		if temp {
			return nil, fmt.Errorf("registry unavailable: %w", ErrTemporary)
		}
		d.Requests = []*keydesk.Request{req}
	}
	return d, nil
}

func sourceIDs(rs []*keydesk.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.SourceMessageID)
	}
	slices.Sort(out)
	return out
}

func TestMain(m *testing.M) {
	if os.Getenv(killChildEnv) != "" {
		os.Exit(runKillChild())
	}
	os.Exit(m.Run())
}

var errKilled = errors.New("killed between enqueue and move")

func secretString(s string) keydesk.Secret { return keydesk.SecretString(s) }
