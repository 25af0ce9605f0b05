package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// binDir holds the binary the black-box tests build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	var err error
	binDir, err = os.MkdirTemp("", "keydesk-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// buildKeydesk builds the binary once per test process, with the crash-test
// hook (KEYDESK_FAILPOINT) that the chaos test uses.
var buildKeydesk = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "keydesk")
	out, err := exec.Command("go", "build", "-tags", "failpoint", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// TestServeBinary runs the real binary as an operator would: `keydesk
// serve` answers /healthz and /readyz, refuses a broken partners.yaml on
// SIGHUP while keeping the one in force, takes a good one, and stops
// cleanly, exit 0, on SIGTERM; its data survives for the next start.
func TestServeBinary(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := cryptotest.Contact(t, crypto.Curve25519)
	cryptotest.WriteFile(t, dir, "acme.asc", key.Public)
	partner := func(id string) string {
		return `
  - id: ` + id + `
    requesters: ["*@` + id + `.example"]
    technical_contact: {email: sec@` + id + `.example, pgp_key_file: acme.asc, fingerprint: "` + key.Fingerprint + `"}
    environments: {sandbox: {auto_approve: true}}`
	}
	pf := cryptotest.WriteFile(t, dir, "partners.yaml", "partners:"+partner("acme"))
	addUser(t, filepath.Join(dir, "users.yaml"), "ada", "admin")
	listen := testenv.FreeAddr(t)
	cfgPath := cryptotest.WriteFile(t, dir, "keydesk.yaml", "data_dir: data\nreview: {listen: \""+listen+"\"}\nlog: {format: json}\n")

	start := func() (*exec.Cmd, *testenv.Buffer, <-chan error) {
		p := startProc(t, bin, listen, "serve", "--config", cfgPath, "--roles", "review")
		// /healthz answers before NATS is reached; /readyz once the roles run.
		p.waitOK(t, "/readyz", 30*time.Second)
		return p.cmd, p.logs, p.done
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	stop := func(cmd *exec.Cmd, logs *testenv.Buffer, done <-chan error) {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, logs.String())
			}
		case <-time.After(40 * time.Second):
			t.Fatalf("still running 40s after SIGTERM; log:\n%s", logs.String())
		}
		if !strings.Contains(logs.String(), `"msg":"stopped"`) {
			t.Errorf("no clean stop logged:\n%s", logs.String())
		}
	}

	cmd, logs, done := start()
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "nats: ok") {
		t.Fatalf("/readyz %d: %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "keydesk_up 1") {
		t.Fatalf("/metrics %d: %s", code, body)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Fatalf("log.format json, but a line is not JSON: %q", line)
		}
	}

	// A broken file is refused and logged; the registry stays.
	if err := os.WriteFile(pf, []byte("partners:"+partner("acme")+partner("globex")+"\n  - id: BAD!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	if err := testenv.Poll(10*time.Second, "the refusal logged", func() bool {
		return strings.Contains(logs.String(), "partners reload refused") && strings.Contains(logs.String(), "partners[2].id")
	}); err != nil {
		t.Fatalf("%v; log:\n%s", err, logs.String())
	}
	if err := os.WriteFile(pf, []byte("partners:"+partner("acme")+partner("globex")), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	if err := testenv.Poll(10*time.Second, "the reload logged", func() bool {
		return strings.Contains(logs.String(), `"msg":"partners reloaded"`) && strings.Contains(logs.String(), `"partners":2`)
	}); err != nil {
		t.Fatalf("%v; log:\n%s", err, logs.String())
	}
	stop(cmd, logs, done)

	// The embedded store is released on stop: a second start opens it.
	cmd, logs, done = start()
	stop(cmd, logs, done)
}

// TestServeRefusesBadConfig: a config with problems stops serve at once,
// exit 1, naming the problems and the command that lists them all.
func TestServeRefusesBadConfig(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := cryptotest.WriteFile(t, dir, "keydesk.yaml", "review: {listen: nowhere}\nlog: {level: loud}\n")
	out, err := exec.Command(bin, "serve", "--config", cfgPath).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1; output:\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	var text []string
	for sc.Scan() {
		text = append(text, sc.Text())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"keydesk check --config", "keydesk.yaml: review.listen:", "keydesk.yaml: log.level:"} {
		if !strings.Contains(all, want) {
			t.Errorf("output lacks %q:\n%s", want, all)
		}
	}
}
