package crypto_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

// toolTimeout bounds every external program: a hung gpg-agent must fail a
// test, not stall the suite.
const toolTimeout = 60 * time.Second

// result is what an external program did.
type result struct {
	stdout, stderr string
	err            error // non-nil on a non-zero exit
}

func (r result) String() string {
	return "err=" + errString(r.err) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func run(t testing.TB, env []string, stdin []byte, prog string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %v", prog, strings.Join(args, " "), toolTimeout)
	}
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

// gpgHome is a throwaway GnuPG home. Its path is short: gpg-agent's socket
// path must fit in a sockaddr_un.
type gpgHome struct {
	t   testing.TB
	gpg string
	dir string
}

func newGPG(t testing.TB) *gpgHome {
	t.Helper()
	gpg := testenv.LookPath(t, "gpg", "gnupg")
	dir, err := os.MkdirTemp("", "kdg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &gpgHome{t: t, gpg: gpg, dir: dir}
	t.Cleanup(func() {
		if gc, err := exec.LookPath("gpgconf"); err == nil {
			_ = exec.Command(gc, "--homedir", dir, "--kill", "all").Run()
		}
		_ = os.RemoveAll(dir)
	})
	return h
}

// run runs gpg in batch mode with a loopback pinentry and status lines on
// stdout.
func (h *gpgHome) run(stdin []byte, args ...string) result {
	h.t.Helper()
	base := []string{"--homedir", h.dir, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--status-fd", "1"}
	return run(h.t, nil, stdin, h.gpg, append(base, args...)...)
}

func (h *gpgHome) must(stdin []byte, args ...string) result {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.err != nil {
		h.t.Fatalf("gpg %s: %v", strings.Join(args, " "), r)
	}
	return r
}

func (h *gpgHome) importKey(armored string, passphrase string) {
	h.t.Helper()
	h.must([]byte(armored), "--passphrase", passphrase, "--import")
}

// genKey makes a key with gpg --quick-gen-key (algo, usage, expiry as gpg
// takes them) and returns its fingerprint.
func (h *gpgHome) genKey(uid, algo, usage, expire string) string {
	h.t.Helper()
	h.must(nil, "--passphrase", "", "--quick-gen-key", uid, algo, usage, expire)
	r := h.must(nil, "--with-colons", "--list-keys", uid)
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			return f[9]
		}
	}
	h.t.Fatalf("gpg: no fingerprint for %s in %s", uid, r.stdout)
	return ""
}

func (h *gpgHome) addKey(fpr, algo, usage, expire string) {
	h.t.Helper()
	h.must(nil, "--passphrase", "", "--quick-add-key", fpr, algo, usage, expire)
}

func (h *gpgHome) export(fpr string) []byte {
	h.t.Helper()
	return []byte(h.must(nil, "--armor", "--export", fpr).stdout)
}

// revoke imports the revocation certificate gpg wrote when it made the key.
func (h *gpgHome) revoke(fpr string) {
	h.t.Helper()
	rev, err := os.ReadFile(filepath.Join(h.dir, "openpgp-revocs.d", fpr+".rev"))
	if err != nil {
		h.t.Fatal(err)
	}
	// gpg guards the certificate with a ':' before its armor line so that it
	// cannot be imported by accident.
	rev = bytes.Replace(rev, []byte(":-----BEGIN PGP PUBLIC KEY BLOCK-----"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"), 1)
	h.must(rev, "--import")
}

// statusLines returns gpg's [GNUPG:] status lines, without the prefix.
func statusLines(stdout string) []string {
	var out []string
	for _, l := range strings.Split(stdout, "\n") {
		if s, ok := strings.CutPrefix(l, "[GNUPG:] "); ok {
			out = append(out, s)
		}
	}
	return out
}

func hasStatus(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// unlocked returns the armored private key without its passphrase, for the
// tools that cannot be given one without a terminal (sq).
func unlocked(t testing.TB, armored string, passphrase []byte) string {
	t.Helper()
	k, err := pgp.NewKeyFromArmored(armored)
	if err != nil {
		t.Fatal(err)
	}
	if locked, _ := k.IsLocked(); locked {
		if k, err = k.Unlock(passphrase); err != nil {
			t.Fatal(err)
		}
	}
	s, err := k.Armor()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeTemp(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
