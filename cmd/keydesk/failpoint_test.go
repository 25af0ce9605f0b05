package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// TestProductionBinaryIgnoresFailpoint builds keydesk as it ships (without
// -tags failpoint) and runs a batch with KEYDESK_FAILPOINT set to kill it
// at the first key creation: the batch must complete and keydesk stop
// cleanly on SIGTERM, so no environment variable can make a production
// keydesk kill itself.
func TestProductionBinaryIgnoresFailpoint(t *testing.T) {
	testenv.Short(t)
	bin := filepath.Join(t.TempDir(), "keydesk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	q, err := queue.Open(ctx, queue.Options{DataDir: filepath.Join(dir, "nats-test"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const apiKey, apiSecret = "bm_key_acme_manager", "bm_secret_acme_manager"
	api, err := fake.New(fake.Options{Seed: &fake.Seed{Accounts: []fake.SeedAccount{
		{ID: "acme", ManagerKeys: []fake.SeedKey{{APIKey: apiKey, APISecret: apiSecret, Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg := cryptotest.BatchRoleConfig(t, dir, q.ClientURL(), srv.URL, apiKey, apiSecret)

	r, _, err := q.Create(ctx, &keydesk.Request{
		State: keydesk.StateApproved, Partner: "acme", Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{"accounts:read"},
		Label: "backend", Requester: "cto@acme.example", SourceKey: "failpoint-0", SourceDate: time.Now(),
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.RequestBatch(ctx, "failpoint-test")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	cmd := exec.CommandContext(ctx, bin, "serve", "--roles", "batch", "--config", cfg)
	cmd.Env = append(os.Environ(), failpointEnv+"=after-create:1")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var final *keydesk.Batch
	testenv.Eventually(t, 60*time.Second, "the batch", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("keydesk exited during the batch: %v\n%s", err, logs.String())
		default:
		}
		final, err = q.GetBatch(ctx, b.ID)
		return err == nil && (final.State == keydesk.BatchDone || final.State == keydesk.BatchFailed)
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("keydesk did not stop cleanly: %v\n%s", err, logs.String())
	}
	if final.State != keydesk.BatchDone {
		t.Fatalf("batch = %s, want done\n%s", final.State, logs.String())
	}
	if got, err := q.Get(ctx, r.ID); err != nil || got.State != keydesk.StateGenerated {
		t.Fatalf("request after the batch: %v %v, want generated\n%s", got, err, logs.String())
	}
	if strings.Contains(logs.String(), failpointEnv) {
		t.Errorf("the production binary mentions %s:\n%s", failpointEnv, logs.String())
	}
}
