// Package deploy holds no code: its tests check that the deployment kit in
// this directory works — the NATS configs start a real 3-node cluster that
// survives losing its stream leader and enforces each role's permissions,
// the example configs pass `keydesk check`, the systemd unit verifies, and
// every YAML file parses.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/internal/natstest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/notify"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startCluster starts deploy/nats as a real 3-node cluster with a fresh CA
// and one client certificate per role.
func startCluster(t *testing.T) (*natstest.Cluster, string) {
	t.Helper()
	testenv.Short(t)
	tlsDir := t.TempDir()
	if err := natstest.WriteCerts(tlsDir, natstest.CertOptions{}); err != nil {
		t.Fatal(err)
	}
	c := natstest.StartCluster(t, natstest.ClusterOptions{ConfigDir: "nats", TLSDir: tlsDir})
	return c, tlsDir
}

// openAs opens the queue as one role's NATS user, with the role's inbox
// prefix (the only replies its user may subscribe to). Only admin sets up.
func openAs(t *testing.T, c *natstest.Cluster, tlsDir, role string) (*queue.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{
		URL: c.URLs(), Replicas: 3, Name: "test " + role,
		TLSCAFile:   filepath.Join(tlsDir, "ca.pem"),
		TLSCert:     filepath.Join(tlsDir, role+".pem"),
		TLSKey:      filepath.Join(tlsDir, role+"-key.pem"),
		SkipSetup:   role != "admin",
		InboxPrefix: "_INBOX_" + role,
	})
	if err == nil {
		t.Cleanup(func() { _ = q.Close() })
	}
	return q, err
}

func newRequest(tag string, i int) *keydesk.Request {
	return &keydesk.Request{
		State: keydesk.StatePendingReview, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "failover",
		Requester: "cto@acme.example", SourceKey: fmt.Sprintf("cto@acme.example\x00%s-%d@acme.example", tag, i),
		SourceDate: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
	}
}

// TestCluster starts deploy/nats as a real 3-node cluster, checks each
// role's permissions, then kills the leader of the requests stream.
func TestCluster(t *testing.T) {
	c, tlsDir := startCluster(t)
	t.Run("permissions", func(t *testing.T) { testRolePermissions(t, c, tlsDir) })
	t.Run("leader killed", func(t *testing.T) { testLeaderKill(t, c, tlsDir) })
	t.Run("staff actions during elections", func(t *testing.T) { testActionsDuringElection(t, c, tlsDir) })
}

