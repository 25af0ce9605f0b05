package main

import (
	"io"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

// proc is a keydesk process a black-box test started; it is killed when
// the test ends.
type proc struct {
	cmd  *exec.Cmd
	logs *testenv.Buffer
	done chan error
	// listen is where it serves HTTP, for get and waitOK.
	listen string
}

func startProc(t *testing.T, bin, listen string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), logs: &testenv.Buffer{}, done: make(chan error, 1), listen: listen}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// get fetches path from the process's HTTP listener.
func (p *proc) get(path string) (int, string, error) {
	resp, err := http.Get("http://" + p.listen + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// waitOK waits until path answers 200, or fails the test with the log.
func (p *proc) waitOK(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	if err := testenv.Poll(timeout, path+" answering 200", func() bool {
		code, _, err := p.get(path)
		return err == nil && code == http.StatusOK
	}); err != nil {
		t.Fatalf("%v; log:\n%s", err, p.logs.String())
	}
}

// stop sends SIGTERM and wants exit 0 within timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, p.logs.String())
		}
	case <-time.After(timeout):
		t.Fatalf("still running %s after SIGTERM; log:\n%s", timeout, p.logs.String())
	}
}
