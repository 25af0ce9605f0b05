package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// inboxServer starts a JetStream server with two users: "role", which may
// subscribe to _INBOX_role.> only (as a role user of deploy/nats), and
// "watcher", which may subscribe to everything.
func inboxServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "inbox-test", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{
			{Username: "role", Password: "role-pw", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{">"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_role.>"}},
			}},
			{Username: "watcher", Password: "watcher-pw"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return srv
}

func userURL(srv *server.Server, user, pw string) string {
	u, _ := url.Parse(srv.ClientURL())
	u.User = url.UserPassword(user, pw)
	return u.String()
}

// replyWatcher sees every message on the server in the order the server
// routed it, and counts those on each inbox prefix.
type replyWatcher struct {
	nc *nats.Conn
	mu sync.Mutex
	// counts by prefix: "_INBOX_role" and "_INBOX".
	counts map[string]int
	marks  map[string]bool
	nmark  int
}

func watchReplies(t *testing.T, srv *server.Server) *replyWatcher {
	t.Helper()
	nc, err := nats.Connect(userURL(srv, "watcher", "watcher-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &replyWatcher{nc: nc, counts: map[string]int{}, marks: map[string]bool{}}
	// One subscription: its handler gets messages in the server's order.
	if _, err := nc.Subscribe(">", func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case strings.HasPrefix(m.Subject, "mark."):
			w.marks[m.Subject] = true
		case strings.HasPrefix(m.Subject, "_INBOX_role."):
			w.counts["_INBOX_role"]++
		case strings.HasPrefix(m.Subject, "_INBOX."):
			w.counts["_INBOX"]++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// settle returns the counts once everything routed before it was seen:
// a reply reached the watcher before it reached the client that asked.
func (w *replyWatcher) settle(t *testing.T) map[string]int {
	t.Helper()
	w.nmark++
	subj := fmt.Sprintf("mark.%d", w.nmark)
	if err := w.nc.Publish(subj, nil); err != nil {
		t.Fatal(err)
	}
	var out map[string]int
	testenv.Eventually(t, 5*time.Second, "the watcher to see its mark "+subj, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		out = map[string]int{"_INBOX_role": w.counts["_INBOX_role"], "_INBOX": w.counts["_INBOX"]}
		return w.marks[subj]
	})
	return out
}

// TestInboxPrefix opens the queue as a user that may subscribe to its own
// inbox prefix only, and checks that everything the roles do — request
// records, KV get/create/watch, listing, the audit trail, raw mail, the
// outbox — gets its replies there, and none on _INBOX.
func TestInboxPrefix(t *testing.T) {
	srv := inboxServer(t)
	w := watchReplies(t, srv)
	ctx := context.Background()

	q, err := queue.Open(ctx, queue.Options{URL: userURL(srv, "role", "role-pw"), InboxPrefix: "_INBOX_role", Name: "inbox test"})
	if err != nil {
		t.Fatalf("open with an inbox prefix: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	violations := make(chan error, 16)
	rawNC(q).SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case violations <- err:
		default:
		}
	})

	var seed *keydesk.Request
	const mail = "From: cto@acme.example\r\n\r\nhello\r\n"
	tests := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"create a request", func(ctx context.Context) (err error) {
			seed, _, err = q.Create(ctx, newRequest("cto@acme.example\x00inbox-1", 0, keydesk.StatePendingReview), "intake")
			return err
		}},
		{"get a request", func(ctx context.Context) error {
			_, err := q.Get(ctx, seed.ID)
			return err
		}},
		{"transition a request", func(ctx context.Context) error {
			_, err := q.Transition(ctx, seed.ID, keydesk.StatePendingReview, keydesk.StateRejected, "staff", "inbox test", nil)
			return err
		}},
		{"list requests", func(ctx context.Context) error {
			all, err := q.List(ctx, queue.Filter{})
			if err == nil && len(all) != 1 {
				err = fmt.Errorf("listed %d requests, want 1", len(all))
			}
			return err
		}},
		{"read a request's history", func(ctx context.Context) error {
			h, err := q.History(ctx, seed.ID, 5*time.Second)
			if err == nil && len(h) != 2 {
				err = fmt.Errorf("history has %d events, want 2 (created, rejected)", len(h))
			}
			return err
		}},
		{"KV create and get", func(ctx context.Context) error {
			kv, err := rawJS(q).KeyValue(ctx, queue.BucketSessions)
			if err != nil {
				return err
			}
			if _, err := kv.Create(ctx, "s1", []byte("v1")); err != nil {
				return err
			}
			e, err := kv.Get(ctx, "s1")
			if err == nil && string(e.Value()) != "v1" {
				err = fmt.Errorf("got %q, want v1", e.Value())
			}
			return err
		}},
		{"KV watch", func(ctx context.Context) error {
			kv, err := rawJS(q).KeyValue(ctx, queue.BucketIntake)
			if err != nil {
				return err
			}
			wt, err := kv.Watch(ctx, "watched.>", jetstream.UpdatesOnly())
			if err != nil {
				return err
			}
			defer func() { _ = wt.Stop() }()
			if _, err := kv.Put(ctx, "watched.a", []byte("x")); err != nil {
				return err
			}
			for {
				select {
				case e := <-wt.Updates():
					if e != nil && e.Key() == "watched.a" {
						return nil
					}
				case <-ctx.Done():
					return fmt.Errorf("the watcher saw no update: %w", ctx.Err())
				}
			}
		}},
		{"store and read raw mail", func(ctx context.Context) error {
			if err := q.PutMail(ctx, "inbox-mail", strings.NewReader(mail), 1<<20); err != nil {
				return err
			}
			rc, err := q.OpenMail(ctx, "inbox-mail")
			if err != nil {
				return err
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(b, []byte(mail)) {
				err = fmt.Errorf("read back %q, want %q", b, mail)
			}
			return err
		}},
		{"enqueue and consume the outbox", func(ctx context.Context) error {
			if err := q.Enqueue(ctx, &keydesk.Outgoing{ID: "inbox-out-1", Kind: keydesk.KindAlert, To: []string{"support@buildmarkets.example"}, Subject: "s", Text: "t"}); err != nil {
				return err
			}
			cons, err := rawJS(q).CreateOrUpdateConsumer(ctx, queue.StreamOutbox, jetstream.ConsumerConfig{Durable: "inbox-test", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				return err
			}
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				return err
			}
			m, ok := <-batch.Messages()
			if !ok {
				return fmt.Errorf("fetched nothing: %v", batch.Error())
			}
			o, err := queue.DecodeOutgoing(m.Data())
			if err != nil {
				return err
			}
			if o.ID != "inbox-out-1" {
				return fmt.Errorf("fetched %s, want inbox-out-1", o.ID)
			}
			return m.DoubleAck(ctx)
		}},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before := w.settle(t)
			opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := tc.op(opCtx); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			select {
			case err := <-violations:
				t.Fatalf("%s: the server refused part of it: %v", tc.name, err)
			default:
			}
			after := w.settle(t)
			if n := after["_INBOX_role"] - before["_INBOX_role"]; n == 0 {
				t.Errorf("%s: no reply on _INBOX_role.>", tc.name)
			}
			if n := after["_INBOX"] - before["_INBOX"]; n != 0 {
				t.Errorf("%s: %d replies on _INBOX.>, want none", tc.name, n)
			}
		})
	}
}

