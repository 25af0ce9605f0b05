// Package testenv lets tests depend on real external programs (gpg, rnp,
// sq, sqop, dovecot, chromium, nats-server) honestly: under CI (CI=true) a
// missing program fails the test, since .ci/run installs them all; on a
// developer's machine it skips with a message saying what to install.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool { return os.Getenv("CI") != "" }

// LookPath returns the path of program, or fails (CI) or skips the test.
// pkg is the Debian package that provides it.
func LookPath(t testing.TB, program, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%s is not installed (Debian package %s): .ci/run must install it", program, pkg)
	}
	t.Skipf("%s is not installed: apt-get install %s to run this test", program, pkg)
	return ""
}

// Short skips a slow test under -short, never under CI.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() && !InCI() {
		t.Skip("slow test skipped with -short")
	}
}

// FreeAddr returns a loopback address with a port free a moment ago, for
// a server a test starts in another process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
