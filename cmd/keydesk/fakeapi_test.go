package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
)

const fakeapiSeed = `{"accounts":[{"id":"acme","manager_keys":[
  {"api_key":"bm_key_acme_mgr","api_secret":"bm_secret_acme_mgr_s3cr3t","scopes":["keys:manage"]}]}]}`

func writeSeed(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(p, []byte(fakeapiSeed), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readURL reads the "listening on" line from the command's output.
func readURL(t *testing.T, r io.Reader) string {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the listen line: %v (got %q)", err, line)
	}
	const prefix = "keydesk fakeapi: listening on "
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("first line %q", line)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, prefix))
}

func postFaults(t *testing.T, url, body string) {
	t.Helper()
	r, err := http.Post(url+"/_fake/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		t.Fatalf("faults: %d %s", r.StatusCode, b)
	}
}

func managerClient(url string) *bmapi.Client {
	return bmapi.New(bmapi.Options{BaseURL: url, APIKey: "bm_key_acme_mgr",
		APISecret: keydesk.SecretString("bm_secret_acme_mgr_s3cr3t"), Timeout: 5 * time.Second, RetryBase: time.Millisecond})
}

func TestFakeapiInProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runFakeapi(ctx, pw, &stderr, []string{"--listen", "127.0.0.1:0", "--seed", writeSeed(t),
			"--rate-limit", "1000", "--list-envelope", "keys"})
		pw.Close()
	}()
	url := readURL(t, pr)
	go io.Copy(io.Discard, pr)

	c := managerClient(url)
	k, err := c.CreateKey(t.Context(), "cli-made", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.ListKeys(t.Context()) // enveloped by --list-envelope
	if err != nil || len(keys) != 2 || keys[1].ID != k.ID {
		t.Fatalf("list: %v %+v", err, keys)
	}
	postFaults(t, url, `{"fail_next":1,"fail_status":503}`)
	_, err = c.CreateKey(t.Context(), "refused", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if !errors.Is(err, bmapi.ErrServer) {
		t.Fatalf("after fail_next: %v", err)
	}

	cancel() // what SIGTERM does through main's signal context
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fakeapi returned %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fakeapi did not stop")
	}
	if strings.Contains(stderr.String(), "bm_secret_") {
		t.Fatalf("a secret in the log:\n%s", stderr.String())
	}
}

func TestFakeapiUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for --help
		output  string
	}{
		{"help", []string{"--help"}, "", "--rate-limit"},
		{"no seed", []string{"--listen", "127.0.0.1:0"}, "--seed is required", ""},
		{"missing seed file", []string{"--seed", "/nonexistent/seed.json"}, "no such file", ""},
		{"negative latency", []string{"--seed", "x", "--latency", "-1s"}, "must not be negative", ""},
		{"extra argument", []string{"--seed", "x", "extra"}, "usage", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runFakeapi(t.Context(), &out, &errOut, tt.args)
			if tt.wantErr == "" {
				if err == nil || !strings.Contains(err.Error(), "help") || !strings.Contains(errOut.String(), tt.output) {
					t.Fatalf("err %v, output %q", err, errOut.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestFakeapiProcess runs `keydesk fakeapi` as its own process (this test
// binary, re-executed as the command), steers it over the admin endpoint,
// and stops it with SIGTERM.
func TestFakeapiProcess(t *testing.T) {
	if args := os.Getenv("KEYDESK_TEST_FAKEAPI_ARGS"); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			panic(err)
		}
		os.Exit(run(append([]string{"fakeapi"}, a...)))
	}
	state := filepath.Join(t.TempDir(), "state.json")
	args, _ := json.Marshal([]string{"--listen", "127.0.0.1:0", "--seed", writeSeed(t), "--state", state, "--log-level", "debug"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestFakeapiProcess$")
	cmd.Env = append(os.Environ(), "KEYDESK_TEST_FAKEAPI_ARGS="+string(args))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := readURL(t, stdout)

	// Drop the answer to the next create: the client cannot know the key
	// exists, and says so; the simulator shows it.
	postFaults(t, url, `{"drop_after_create":1}`)
	c := managerClient(url)
	_, err = c.CreateKey(t.Context(), "dropped", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if !bmapi.Unclear(err) {
		t.Fatalf("dropped create: %v, want an unclear error", err)
	}
	r, err := http.Get(url + "/_fake/keys?account=acme")
	if err != nil {
		t.Fatal(err)
	}
	var keys []struct {
		ID, Label string
		Revoked   bool
	}
	err = json.NewDecoder(r.Body).Decode(&keys)
	r.Body.Close()
	if err != nil || len(keys) != 2 || keys[1].Label != "dropped" || keys[1].Revoked {
		t.Fatalf("simulator keys: %v %+v", err, keys)
	}
	k, err := c.CreateKey(t.Context(), "kept", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("fakeapi exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("fakeapi did not stop on SIGTERM; stderr:\n%s", stderr.String())
	}
	raw, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(k.ID)) || bytes.Contains(raw, []byte(k.APISecret.Reveal())) || bytes.Contains(raw, []byte("bm_secret_")) {
		t.Fatalf("state file:\n%s", raw)
	}
	log := stderr.String()
	if !strings.Contains(log, "fakeapi: stopped") || strings.Contains(log, "bm_secret_") {
		t.Fatalf("stderr:\n%s", log)
	}
}
