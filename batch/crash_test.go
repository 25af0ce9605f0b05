package batch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// keydeskBinary builds cmd/keydesk once per test process.
func keydeskBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keydesk-crash-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "keydesk")
		out, err := exec.Command("go", "build", "-tags", "failpoint", "-o", binPath, "github.com/buildmarkets/keydesk/cmd/keydesk").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestCrash kills the batch role with SIGKILL at each step of a request's
// handling (and once with the API dropping the connection after a create),
// restarts it, and checks in the simulator that every request ends with
// exactly one live key, the one its record names, and that every other key
// made on the way is revoked; and that the key delivery in the outbox for
// each request is of its current attempt.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the keydesk binary")
	}
	bin := keydeskBinary(t)
	steps := []struct {
		failpoint string
		drop      int // DropAfterCreate
		revoked   int // orphans the restart must revoke
	}{
		{failpoint: "after-generating:2"},
		{failpoint: "after-create:2", revoked: 1},
		{failpoint: "after-seal:2", revoked: 1},
		{failpoint: "after-enqueue:2", revoked: 1},
		{failpoint: "after-generated:2"},
		// The answer to the first create is lost; the retry's key dies with the process.
		{failpoint: "after-create:1", drop: 1, revoked: 2},
	}
	for _, st := range steps {
		name := st.failpoint
		if st.drop > 0 {
			name += "+dropped-answer"
		}
		t.Run(name, func(t *testing.T) {
			crashRun(t, bin, st.failpoint, st.drop, st.revoked, false)
		})
	}
}

// TestCrashRotate is TestCrash for rotate requests, killed between the
// API's answer and the record: each rotation ends with exactly one live
// new key, the one its record names, and the keys they replace stay live
// (made just before, with the same labels, they look like the attempt's
// keys; they are not its orphans).
func TestCrashRotate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the keydesk binary")
	}
	bin := keydeskBinary(t)
	for _, st := range []struct {
		failpoint string
		drop      int
		revoked   int
	}{
		{failpoint: "after-create:2", revoked: 1},
		{failpoint: "after-enqueue:2", revoked: 1},
		{failpoint: "after-create:1", drop: 1, revoked: 2},
	} {
		name := st.failpoint
		if st.drop > 0 {
			name += "+dropped-answer"
		}
		t.Run(name, func(t *testing.T) {
			crashRun(t, bin, st.failpoint, st.drop, st.revoked, true)
		})
	}
}

