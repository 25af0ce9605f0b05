package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/review"
	"github.com/buildmarkets/keydesk/review/users"
)

var tokenRE = regexp.MustCompile(`API token \(CLI, API\):\s+(kd_\S+)`)

// addUser runs 'keydesk users add NAME --role R --write FILE' and returns
// the token it showed.
func addUser(t *testing.T, file, name, role string) string {
	t.Helper()
	var out bytes.Buffer
	if err := runUsersAdd(&out, []string{name, "--role", role, "--write", file}); err != nil {
		t.Fatalf("users add %s: %v", name, err)
	}
	m := tokenRE.FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "password (web UI):") {
		t.Fatalf("users add printed no password or token:\n%s", out.String())
	}
	return m[1]
}

// cliWorld is 'keydesk serve --roles review' with four staff (alice and
// bob approvers, ada admin, viv viewer), and the queue and batch commands
// to drive it.
type cliWorld struct {
	t      *testing.T
	a      *app
	base   string
	tokens map[string]string
}

func newCLIWorld(t *testing.T, mods ...func(*config.Config)) *cliWorld {
	t.Helper()
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.yaml")
	w := &cliWorld{t: t, tokens: map[string]string{}}
	for _, u := range [][2]string{{"alice", "approver"}, {"bob", "approver"}, {"ada", "admin"}, {"viv", "viewer"}} {
		w.tokens[u[0]] = addUser(t, usersFile, u[0], u[1])
	}
	if err := runUsersAdd(io.Discard, []string{"alice", "--role", "viewer", "--write", usersFile}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("adding alice twice: %v", err)
	}
	set, err := users.Load(usersFile)
	if err != nil || set.Len() != 4 {
		t.Fatalf("users.yaml after four adds: %v %v", set.Len(), err)
	}
	writePartners(t, dir)
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "keydesk.yaml")
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Review.Listen = testenv.FreeAddr(t)
	cfg.Review.UsersFile = "users.yaml"
	w.base = "http://" + cfg.Review.Listen
	for _, mod := range mods {
		mod(cfg)
	}
	w.a = startServe(t, cfg, w.base, nil)
	return w
}

// request stores a pending request of acme as intake would; mod changes it.
func (w *cliWorld) request(env keydesk.Environment, label string, mod func(*keydesk.Request)) *keydesk.Request {
	w.t.Helper()
	r := &keydesk.Request{State: keydesk.StatePendingReview, Partner: "acme", Environment: env,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: label, Requester: "dev@acme.example",
		SourceMessageID: "<" + label + "@acme.example>", SourceDate: time.Now(), Subject: "keys"}
	r.SourceKey = keydesk.SourceKey(r.Requester, r.SourceMessageID, nil)
	if mod != nil {
		mod(r)
	}
	out, _, err := w.a.q.Create(context.Background(), r, "intake")
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// cli runs a queue or batch command as user and returns its output.
func (w *cliWorld) cli(user string, args ...string) (string, error) {
	env := map[string]string{"KEYDESK_URL": w.base, "KEYDESK_TOKEN": w.tokens[user]}
	var out bytes.Buffer
	var err error
	switch args[0] {
	case "batch":
		err = runBatchCmd(context.Background(), &out, io.Discard, args[1:], func(k string) string { return env[k] })
	case "keys":
		err = runKeysCmd(context.Background(), &out, args[1:], func(k string) string { return env[k] })
	default:
		err = runQueueCmd(context.Background(), &out, io.Discard, args[1:], func(k string) string { return env[k] })
	}
	return out.String(), err
}

func (w *cliWorld) must(user string, args ...string) string {
	w.t.Helper()
	out, err := w.cli(user, args...)
	if err != nil {
		w.t.Fatalf("%s %v: %v", user, args, err)
	}
	return out
}

func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code || ae.ErrorBody.Error == "" {
		t.Fatalf("error = %v, want HTTP %d %s with a message", err, status, code)
	}
}

