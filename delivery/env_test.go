package delivery

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func startMailServer(t testing.TB) *smtptest.Server {
	t.Helper()
	return smtptest.Start(t, smtptest.Options{Domain: "mx.test", MaxMessageBytes: 30 << 20})
}

// env is a delivery role on a real JetStream and a real SMTP server.
type env struct {
	t       testing.TB
	q       *queue.Conn
	dataDir string
	mail    *smtptest.Server
	reg     *keydesk.Registry
	metrics *metrics.Registry
	logs    *testenv.Buffer
	opts    Options
}

const (
	contactAddr   = "sec@acme.example"
	requesterAddr = "cto@acme.example"
	supportAddr   = "support@buildmarkets.ai"
)

func testPartner() *keydesk.Partner {
	return &keydesk.Partner{
		ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: contactAddr, Fingerprint: "ABCD"},
	}
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dataDir: dir, q: queuetest.OpenDir(t, dir), mail: startMailServer(t), metrics: metrics.New(), logs: &testenv.Buffer{}}
	e.reg = &keydesk.Registry{Partners: []*keydesk.Partner{testPartner()}}
	sender, err := NewSMTP(SMTPOptions{
		Server:   mailauth.MailServer{Address: e.mail.Addr, Security: mailauth.SecurityNone, Auth: "none", Timeout: 10 * time.Second},
		HeloName: "keydesk.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.opts = Options{
		Queue: e.q, Sender: sender, From: "Buildmarkets Support <support@buildmarkets.ai>", SupportAddress: supportAddr,
		Partners: func() *keydesk.Registry { return e.reg }, Templates: templates.MustLoadEmbedded(),
		RetryDelays: []time.Duration{20 * time.Millisecond}, AckWait: time.Second,
		Holder: "test-1", Metrics: e.metrics,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return e
}

// start runs a delivery service with opts until the test ends (or stop).
func (e *env) start(opts Options) (stop func()) {
	e.t.Helper()
	s, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					e.t.Errorf("delivery run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("delivery did not stop within 30s")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// generated stores a request in state generated with attempt att.
func (e *env) generated(key, att string) *keydesk.Request {
	e.t.Helper()
	r, _, err := e.q.Create(context.Background(), &keydesk.Request{
		State: keydesk.StateGenerated, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeMarketdataRead}, Label: "sandbox-backend",
		Requester: requesterAddr, SourceKey: key, SourceMessageID: "<req-" + key + "@acme.example>",
		SourceDate: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
		Attempt:    &keydesk.Attempt{ID: att, StartedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)},
		KeyID:      "key_0123", APIKey: "bm_live_public",
	}, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// fakeEntity is a PGP/MIME-shaped entity whose "ciphertext" is a marker.
func fakeEntity(marker string) []byte {
	return []byte("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n--b1\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\n\n" +
		"-----BEGIN PGP MESSAGE-----\n\n" + marker + "\n-----END PGP MESSAGE-----\n\n--b1--\n")
}

func keyDelivery(r *keydesk.Request, to string) *keydesk.Outgoing {
	return &keydesk.Outgoing{
		ID: r.ID + ".key." + r.Attempt.ID, Kind: keydesk.KindKeyDelivery, RequestID: r.ID, Partner: r.Partner,
		AttemptID: r.Attempt.ID, To: []string{to}, Subject: "Your Buildmarkets API key", Entity: fakeEntity("ciphertext-of-" + r.ID),
	}
}

func (e *env) enqueue(o *keydesk.Outgoing) {
	e.t.Helper()
	if err := e.q.Enqueue(context.Background(), o); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) state(id string) *keydesk.Request {
	e.t.Helper()
	r, err := e.q.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) waitState(id string, want keydesk.State) *keydesk.Request {
	e.t.Helper()
	testenv.Eventually(e.t, 20*time.Second, "request "+id+" to be "+string(want), func() bool {
		return e.state(id).State == want
	})
	return e.state(id)
}

// parse reads a received message's header and body.
func parse(t *testing.T, r smtptest.Message) *mail.Message {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(r.Data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, r.Data)
	}
	return m
}

func body(t *testing.T, m *mail.Message) string {
	t.Helper()
	b, err := io.ReadAll(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(s string, subs ...string) (missing []string) {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			missing = append(missing, sub)
		}
	}
	return missing
}

// thread waits for the request's conversation to hold n entries and
// returns them, failing if it ever holds more.
func (e *env) thread(id string, n int) []keydesk.ThreadEntry {
	e.t.Helper()
	var got []keydesk.ThreadEntry
	testenv.Eventually(e.t, 20*time.Second, fmt.Sprintf("%d entries in the conversation of %s", n, id), func() bool {
		var err error
		if got, err = e.q.Thread(context.Background(), id); err != nil {
			e.t.Fatal(err)
		}
		return len(got) >= n
	})
	if len(got) != n {
		e.t.Fatalf("the conversation of %s holds %d entries, want %d: %+v", id, len(got), n, got)
	}
	return got
}
