package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/mailsim"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestSystemdBoot boots keydesk.service as written, under a real systemd:
// a container of this machine's own OS (systemd-nspawn --volatile=yes:
// /usr from the host, everything else a tmpfs), with the unit, the
// example config made to reach loopback IMAP and SMTP servers of this
// test, and the secrets in root-only directories that only the unit's
// LoadCredential= can hand to the keydesk user. It checks what an
// operator would: /healthz and /readyz answer (readiness needs the IMAP
// login, so the password came through the credentials), the credentials
// are named secrets_NAME and partner-credentials_NAME, a secret the config
// does not name is absent and the unit starts anyway, and a reload keeps
// it running.
//
// It needs root and systemd-nspawn. Where systemd is not PID 1 (CI's
// Debian container) and the container cannot boot, it skips: the machine
// cannot run systemd at all. Where systemd is PID 1 and the test runs as
// root under CI, it must run.
func TestSystemdBoot(t *testing.T) {
	nspawn := systemdBootable(t)
	testenv.Short(t)
	root := t.TempDir()
	out := filepath.Join(root, "out")
	mkdirs(t, 0o755, out, filepath.Join(root, "system"))
	bin := filepath.Join(root, "opt", "keydesk")
	if b, err := exec.Command("go", "build", "-o", bin, "../cmd/keydesk").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	pass := make([]byte, 12)
	rand.Read(pass)
	imapSrv, err := mailsim.ServeIMAP("keydesk@buildmarkets.example", hex.EncodeToString(pass), mailsim.IMAPOptions{Mailboxes: []string{"Processed", "Rejected"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(imapSrv.Close)
	smtpPass := "smtp-" + hex.EncodeToString(pass)
	smtpSrv, err := mailsim.ServeSMTP(mailsim.SMTPOptions{Login: func(_, user, secret string) bool {
		return user == "keydesk@buildmarkets.example" && secret == smtpPass
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(smtpSrv.Close)
	listen := testenv.FreeAddr(t)
	writeBootEtc(t, root, imapSrv.Addr, smtpSrv.Addr, listen, hex.EncodeToString(pass), smtpPass)
	writeBootUnits(t, root, bin)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var console bytes.Buffer
	cmd := exec.CommandContext(ctx, nspawn, "-q", "--register=no", "--keep-unit", "--console=pipe",
		"-D", "/", "--volatile=yes",
		"--bind="+out+":/kdout",
		"--bind-ro="+filepath.Join(root, "system")+":/etc/systemd/system",
		"--bind-ro="+filepath.Join(root, "etc", "keydesk")+":/etc/keydesk",
		"--bind-ro="+filepath.Join(root, "etc", "passwd")+":/etc/passwd",
		"--bind-ro="+filepath.Join(root, "etc", "group")+":/etc/group",
		"--bind-ro="+filepath.Dir(bin)+":/opt/keydesk",
		"-b", "--", "systemd.unit=kdprobe.service", "systemd.firstboot=off")
	cmd.Stdout, cmd.Stderr = &console, &console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	bootOrSkip(t, out, exited, &console)
	serveErr := checkServing("http://"+listen, exited)
	// The probe collects what it sees (the journal too) once told, and
	// powers off: a failure is reported with it.
	if err := os.WriteFile(filepath.Join(out, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-ctx.Done():
		t.Fatalf("the container did not power off\n%s", console.String())
	}
	if serveErr != nil {
		b, _ := os.ReadFile(filepath.Join(out, "journal"))
		t.Fatalf("%v\njournal of keydesk.service:\n%s\n%s", serveErr, b, tail(console.String(), 4000))
	}
	checkProbe(t, out)
}

// systemdBootable returns systemd-nspawn, or skips (fails under CI on a
// machine whose PID 1 is systemd: that machine can run this test).
func systemdBootable(t *testing.T) string {
	t.Helper()
	pid1 := isSystemdPID1()
	if os.Geteuid() != 0 {
		t.Skip("booting a container needs root")
	}
	p, err := exec.LookPath("systemd-nspawn")
	if err != nil {
		if pid1 && testenv.InCI() {
			t.Fatal("systemd is PID 1 here but systemd-nspawn is missing: install the Debian package systemd-container")
		}
		t.Skip("systemd-nspawn is not installed (Debian package systemd-container): the unit's real boot is not tested")
	}
	return p
}

func isSystemdPID1() bool {
	exe, err := os.Readlink("/proc/1/exe")
	return err == nil && filepath.Base(exe) == "systemd"
}

// bootOrSkip waits for the probe unit's first word: the container booted
// systemd. A container that never gets there says the machine cannot
// boot one (no namespaces, no cgroups): a skip, except where systemd is
// PID 1 under CI.
func bootOrSkip(t *testing.T, out string, exited <-chan error, console *bytes.Buffer) {
	t.Helper()
	booted := func() bool { _, err := os.Stat(filepath.Join(out, "booted")); return err == nil }
	var early error
	err := testenv.Poll(60*time.Second, "the container boots", func() bool {
		select {
		case early = <-exited:
			return true
		default:
		}
		return booted()
	})
	if err == nil && booted() {
		return
	}
	if isSystemdPID1() && testenv.InCI() {
		t.Fatalf("systemd-nspawn did not boot (%v, %v):\n%s", err, early, console.String())
	}
	t.Skipf("systemd-nspawn cannot boot a container here (%v, %v): the unit's real boot is not tested\n%s", err, early, tail(console.String(), 2000))
}

// checkServing: keydesk answers /healthz, then /readyz (every role ready:
// the IMAP login worked, so the password was read).
func checkServing(base string, exited <-chan error) error {
	for _, p := range []string{"/healthz", "/readyz"} {
		var stopped error
		err := testenv.Poll(90*time.Second, p, func() bool {
			select {
			case stopped = <-exited:
				return true
			default:
			}
			resp, err := http.Get(base + p)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if stopped != nil {
			return fmt.Errorf("the container stopped (%v) before %s answered", stopped, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkProbe reads what the probe unit saw inside the container.
func checkProbe(t *testing.T, out string) {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("the probe left no %s: %v", name, err)
		}
		return string(b)
	}
	journal := read("journal")
	creds := strings.Fields(read("credentials"))
	for _, want := range []string{"secrets_imap-password", "secrets_smtp-password", "secrets_signing-passphrase", "partner-credentials_acme-production-secret", "partner-credentials_acme-sandbox-secret", "partner-credentials_globex-sandbox-secret"} {
		if !slices.Contains(creds, want) {
			t.Errorf("credential %s not loaded: %v\n%s", want, creds, journal)
		}
	}
	// Not configured, not in the directory: absent, and the unit ran
	// (the unit lists no secret by name).
	if slices.Contains(creds, "secrets_webhook-url") || slices.Contains(creds, "secrets_oidc-client-secret") || len(creds) != 6 {
		t.Errorf("credentials %v: want exactly the six files of the two directories", creds)
	}
	if s := read("state"); !strings.Contains(s, "ActiveState=active") || !strings.Contains(s, "NRestarts=0") {
		t.Errorf("after a reload keydesk.service is\n%s\n%s", s, journal)
	}
	if r := read("reload"); !strings.Contains(r, "reload=0") {
		t.Errorf("systemctl reload keydesk: %s\n%s", r, journal)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func mkdirs(t *testing.T, mode os.FileMode, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// bootGID is the keydesk user's and group's ID inside the container.
const bootGID = 990

// writeBootEtc lays out root/etc as the operator's guide does: the
// example config, made to reach this test's mail servers and listen on
// listen, in /etc/keydesk (0750 root:keydesk), the secrets in root-only
// directories; and passwd and group with the keydesk user.
func writeBootEtc(t *testing.T, root, imapAddr, smtpAddr, listen, imapPass, smtpPass string) {
	t.Helper()
	etc := filepath.Join(root, "etc", "keydesk")
	mkdirs(t, 0o750, etc)
	mkdirs(t, 0o755, filepath.Join(etc, "keys"))
	if err := os.Chown(etc, 0, bootGID); err != nil {
		t.Fatal(err)
	}
	mkdirs(t, 0o700, filepath.Join(etc, "secrets"), filepath.Join(etc, "partner-credentials"))
	cfg := readFile(t, "examples/keydesk.yaml")
	for _, r := range [][2]string{
		{"  address: imap.buildmarkets.example:993\n  security: tls ", "  address: " + imapAddr + "\n  security: none "},
		{"  address: smtp.buildmarkets.example:587\n  security: starttls\n", "  address: " + smtpAddr + "\n  security: none\n"},
		{"  listen: 127.0.0.1:8080", "  listen: " + listen},
	} {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("examples/keydesk.yaml no longer holds %q: update the test", r[0])
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	files := map[string]string{
		"keydesk.yaml":               cfg,
		"secrets/imap-password":      imapPass,
		"secrets/smtp-password":      smtpPass,
		"secrets/signing-passphrase": readFile(t, "examples/secrets/signing-passphrase"),
	}
	for _, f := range []string{"partners.yaml", "users.yaml", "batch.env", "keys/acme.asc", "keys/globex.asc", "keys/keydesk-signing.EXAMPLE.asc"} {
		files[f] = readFile(t, "examples/"+f)
	}
	creds, _ := filepath.Glob("examples/partner-credentials/*-secret")
	for _, c := range creds {
		files["partner-credentials/"+filepath.Base(c)] = readFile(t, c)
	}
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "secrets/") || strings.HasPrefix(name, "partner-credentials/") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nkeydesk:x:990:990:keydesk:/var/lib/keydesk:/usr/sbin/nologin\n"
	group := "root:x:0:\nkeydesk:x:990:\n"
	for name, content := range map[string]string{"passwd": passwd, "group": group} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeBootUnits installs keydesk.service as written (the binary at
// /opt/keydesk: the container's /usr is the host's, read-only) and the
// probe unit the container boots into, which starts keydesk, waits for
// the test to say it is done, looks at the unit, reloads it, and powers off.
func writeBootUnits(t *testing.T, root, bin string) {
	t.Helper()
	unit := strings.ReplaceAll(readFile(t, "systemd/keydesk.service"), "/usr/local/bin/keydesk", "/opt/keydesk/"+filepath.Base(bin))
	probe := `[Unit]
Description=keydesk boot test probe
Wants=keydesk.service
After=keydesk.service

[Service]
Type=oneshot
ExecStart=/bin/sh /kdout/probe.sh
`
	script := `echo booted > /kdout/booted
i=0
while [ ! -e /kdout/done ] && [ $i -lt 1500 ]; do sleep 0.1; i=$((i+1)); done
ls -1 /run/credentials/keydesk.service > /kdout/credentials 2>&1
systemctl reload keydesk; echo "reload=$?" > /kdout/reload
systemctl show -p ActiveState -p NRestarts keydesk > /kdout/state
journalctl -u keydesk --no-pager > /kdout/journal 2>&1
systemctl poweroff
`
	for p, content := range map[string]string{
		filepath.Join(root, "system", "keydesk.service"): unit,
		filepath.Join(root, "system", "kdprobe.service"): probe,
		filepath.Join(root, "out", "probe.sh"):           script,
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