// testActionsDuringElection takes staff actions as the review role does
// (an approval's compare-and-set, a batch request and its audit event),
// each with the review API's deadline, while the leaders of the streams
// they write are killed: every action succeeds within its deadline, as
// the queue tries again while the cluster elects, and each lands once.
func testActionsDuringElection(t *testing.T, c *natstest.Cluster, tlsDir string) {
	admin, err := openAs(t, c, tlsDir, "admin")
	if err != nil {
		t.Fatal(err)
	}
	rv, err := openAs(t, c, tlsDir, "review")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 30
	var ids []string
	for i := range n {
		r, _, err := admin.Create(ctx, newRequest("election", i), "intake")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	leader := func(stream string) string {
		t.Helper()
		var name string
		testenv.Eventually(t, 60*time.Second, "a leader of "+stream, func() bool {
			s, err := rawJS(admin).Stream(ctx, stream)
			if err != nil {
				return false
			}
			info, err := s.Info(ctx)
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
				return false
			}
			name = info.Cluster.Leader
			return true
		})
		return name
	}
	var killed []string
	batches := 0
	var slowest time.Duration
	for i, id := range ids {
		switch i {
		case 8:
			killed = append(killed, leader("KV_"+queue.BucketRequests))
			c.Kill(killed[len(killed)-1])
		case 16:
			c.Restart(killed[0])
			c.WaitHealthy(60 * time.Second)
			killed = append(killed, leader("KV_"+queue.BucketBatches))
			c.Kill(killed[len(killed)-1])
		}
		t0 := time.Now()
		actx, cancel := context.WithTimeout(ctx, 15*time.Second) // review's RequestTimeout
		_, err := rv.Apply(actx, id, queue.Change{Actor: "alice", Action: "approve", From: keydesk.StatePendingReview, To: keydesk.StateApproved,
			Mutate: func(r *keydesk.Request) error {
				r.Approvals = append(r.Approvals, keydesk.Approval{By: "alice", At: time.Now()})
				return nil
			}})
		if err != nil {
			cancel()
			t.Fatalf("approve %d of %d (killed %v): %v", i+1, n, killed, err)
		}
		if i%3 == 0 {
			b, err := rv.RequestBatch(actx, "alice")
			if err != nil {
				cancel()
				t.Fatalf("batch request %d (killed %v): %v", i, killed, err)
			}
			if err := rv.Record(actx, "staff", keydesk.Event{Ref: b.ID, Actor: "alice", Action: "run-batch"}); err != nil {
				cancel()
				t.Fatalf("audit of batch request %d (killed %v): %v", i, killed, err)
			}
			batches++
		}
		cancel()
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("%d approvals and %d batch requests through the loss of %v; slowest action %s", n, batches, killed, slowest.Round(time.Millisecond))
	c.Restart(killed[1])
	c.WaitHealthy(60 * time.Second)

	// Each approval landed once: two revisions per record (create, approve).
	kvs, err := rawJS(admin).Stream(ctx, "KV_"+queue.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := kvs.Info(ctx, jetstream.WithSubjectFilter("$KV."+queue.BucketRequests+".>"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got := info.State.Subjects["$KV."+queue.BucketRequests+"."+id]; got != 2 {
			t.Errorf("request %s has %d revisions, want 2 (created, approved once)", id, got)
		}
	}
	var list []*keydesk.Batch
	testenv.Eventually(t, 30*time.Second, "the batch records", func() bool {
		list, err = admin.ListBatches(ctx)
		return err == nil
	})
	if len(list) != batches {
		t.Errorf("%d batch records, want %d", len(list), batches)
	}
}

// testLeaderKill creates request records on a 3-replica
// cluster, kills the requests stream's leader with SIGKILL part way, and
// checks that every record is there exactly once: none lost, none written
// twice, and the audit stream (sourced by the servers) has one event each.
func testLeaderKill(t *testing.T, c *natstest.Cluster, tlsDir string) {
	q, err := openAs(t, c, tlsDir, "admin")
	if err != nil {
		t.Fatalf("open as admin with replicas 3: %v", err)
	}
	ctx := context.Background()
	kvs, err := rawJS(q).Stream(ctx, "KV_"+queue.BucketRequests)
	if err != nil {
		t.Fatal(err)
	}
	if r := kvs.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("requests bucket has %d replicas, want 3", r)
	}

	const n = 200
	const killAt = 60
	ids := map[string]bool{}
	var killed string
	start := time.Now()
	var stall time.Duration
	for i := range n {
		if i == killAt {
			info, err := kvs.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			killed = info.Cluster.Leader
			t.Logf("killing %s, leader of KV_%s, after %d records", killed, queue.BucketRequests, i)
			c.Kill(killed)
		}
		// What intake does: retry the same source request until it is
		// stored; a retry after an unclear failure finds it already there.
		t0 := time.Now()
		var rec *keydesk.Request
		for attempt := 0; ; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			rec, _, err = q.Create(cctx, newRequest("failover", i), "intake")
			cancel()
			if err == nil {
				break
			}
			if time.Since(t0) > 45*time.Second {
				t.Fatalf("record %d not stored after 45s: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond) // back off before the retry
		}
		stall = max(stall, time.Since(t0))
		if ids[rec.ID] {
			t.Fatalf("record %d got the ID %s of an earlier one", i, rec.ID)
		}
		ids[rec.ID] = true
	}
	t.Logf("%d records in %s; longest stall %s (leader election)", n, time.Since(start).Round(time.Millisecond), stall.Round(time.Millisecond))
	if killed == "" {
		t.Fatal("no leader was killed")
	}

	// Listing makes a consumer, which needs the meta leader: when the killed
	// node led the meta group too, the first tries wait for its election.
	var all []*keydesk.Request
	testenv.Eventually(t, 30*time.Second, "the requests to be listed", func() bool {
		all, err = q.List(ctx, queue.Filter{})
		return err == nil
	})
	listed := map[string]int{}
	for _, r := range all {
		if strings.Contains(r.SourceKey, "failover-") {
			listed[r.ID]++
		}
	}
	if len(listed) != n {
		t.Fatalf("listed %d records, want %d", len(listed), n)
	}
	for id := range ids {
		if listed[id] != 1 {
			t.Errorf("record %s listed %d times, want once", id, listed[id])
		}
	}
	// One message per record in the bucket's stream: a retried write that
	// had in fact succeeded would show as a second revision.
	info, err := kvs.Info(ctx, jetstream.WithSubjectFilter("$KV."+queue.BucketRequests+".>"))
	if err != nil {
		t.Fatal(err)
	}
	for id := range ids {
		if got := info.State.Subjects["$KV."+queue.BucketRequests+"."+id]; got != 1 {
			t.Errorf("record %s was written %d times, want once", id, got)
		}
	}
	// The AUDIT stream's source consumer is re-created with the server's
	// retry back-off (5s × 2 × failures, up to a minute) after the
	// leader's death: allow for a few rounds of it.
	testenv.Eventually(t, 150*time.Second, "the audit stream to source every record", func() bool {
		a, err := rawJS(q).Stream(ctx, queue.StreamAudit)
		if err != nil {
			return false
		}
		ai, err := a.Info(ctx, jetstream.WithSubjectFilter("audit.request.>"))
		if err != nil {
			return false
		}
		got := 0
		for subj, count := range ai.State.Subjects {
			if ids[strings.TrimPrefix(subj, "audit.request.")] {
				if count != 1 {
					t.Fatalf("%d audit events for %s, want 1", count, subj)
				}
				got++
			}
		}
		return got == n
	})

	// The killed node comes back and catches up.
	c.Restart(killed)
	c.WaitHealthy(60 * time.Second)
	testenv.Eventually(t, 30*time.Second, killed+" to be current again", func() bool {
		info, err := kvs.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		for _, p := range info.Cluster.Replicas {
			if p.Name == killed {
				return p.Current && !p.Offline
			}
		}
		return info.Cluster.Leader == killed
	})
}

// testRolePermissions opens the queue as each role's NATS user and checks
// that what the role does is allowed and what it must not do is refused by
// the server with a permissions violation.
func testRolePermissions(t *testing.T, c *natstest.Cluster, tlsDir string) {
	admin, err := openAs(t, c, tlsDir, "admin")
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	ctx := context.Background()
	seed, _, err := admin.Create(ctx, newRequest("perm", 0), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.PutMail(ctx, queue.MailRef(seed.SourceKey), strings.NewReader("From: cto@acme.example\r\n\r\nhello\r\n"), 1<<20); err != nil {
		t.Fatal(err)
	}

	roles := map[string]*queue.Conn{}
	violations := map[string]chan error{}
	for _, r := range []string{"intake", "review", "batch", "delivery"} {
		q, err := openAs(t, c, tlsDir, r)
		if err != nil {
			t.Fatalf("%s cannot open the queue: %v", r, err)
		}
		if err := q.Ready(ctx); err != nil {
			t.Fatalf("%s: ready: %v", r, err)
		}
		roles[r] = q
		// The server reports a refused publish asynchronously.
		ch := make(chan error, 16)
		violations[r] = ch
		rawNC(q).SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case ch <- err:
				default:
				}
			}
		})
	}

	// A consumer on the outbox: only delivery may make one.
	consumeOutbox := func(ctx context.Context, q *queue.Conn) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := rawJS(q).CreateOrUpdateConsumer(cctx, queue.StreamOutbox, jetstream.ConsumerConfig{
			Durable: "perm-test", AckPolicy: jetstream.AckExplicitPolicy,
		})
		return err
	}
	readMail := func(ctx context.Context, q *queue.Conn) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rc, err := q.OpenMail(cctx, queue.MailRef(seed.SourceKey))
		if err != nil {
			return err
		}
		return rc.Close()
	}
	kvGet := func(bucket string) func(ctx context.Context, q *queue.Conn) error {
		return func(ctx context.Context, q *queue.Conn) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, _, err := queue.NewBucket[json.RawMessage](q, bucket).Get(cctx, "probe")
			if errors.Is(err, keydesk.ErrNotFound) {
				return nil // the read was allowed; there is just nothing there
			}
			return err
		}
	}
	kvPut := func(bucket string) func(ctx context.Context, q *queue.Conn) error {
		return func(ctx context.Context, q *queue.Conn) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := queue.NewBucket[json.RawMessage](q, bucket).Put(cctx, "probe-"+fmt.Sprint(time.Now().UnixNano()), &json.RawMessage{'"', 'x', '"'})
			return err
		}
	}
	enqueue := func(kind keydesk.MessageKind) func(ctx context.Context, q *queue.Conn) error {
		return func(ctx context.Context, q *queue.Conn) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return q.Enqueue(cctx, &keydesk.Outgoing{ID: fmt.Sprintf("perm-%s-%d", kind, time.Now().UnixNano()), Kind: kind, To: []string{"x@acme.example"}, Subject: "s", Text: "t"})
		}
	}
	getRequest := func(ctx context.Context, q *queue.Conn) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := q.Get(cctx, seed.ID)
		return err
	}
	deleteStream := func(ctx context.Context, q *queue.Conn) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return rawJS(q).DeleteStream(cctx, "KV_"+queue.BucketRequests)
	}
	purgeRequests := func(ctx context.Context, q *queue.Conn) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := rawJS(q).Stream(cctx, "KV_"+queue.BucketRequests)
		if err != nil {
			return err
		}
		return s.Purge(cctx)
	}
	audit := func(kind string) func(ctx context.Context, q *queue.Conn) error {
		return func(ctx context.Context, q *queue.Conn) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return q.Record(cctx, kind, keydesk.Event{Ref: "perm", Actor: "test", Action: "probe"})
		}
	}

	// A lease taken and given back.
	lease := func(name string) func(ctx context.Context, q *queue.Conn) error {
		return func(ctx context.Context, q *queue.Conn) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			l, err := q.Acquire(cctx, name, "perm-test", 5*time.Second)
			if err != nil {
				return err
			}
			return l.Release(cctx)
		}
	}

	// A subscription to reply subjects: the server refuses a SUB with
	// -ERR before it answers the flush's PING, so the refusal is known
	// when the flush returns.
	subscribe := func(subj string) func(ctx context.Context, q *queue.Conn) error {
		return func(ctx context.Context, q *queue.Conn) error {
			sub, err := rawNC(q).SubscribeSync(subj)
			if err != nil {
				return err
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := rawNC(q).FlushTimeout(5 * time.Second); err != nil {
				return err
			}
			if err := rawNC(q).LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subj+`"`) {
				return err
			}
			return nil
		}
	}

	tests := []struct {
		role, what string
		op         func(context.Context, *queue.Conn) error
		allowed    bool
	}{
		{"intake", "create a request", func(ctx context.Context, q *queue.Conn) error {
			_, _, err := q.Create(ctx, newRequest("perm", 1), "intake")
			return err
		}, true},
		{"intake", "store raw mail", func(ctx context.Context, q *queue.Conn) error {
			return q.PutMail(ctx, "perm-test", strings.NewReader("x"), 1<<20)
		}, true},
		{"intake", "send an acknowledgement", enqueue(keydesk.KindAcknowledgement), true},
		{"intake", "write the intake bucket", kvPut(queue.BucketIntake), true},
		{"intake", "add to a conversation", kvPut(queue.BucketThreads), true},
		{"intake", "send a status reply", enqueue(keydesk.KindStatusReply), true},
		{"intake", "send a received notice", enqueue(keydesk.KindReceived), true},
		{"intake", "tell a requester of an exposed secret", enqueue(keydesk.KindSecretExposed), true},
		{"review", "tell a requester of an exposed secret", enqueue(keydesk.KindSecretExposed), false},
		{"intake", "send a staff reply", enqueue(keydesk.KindStaffReply), false},
		{"intake", "consume the outbox", consumeOutbox, false},
		{"intake", "send a digest", enqueue(keydesk.KindDigest), false},
		{"intake", "send a key delivery", enqueue(keydesk.KindKeyDelivery), false},
		{"intake", "read sent-message records", kvGet(queue.BucketDeliveries), false},
		{"intake", "read review sessions", kvGet(queue.BucketSessions), false},
		{"intake", "read the key inventory", kvGet(queue.BucketKeys), true},
		{"intake", "write the key inventory", kvPut(queue.BucketKeys), false},
		{"intake", "write a staff audit event", audit("staff"), false},
		{"intake", "purge the requests", purgeRequests, false},
		{"intake", "subscribe to its own replies", subscribe("_INBOX_intake.>"), true},
		{"intake", "subscribe to every inbox", subscribe("_INBOX.>"), false},
		{"intake", "subscribe to review's replies", subscribe("_INBOX_review.>"), false},

		{"review", "read a request", getRequest, true},
		{"review", "read raw mail", readMail, true},
		{"review", "write a session", kvPut(queue.BucketSessions), true},
		{"review", "add a note to a conversation", kvPut(queue.BucketThreads), true},
		{"review", "request a batch", kvPut(queue.BucketBatches), true},
		{"review", "read the key inventory", kvGet(queue.BucketKeys), true},
		{"review", "write the key inventory", kvPut(queue.BucketKeys), false},
		{"review", "tell of a revoked key", enqueue(keydesk.KindKeyRevoked), false},
		{"review", "record a staff action", audit("staff"), true},
		{"review", "send a rejection", enqueue(keydesk.KindRejection), true},
		{"review", "send a staff reply", enqueue(keydesk.KindStaffReply), true},
		{"review", "tell the outcome of a proposed change", enqueue(keydesk.KindProposalOutcome), true},
		{"review", "send a status reply", enqueue(keydesk.KindStatusReply), false},
		{"review", "send a digest", enqueue(keydesk.KindDigest), true},
		{"review", "record a webhook notification", func(ctx context.Context, q *queue.Conn) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := queue.NewBucket[json.RawMessage](q, queue.BucketThreads).Put(cctx, "n.perm-review.new", &json.RawMessage{'"', 'x', '"'})
			return err
		}, true},
		{"review", "take the notify lease", lease(notify.LeaseName), true},
		{"review", "take the batch lease", lease(batch.LeaseName), false},
		{"review", "consume the outbox", consumeOutbox, false},
		{"review", "send a key delivery", enqueue(keydesk.KindKeyDelivery), false},
		{"review", "store raw mail", func(ctx context.Context, q *queue.Conn) error {
			return q.PutMail(ctx, "perm-review", strings.NewReader("x"), 1<<20)
		}, false},
		{"review", "delete the requests bucket", deleteStream, false},
		{"review", "subscribe to every inbox", subscribe("_INBOX.>"), false},
		{"review", "subscribe to batch's replies", subscribe("_INBOX_batch.>"), false},
		{"review", "subscribe to admin's replies", subscribe("_INBOX_admin.>"), false},

		{"batch", "read a request", getRequest, true},
		{"batch", "send a key delivery", enqueue(keydesk.KindKeyDelivery), true},
		{"batch", "record a batch event", audit("batch"), true},
		{"batch", "consume the outbox", consumeOutbox, false},
		{"batch", "read raw mail", readMail, false},
		{"batch", "read review sessions", kvGet(queue.BucketSessions), false},
		{"batch", "read a conversation", kvGet(queue.BucketThreads), false},
		{"batch", "write the key inventory", kvPut(queue.BucketKeys), true},
		{"batch", "tell of a revoked key", enqueue(keydesk.KindKeyRevoked), true},
		{"batch", "remind of a rotation", enqueue(keydesk.KindRotationReminder), true},
		{"batch", "remind of a key due for rotation", enqueue(keydesk.KindRotationDue), true},
		{"batch", "read the key inventory", kvGet(queue.BucketKeys), true},
		{"batch", "send an acknowledgement", enqueue(keydesk.KindAcknowledgement), false},
		{"batch", "send a digest", enqueue(keydesk.KindDigest), false},
		{"batch", "subscribe to every inbox", subscribe("_INBOX.>"), false},
		{"batch", "subscribe to delivery's replies", subscribe("_INBOX_delivery.>"), false},

		{"delivery", "consume the outbox", consumeOutbox, true},
		{"delivery", "record a sent message", kvPut(queue.BucketDeliveries), true},
		{"delivery", "add a sent email to a conversation", kvPut(queue.BucketThreads), true},
		{"delivery", "send a delivery notice", enqueue(keydesk.KindDeliveryNotice), true},
		{"delivery", "read raw mail", readMail, false},
		{"delivery", "read review sessions", kvGet(queue.BucketSessions), false},
		{"delivery", "read the key inventory", kvGet(queue.BucketKeys), false},
		{"delivery", "write the batches bucket", kvPut(queue.BucketBatches), false},
		{"delivery", "send a key delivery", enqueue(keydesk.KindKeyDelivery), false},
		{"delivery", "record a staff action", audit("staff"), false},
		{"delivery", "delete the requests bucket", deleteStream, false},
		{"delivery", "subscribe to its own replies", subscribe("_INBOX_delivery.>"), true},
		{"delivery", "subscribe to every inbox", subscribe("_INBOX.>"), false},
		{"delivery", "subscribe to review's replies", subscribe("_INBOX_review.>"), false},
		{"delivery", "subscribe to intake's replies", subscribe("_INBOX_intake.*"), false},
	}
	for _, tc := range tests {
		t.Run(tc.role+"/"+strings.ReplaceAll(tc.what, " ", "_"), func(t *testing.T) {
			vch := violations[tc.role]
			for len(vch) > 0 {
				<-vch
			}
			opCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tc.op(opCtx, roles[tc.role]) }()
			var err, violation error
			select {
			case err = <-done:
			case violation = <-vch:
				cancel() // refused: no need to wait for the operation's timeout
				err = <-done
			}
			switch {
			case tc.allowed && err != nil:
				t.Errorf("%s may %s, but: %v", tc.role, tc.what, err)
			case tc.allowed && violation != nil:
				t.Errorf("%s may %s, but the server refused part of it: %v", tc.role, tc.what, violation)
			case !tc.allowed && violation == nil && !errors.Is(err, nats.ErrPermissionViolation):
				t.Errorf("%s must not %s, but the server did not refuse it (err %v)", tc.role, tc.what, err)
			}
		})
	}
	// The servers log what they refuse (the cluster demo test relies on it
	// to show that the real roles are refused nothing).
	if v := c.LogLines("Violation"); len(v) == 0 {
		t.Error("the servers logged none of the refusals")
	}
	// A client without a certificate of the CA gets nowhere.
	_, err = nats.Connect(c.URLs(), nats.RootCAs(filepath.Join(tlsDir, "ca.pem")), nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err == nil {
		t.Error("a client without a certificate could connect")
	}
}

// rawNC and rawJS reach under the queue's typed methods: these tests check
// NATS itself (permissions, failover).
func rawNC(q *queue.Conn) *nats.Conn {
	nc, _ := q.Raw()
	return nc
}

func rawJS(q *queue.Conn) jetstream.JetStream {
	_, js := q.Raw()
	return js
}