// crashWorld starts NATS and the simulator in the test process: they
// outlive the killed keydesk, as a cluster and the real API would. Both
// stop with the test.
func crashWorld(ctx context.Context, t *testing.T, dir string) (*queue.Conn, *fake.Server, *httptest.Server) {
	t.Helper()
	q, err := queue.Open(ctx, queue.Options{DataDir: filepath.Join(dir, "nats-test"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	api, err := fake.New(fake.Options{Seed: &fake.Seed{Accounts: []fake.SeedAccount{
		{ID: "acme", ManagerKeys: []fake.SeedKey{{APIKey: managerKey, APISecret: managerSecret, Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return q, api, srv
}

// crashRun kills the batch role at failpoint and checks the restart's
// outcome. With rotate, each request is a rotation of a key made (through
// the API, outside keydesk) just before.
func crashRun(t *testing.T, bin, failpoint string, drop, wantRevoked int, rotate bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()

	q, api, srv := crashWorld(ctx, t, dir)
	var err error
	labels := []string{"backend", "backend", "reporting"}
	var old []string // the keys the rotations replace
	if rotate {
		c := bmapi.New(bmapi.Options{BaseURL: srv.URL, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)})
		for _, label := range labels {
			k, err := c.CreateKey(ctx, label, []keydesk.Scope{"accounts:read"})
			if err != nil {
				t.Fatal(err)
			}
			k.APISecret.Wipe()
			old = append(old, k.ID)
		}
	}
	api.DropAfterCreate(drop)

	cfg := cryptotest.BatchRoleConfig(t, dir, q.ClientURL(), srv.URL, managerKey, managerSecret)

	var ids []string
	for i, label := range labels {
		req := &keydesk.Request{
			State: keydesk.StateApproved, Partner: "acme", Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{"accounts:read"},
			Label: label, Requester: "cto@acme.example", SourceKey: fmt.Sprintf("crash-%d", i), SourceDate: time.Now(), Index: i,
		}
		if rotate {
			req.Kind, req.ReplacesKeyID = keydesk.KindRotate, old[i]
		}
		r, _, err := q.Create(ctx, req, "test")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}

	// First run: killed at the failpoint.
	if _, err := q.RequestBatch(ctx, "crash-test"); err != nil {
		t.Fatal(err)
	}
	log1 := runToFailpoint(t, ctx, bin, cfg, failpoint)
	if !slices.ContainsFunc(mustList(t, ctx, q), func(r *keydesk.Request) bool {
		return r.State == keydesk.StateGenerating || r.State == keydesk.StateApproved
	}) {
		t.Fatalf("the crash left nothing to do:\n%s", log1.String())
	}

	// Second run: reconciles on start, then runs a batch asked for.
	log2, stop := startBatchRole(t, ctx, bin, cfg)
	b, err := q.RequestBatch(ctx, "crash-test")
	if err != nil {
		t.Fatal(err)
	}
	var final *keydesk.Batch
	testenv.Eventually(t, 60*time.Second, "the batch after the restart", func() bool {
		final, err = q.GetBatch(ctx, b.ID)
		return err == nil && (final.State == keydesk.BatchDone || final.State == keydesk.BatchFailed)
	})
	stop()
	if final.State != keydesk.BatchDone {
		t.Fatalf("batch after restart = %s\n%s", dump(final), log2.String())
	}

	// Every request: generated, one live key, the one it records.
	recorded := map[string]string{}
	for _, id := range ids {
		r, err := q.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != keydesk.StateGenerated || r.KeyID == "" || (rotate && (r.Rotation == nil || r.Rotation.Due.IsZero())) {
			t.Fatalf("request %s after restart: %s\nfirst run:\n%s\nsecond run:\n%s", id, dump(r), log1.String(), log2.String())
		}
		recorded[r.KeyID] = id
	}
	var live []string
	for _, k := range api.LiveKeys("acme") {
		live = append(live, k.ID)
		if _, ok := recorded[k.ID]; !ok && !slices.Contains(old, k.ID) {
			t.Errorf("key %s (%s) is live but no request records it: an orphan", k.ID, k.Label)
		}
	}
	if len(live) != len(ids)+len(old) {
		t.Errorf("live keys %v, want one per request (%d) and the %d replaced keys %v", live, len(ids), len(old), old)
	}
	created := 0
	for _, k := range api.Keys("acme") {
		if !k.Seeded {
			created++
		}
	}
	if revoked := len(revokedIn(api)); revoked != wantRevoked || created != len(live)+revoked {
		t.Errorf("created %d, live %d, revoked %d: want %d revoked and no key unaccounted for", created, len(live), revoked, wantRevoked)
	}

	// The outbox holds, per request, a delivery of its current attempt;
	// any other delivery of it is of a stale attempt, which delivery drops.
	h := &harness{t: t, ctx: ctx, q: q}
	deliveries := kind(h.outbox(), keydesk.KindKeyDelivery)
	for _, id := range ids {
		r, _ := q.Get(ctx, id)
		if !slices.ContainsFunc(deliveries, func(m *keydesk.Outgoing) bool { return m.RequestID == id && m.AttemptID == r.Attempt.ID }) {
			t.Errorf("no delivery of the current attempt %s of %s", r.Attempt.ID, id)
		}
	}
}

func mustList(t *testing.T, ctx context.Context, q *queue.Conn) []*keydesk.Request {
	t.Helper()
	rs, err := q.List(ctx, queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func revokedIn(api *fake.Server) []string {
	var out []string
	for _, k := range api.Keys("acme") {
		if k.Revoked {
			out = append(out, k.ID)
		}
	}
	return out
}

// TestCrashRevoke kills the batch role with SIGKILL while it revokes a
// key: after the request is recorded revoking and before the API is
// called, and between the API's 204 and the record. The restart finishes
// the revocation: the key is revoked once, the revoke request and the
// request that made the key end revoked, one notice goes out, and the
// other request's key stays live.
func TestCrashRevoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the keydesk binary")
	}
	bin := keydeskBinary(t)
	for _, failpoint := range []string{"after-revoking:1", "after-revoke:1"} {
		t.Run(failpoint, func(t *testing.T) { crashRevoke(t, bin, failpoint) })
	}
}

func crashRevoke(t *testing.T, bin, failpoint string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	q, api, srv := crashWorld(ctx, t, dir)
	var err error
	cfg := cryptotest.BatchRoleConfig(t, dir, q.ClientURL(), srv.URL, managerKey, managerSecret)
	client := bmapi.New(bmapi.Options{BaseURL: srv.URL, APIKey: managerKey, APISecret: keydesk.SecretString(managerSecret)})

	// Two delivered keys; the first is to be revoked.
	var makers []*keydesk.Request
	for i, label := range []string{"leaked", "kept"} {
		k, err := client.CreateKey(ctx, label, []keydesk.Scope{"accounts:read"})
		if err != nil {
			t.Fatal(err)
		}
		k.APISecret.Wipe()
		r, _, err := q.Create(ctx, &keydesk.Request{
			State: keydesk.StateDelivered, Partner: "acme", Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{"accounts:read"},
			Label: label, Requester: "cto@acme.example", SourceKey: fmt.Sprintf("crash-revoke-%d", i), SourceDate: time.Now(), Index: i,
			KeyID: k.ID, APIKey: k.APIKey,
		}, "test")
		if err != nil {
			t.Fatal(err)
		}
		makers = append(makers, r)
	}
	rev, _, err := q.Create(ctx, &keydesk.Request{
		Kind: keydesk.KindRevoke, State: keydesk.StateApproved, Partner: "acme", Environment: keydesk.Sandbox, KeyID: makers[0].KeyID,
		Requester: "cto@acme.example", Reason: "leaked", SourceKey: "crash-revoke-rev", SourceDate: time.Now(),
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PutBatch(ctx, &keydesk.Batch{ID: q.NewBatchID(), Trigger: keydesk.TriggerRevoke, By: "alice", State: keydesk.BatchRequested, Requested: time.Now()}); err != nil {
		t.Fatal(err)
	}

	log1 := runToFailpoint(t, ctx, bin, cfg, failpoint)
	if got, _ := q.Get(ctx, rev.ID); got.State != keydesk.StateRevoking {
		t.Fatalf("after the kill the revoke request is %s, want revoking\n%s", got.State, log1.String())
	}

	_, stop := startBatchRole(t, ctx, bin, cfg)
	testenv.Eventually(t, 30*time.Second, "the revocation finished after the restart", func() bool {
		got, err := q.Get(ctx, rev.ID)
		return err == nil && got.State == keydesk.StateRevoked
	})
	stop()
	if got, _ := q.Get(ctx, makers[0].ID); got.State != keydesk.StateRevoked || got.RevokedAt.IsZero() {
		t.Errorf("the leaked key's request: %s", dump(got))
	}
	if got, _ := q.Get(ctx, makers[1].ID); got.State != keydesk.StateDelivered {
		t.Errorf("the other request: %s", got.State)
	}
	var live []string
	for _, k := range api.LiveKeys("acme") {
		live = append(live, k.ID)
	}
	if !slices.Equal(live, []string{makers[1].KeyID}) {
		t.Errorf("live keys %v, want only %s", live, makers[1].KeyID)
	}
	if st := api.Stats(); st.Revokes != 1 {
		t.Errorf("the API revoked %d keys, want 1", st.Revokes)
	}
	h := &harness{t: t, ctx: ctx, q: q}
	if n := len(kind(h.outbox(), keydesk.KindKeyRevoked)); n != 1 {
		t.Errorf("%d key-revoked notices, want 1", n)
	}
}

// runToFailpoint runs the batch role of the binary with the failpoint
// armed and expects it to die there by SIGKILL; it returns its log.
func runToFailpoint(t *testing.T, ctx context.Context, bin, cfg, failpoint string) *bytes.Buffer {
	t.Helper()
	var log bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "serve", "--roles", "batch", "--config", cfg)
	cmd.Env = append(os.Environ(), "KEYDESK_FAILPOINT="+failpoint)
	cmd.Stdout, cmd.Stderr = &log, &log
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("keydesk did not die by SIGKILL at %s: %v\n%s", failpoint, err, log.String())
	}
	return &log
}

// startBatchRole starts the batch role of the binary; stop ends it with
// SIGTERM and expects a clean exit. The log is the role's output.
func startBatchRole(t *testing.T, ctx context.Context, bin, cfg string) (log *bytes.Buffer, stop func()) {
	t.Helper()
	log = &bytes.Buffer{}
	cmd := exec.CommandContext(ctx, bin, "serve", "--roles", "batch", "--config", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return log, func() {
		t.Helper()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("keydesk did not stop cleanly: %v\n%s", err, log.String())
		}
	}
}
