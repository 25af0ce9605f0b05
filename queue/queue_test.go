package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

func newRequest(key string, idx int, st keydesk.State) *keydesk.Request {
	return &keydesk.Request{
		State: st, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "sandbox-backend",
		Requester: "cto@acme.example", SourceKey: key, Index: idx,
		SourceDate: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	r1, created, err := c.Create(ctx, newRequest("a@acme.example\x00m1", 0, keydesk.StatePendingReview), "intake")
	if err != nil || !created {
		t.Fatalf("first create: created=%v err=%v", created, err)
	}
	if !keydesk.ValidRequestID(r1.ID) || r1.ID[:11] != "KR-20261127" {
		t.Fatalf("id %q: want KR-20261127-XXXX", r1.ID)
	}
	r2, created, err := c.Create(ctx, newRequest("a@acme.example\x00m1", 0, keydesk.StatePendingReview), "intake")
	if err != nil || created {
		t.Fatalf("second create: created=%v err=%v, want no-op", created, err)
	}
	if r2.ID != r1.ID || r2.Revision != r1.Revision {
		t.Fatalf("second create returned %s@%d, want %s@%d", r2.ID, r2.Revision, r1.ID, r1.Revision)
	}
	r3, created, err := c.Create(ctx, newRequest("a@acme.example\x00m1", 1, keydesk.StatePendingReview), "intake")
	if err != nil || !created || r3.ID == r1.ID {
		t.Fatalf("second request of the same email: id=%s created=%v err=%v", r3.ID, created, err)
	}
	all, err := c.List(ctx, queue.Filter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %d records, err %v; want 2", len(all), err)
	}
}

func TestCreateSaltsOnCollision(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	// Force a collision: a record already holds the ID that salt 0 gives.
	want := newRequest("b@acme.example\x00m2", 0, keydesk.StatePendingReview)
	squatter := newRequest("other\x00x", 0, keydesk.StatePendingReview)
	squatter.ID = keydesk.RequestID(want.SourceDate, want.SourceKey, 0, 0)
	if _, _, err := c.Create(ctx, squatter, "test"); err != nil {
		t.Fatal(err)
	}
	got, created, err := c.Create(ctx, want, "intake")
	if err != nil || !created {
		t.Fatalf("create after collision: created=%v err=%v", created, err)
	}
	if got.ID != keydesk.RequestID(want.SourceDate, want.SourceKey, 0, 1) {
		t.Fatalf("id %s: want the salt-1 ID", got.ID)
	}
	again, created, err := c.Create(ctx, want, "intake")
	if err != nil || created || again.ID != got.ID {
		t.Fatalf("re-create after collision: id=%s created=%v err=%v; want %s, no-op", again.ID, created, err, got.ID)
	}
}

// TestStateMachine tries every pair of states through the store: the
// allowed ones succeed, every other is refused and leaves the record as is.
func TestStateMachine(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	n := 0
	for _, from := range keydesk.States {
		for _, to := range keydesk.States {
			if from == to {
				continue
			}
			n++
			name := fmt.Sprintf("%s->%s", from, to)
			t.Run(name, func(t *testing.T) {
				r, _, err := c.Create(ctx, newRequest("sm\x00"+name, 0, from), "test")
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.Transition(ctx, r.ID, from, to, "tester", "table", nil)
				allowed := keydesk.CanTransition(from, to)
				if allowed {
					if err != nil || got.State != to {
						t.Fatalf("allowed transition failed: %v", err)
					}
					return
				}
				if !errors.Is(err, keydesk.ErrInvalidTransition) {
					t.Fatalf("forbidden transition: err = %v, want ErrInvalidTransition", err)
				}
				cur, _ := c.Get(ctx, r.ID)
				if cur.State != from || cur.Revision != r.Revision {
					t.Fatalf("forbidden transition changed the record: %s@%d", cur.State, cur.Revision)
				}
			})
		}
	}
	if n != len(keydesk.States)*(len(keydesk.States)-1) {
		t.Fatalf("tried %d pairs", n)
	}
}

func TestTransitionFromWrongState(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	r, _, _ := c.Create(ctx, newRequest("ws\x00", 0, keydesk.StateApproved), "test")
	_, err := c.Transition(ctx, r.ID, keydesk.StatePendingReview, keydesk.StateApproved, "x", "", nil)
	var te *keydesk.TransitionError
	if !errors.As(err, &te) || te.Actual != keydesk.StateApproved || !errors.Is(err, keydesk.ErrConflict) {
		t.Fatalf("err = %v; want a conflict naming the actual state", err)
	}
}

func TestRacingTransitionsOneWins(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	for round := range 10 {
		r, _, err := c.Create(ctx, newRequest(fmt.Sprintf("race\x00%d", round), 0, keydesk.StateApproved), "test")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = c.Apply(ctx, r.ID, queue.Change{
					Actor: fmt.Sprintf("worker%d", i), Action: "generate", From: keydesk.StateApproved, To: keydesk.StateGenerating,
					Revision: r.Revision,
					Mutate:   func(x *keydesk.Request) error { x.Attempt = &keydesk.Attempt{ID: fmt.Sprint(i)}; return nil },
				})
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, keydesk.ErrConflict):
			default:
				t.Fatalf("loser got %v, want ErrConflict", err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners (errs %v), want exactly 1", round, wins, errs)
		}
	}
}

func TestAuditTrailAndRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c := queuetest.OpenDir(t, dir)
	r, _, _ := c.Create(ctx, newRequest("audit\x00", 0, keydesk.StatePendingReview), "intake")
	steps := []struct {
		to    keydesk.State
		actor string
	}{{keydesk.StateApproved, "alice"}, {keydesk.StateGenerating, "batch"}, {keydesk.StateGenerated, "batch"}}
	from := r.State
	for _, s := range steps {
		if _, err := c.Transition(ctx, r.ID, from, s.to, s.actor, "step", nil); err != nil {
			t.Fatal(err)
		}
		from = s.to
	}
	if err := c.Record(ctx, "staff", keydesk.Event{Ref: "alice", Actor: "alice", Action: "login"}); err != nil {
		t.Fatal(err)
	}
	check := func(c *queue.Conn) {
		t.Helper()
		var h []queue.AuditEntry
		testenv.Eventually(t, 10*time.Second, "audit trail", func() bool {
			var err error
			h, err = c.History(ctx, r.ID, 0)
			return err == nil && len(h) == 4
		})
		want := []string{"intake:create:->pending_review", "alice:transition:pending_review->approved", "batch:transition:approved->generating", "batch:transition:generating->generated"}
		for i, e := range h {
			got := fmt.Sprintf("%s:%s:%s->%s", e.Actor, e.Action, e.From, e.To)
			if got != want[i] {
				t.Fatalf("event %d = %s, want %s", i, got, want[i])
			}
		}
		staff, err := c.Audit(ctx, queue.AuditQuery{Kind: "staff", Ref: "alice"})
		if err != nil || len(staff) != 1 || staff[0].Action != "login" {
			t.Fatalf("staff audit = %+v, %v", staff, err)
		}
		got, err := c.Get(ctx, r.ID)
		if err != nil || got.State != keydesk.StateGenerated {
			t.Fatalf("after restart: %v %v", got, err)
		}
	}
	check(c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := queuetest.OpenDir(t, dir)
	check(c2)
}

func TestLeaseTakeover(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	l, err := c.Acquire(ctx, "poller-INBOX", "instance-a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Acquire(ctx, "poller-INBOX", "instance-b", time.Second)
	var held *queue.LeaseHeldError
	if !errors.As(err, &held) || held.Holder != "instance-a" {
		t.Fatalf("second acquire: %v; want held by instance-a", err)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	// instance-a dies: it stops renewing. b takes over once the TTL passes.
	var lb *queue.Lease
	testenv.Eventually(t, 10*time.Second, "takeover", func() bool {
		lb, err = c.Acquire(ctx, "poller-INBOX", "instance-b", time.Second)
		return err == nil
	})
	if err := l.Renew(ctx); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("old holder renew: %v, want ErrLeaseLost", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, "poller-INBOX", "instance-c", time.Second); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

func TestRunExclusiveRefusesSecond(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.RunExclusive(ctx, "batch", "a", 2*time.Second, func(ctx context.Context) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	err := c.RunExclusive(ctx, "batch", "b", 2*time.Second, func(context.Context) error { return nil })
	if !errors.Is(err, queue.ErrLeaseHeld) {
		t.Fatalf("second batch: %v, want ErrLeaseHeld", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.RunExclusive(ctx, "batch", "b", 2*time.Second, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
}

// TestRetention: what only guards against redelivery expires; the request
// records and the audit trail never do.
func TestRetention(t *testing.T) {
	c := queuetest.Open(t)
	ctx := context.Background()
	for _, tt := range []struct {
		stream string
		maxAge time.Duration
	}{
		{"KV_" + queue.BucketDeliveries, 30 * 24 * time.Hour},
		{queue.StreamDeadLetter, 30 * 24 * time.Hour},
		{"KV_" + queue.BucketRequests, 0},
		{queue.StreamAudit, 0},
		{"KV_" + queue.BucketIntake, 0},
	} {
		s, err := rawJS(c).Stream(ctx, tt.stream)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != tt.maxAge {
			t.Errorf("%s keeps messages for %s, want %s", tt.stream, got, tt.maxAge)
		}
	}
}

// TestLeaderReads: every bucket's reads go to the stream leader, never to
// a replica that may be a write behind.
func TestLeaderReads(t *testing.T) {
	q := queuetest.Open(t)
	ctx := context.Background()
	_, js := q.Raw()
	for _, b := range []string{queue.BucketRequests, queue.BucketLocks, queue.BucketBatches, queue.BucketDeliveries, queue.BucketIntake, queue.BucketSessions, queue.BucketThreads} {
		s, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		if s.CachedInfo().Config.AllowDirect {
			t.Errorf("bucket %s answers reads from any replica (allow_direct)", b)
		}
	}
}