// TestQueueCLIEndToEnd runs 'keydesk serve --roles review' with a config
// of its own, then drives it with 'keydesk queue ...' and 'keydesk batch
// ...' as a support engineer would.
func TestQueueCLIEndToEnd(t *testing.T) {
	w := newCLIWorld(t)
	tokens, cli, must := w.tokens, w.cli, w.must
	mk := func(env keydesk.Environment, label string) *keydesk.Request { return w.request(env, label, nil) }
	var err error
	sandbox := mk(keydesk.Sandbox, "sandbox-backend")
	prod := mk(keydesk.Production, "prod-engine\x1b[31m")

	// list: an aligned table, newest first, escape sequences neutralised.
	out := must("viv", "queue", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], prod.ID) || !strings.HasPrefix(lines[2], sandbox.ID) {
		t.Fatalf("queue list:\n%s", out)
	}
	if col := strings.Index(lines[0], "STATE"); strings.Index(lines[1], "pending_review") != col || strings.Index(lines[2], "pending_review") != col {
		t.Fatalf("columns are not aligned:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(out, "prod-engine\uFFFD[31m") || !strings.Contains(lines[1], "0/2") {
		t.Fatalf("queue list does not neutralise control characters or lacks approvals:\n%q", out)
	}
	var list review.RequestList
	if err := json.Unmarshal([]byte(must("viv", "queue", "list", "--json", "--environment", "sandbox")), &list); err != nil || len(list.Requests) != 1 || list.Requests[0].ID != sandbox.ID {
		t.Fatalf("queue list --json: %+v %v", list, err)
	}

	// four eyes over the CLI.
	if out := must("alice", "queue", "approve", prod.ID); !strings.Contains(out, "pending_review") || !strings.Contains(out, "Approval 1 of 2") {
		t.Fatalf("first approval:\n%s", out)
	}
	_, err = cli("alice", "queue", "approve", prod.ID)
	wantAPIError(t, err, 409, "already_approved")
	_, err = cli("viv", "queue", "approve", sandbox.ID)
	wantAPIError(t, err, 403, "forbidden")
	if out := must("bob", "queue", "approve", strings.ToLower(prod.ID)); !strings.Contains(out, prod.ID+": approved") {
		t.Fatalf("second approval:\n%s", out)
	}
	out = must("viv", "queue", "show", prod.ID)
	for _, want := range []string{"State:        approved", "alice at", "bob at", "(2 needed)", "approval 1 of 2", "pending_review -> approved"} {
		if !strings.Contains(out, want) {
			t.Errorf("queue show lacks %q:\n%s", want, out)
		}
	}

	// reject needs a reason; the requester is told.
	if _, err := cli("alice", "queue", "reject", sandbox.ID); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Fatalf("reject without a reason: %v", err)
	}
	if out := must("alice", "queue", "reject", sandbox.ID, "--reason", "label already in use"); !strings.Contains(out, "rejected") || !strings.Contains(out, "requester is told") {
		t.Fatalf("reject:\n%s", out)
	}
	_, err = cli("alice", "queue", "cancel", sandbox.ID)
	wantAPIError(t, err, 409, "invalid_state")
	_, err = cli("alice", "queue", "show", "KR-20000101-0000")
	wantAPIError(t, err, 404, "not_found")

	// batch run is for admins.
	_, err = cli("alice", "batch", "run")
	wantAPIError(t, err, 403, "forbidden")
	if out := must("ada", "batch", "run"); !strings.Contains(out, "requested") {
		t.Fatalf("batch run:\n%s", out)
	}
	if out := must("viv", "batch", "list"); !strings.Contains(out, "Next scheduled run") || !strings.Contains(out, "manual") || !strings.Contains(out, "ada") {
		t.Fatalf("batch list:\n%s", out)
	}

	// A wrong token and an unreachable server say what to do.
	tokens["mallory"] = "kd_wrong"
	_, err = cli("mallory", "queue", "list")
	wantAPIError(t, err, 401, "unauthorized")
	env := map[string]string{"KEYDESK_URL": "http://" + testenv.FreeAddr(t), "KEYDESK_TOKEN": "x"}
	err = runQueueCmd(context.Background(), io.Discard, io.Discard, []string{"list"}, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "cannot reach keydesk") {
		t.Fatalf("unreachable server: %v", err)
	}
	err = runQueueCmd(context.Background(), io.Discard, io.Discard, []string{"list"}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "KEYDESK_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
}

// startServe runs 'keydesk serve --roles review' on cfg until the test
// ends and waits for base/healthz to answer. The contacts' keys are only
// read: the key files are placeholders; checking keys is crypto's test.
func startServe(t *testing.T, cfg *config.Config, base string, hc *http.Client) *app {
	t.Helper()
	if hc == nil {
		hc = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	apps := make(chan *app, 1)
	served := make(chan error, 1)
	go func() {
		served <- serveRolesKeys(ctx, cfg, slog.New(slog.DiscardHandler), nil, []string{"review"}, func(a *app) error { apps <- a; return nil })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	var a *app
	select {
	case a = <-apps:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	testenv.Eventually(t, 10*time.Second, "the review UI to answer", func() bool {
		resp, err := hc.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return a
}

// writePartners writes partners.yaml (one partner, acme) into dir.
func writePartners(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "acme.asc"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners.yaml"), []byte(`partners:
  - id: acme
    name: Acme Capital
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567"}
    environments: {sandbox: {api_key: k, api_secret: s}, production: {api_key: k, api_secret: s}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
}
