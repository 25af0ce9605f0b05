// Package natstest runs real nats-server processes for tests: it builds the
// server from the module version in go.mod (once, into a cache shared by
// every test process), makes a throwaway TLS CA with server and client
// certificates, and starts a 3-node JetStream cluster on loopback ports
// from the configuration files of deploy/nats, with ports, routes, store
// directories and certificate paths set for the test.
//
// Invariants: the processes it starts are stopped when the test ends; a
// node is killed with SIGKILL (no graceful shutdown), as a crash would.
package natstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

const serverModule = "github.com/nats-io/nats-server/v2"

// ServerVersion is the nats-server module version in keydesk's go.mod.
func ServerVersion() (string, error) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == serverModule {
				if d.Replace != nil {
					return d.Replace.Version, nil
				}
				return d.Version, nil
			}
		}
	}
	// Test binaries carry no dependency list: ask the go command.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", serverModule).Output()
	if v := string(bytes.TrimSpace(out)); err == nil && v != "" {
		return v, nil
	}
	return "", fmt.Errorf("no version of %s in keydesk's go.mod (go list: %v)", serverModule, err)
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// Binary returns the path of a nats-server binary of ServerVersion. The
// environment variable KEYDESK_NATS_SERVER names one to use instead; else it
// is built with `go build` into $TMPDIR/keydesk-nats-server-<version>, once
// for every test process on the machine (a file lock serialises builds; the
// first takes a few minutes).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KEYDESK_NATS_SERVER"); p != "" {
		return p
	}
	buildOnce.Do(func() { buildOnce.path, buildOnce.err = build() })
	if buildOnce.err != nil {
		if testenv.InCI() {
			t.Fatalf("natstest: %v", buildOnce.err)
		}
		t.Skipf("natstest: cannot build nats-server: %v", buildOnce.err)
	}
	return buildOnce.path
}

func build() (string, error) {
	v, err := ServerVersion()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "keydesk-nats-server-"+v)
	bin := filepath.Join(dir, "nats-server")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go is not on PATH: %w", err)
	}
	// Build inside keydesk's module, so the version is exactly the one in
	// go.mod and go.sum vouches for it, offline.
	modDir, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(modDir)) == 0 || string(bytes.TrimSpace(modDir)) == os.DevNull {
		return "", fmt.Errorf("cannot find keydesk's go.mod from %s", mustGetwd())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, serverModule)
	cmd.Dir = filepath.Dir(string(bytes.TrimSpace(modDir)))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s (%s): %v\n%s", serverModule, v, err, out.String())
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