// TestInboxPrefixRefusedWithoutIt checks the test's premise: the same user
// without the prefix is refused by the server (its replies would go to
// _INBOX), so TestInboxPrefix passing means the prefix is used throughout.
func TestInboxPrefixRefusedWithoutIt(t *testing.T) {
	srv := inboxServer(t)
	// The refusal is reported asynchronously: Open's first JetStream
	// request gets no reply and times out.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{URL: userURL(srv, "role", "role-pw"), Name: "inbox test"})
	if err == nil {
		_ = q.Close()
		t.Fatal("a user that may subscribe to _INBOX_role.> only opened the queue with _INBOX replies")
	}
}

func TestInboxPrefixValidation(t *testing.T) {
	tests := []struct {
		prefix, wantErr string
	}{
		{"_INBOX_intake", ""},
		{"_INBOX.intake", ""},
		{"keydesk.inbox.review", ""},
		{"_INBOX.>", "wildcard"},
		{"_INBOX_*", "wildcard"},
		{"_INBOX.", "empty token"},
		{".inbox", "empty token"},
		{"a..b", "empty token"},
		{"_INBOX intake", "space"},
		{"$JS.inbox", "reserves"},
		{strings.Repeat("x", queue.MaxInboxPrefix+1), "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			err := queue.ValidInboxPrefix(tc.prefix)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("%q refused: %v", tc.prefix, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("%q: err %v, want one saying %q", tc.prefix, err, tc.wantErr)
			}
			// Open refuses it before connecting anywhere.
			_, err = queue.Open(context.Background(), queue.Options{URL: "nats://127.0.0.1:1", InboxPrefix: tc.prefix})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.Is(err, nats.ErrNoServers) {
				t.Fatalf("Open with %q: err %v, want one saying %q", tc.prefix, err, tc.wantErr)
			}
		})
	}
}
