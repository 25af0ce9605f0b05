// Package dovecottest runs a real Dovecot IMAP server on loopback for tests
// and benchmarks: a generated configuration in a private directory, one
// passwd-file user, Maildir storage, plain-text login on 127.0.0.1 only.
//
// Invariants: the Debian package's own service and configuration are never
// used or touched; everything the server writes lives under its directory,
// which is removed on Close; the server listens on loopback only. When the
// process runs as root (as CI does), mail is owned by an unprivileged system
// user, since Dovecot refuses to serve mail as UID 0.
package dovecottest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

// Options configure New.
type Options struct {
	// Dovecot is the dovecot binary. Default: found on PATH.
	Dovecot string
	// User and Password of the one mail user. Default keydesk / a random one.
	User, Password string
	// Dir holds the configuration, state and mail. Default: a new temporary
	// directory, removed on Close.
	Dir string
	// Extra is appended to the generated configuration.
	Extra string
}

// Server is a running Dovecot.
type Server struct {
	// Addr is host:port of the plain IMAP listener.
	Addr string
	// User and Password log in.
	User, Password string
	// Maildir is the user's Maildir root (INBOX); folder F is Maildir/.F.
	Maildir string

	dir, conf, dovecot string
	ownDir             bool
	uid, gid           int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	seq  atomic.Uint64
}

// Start runs a Dovecot for the test and stops it when the test ends. It
// skips (or fails under CI) when Dovecot is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := testenv.LookPath(t, "dovecot", "dovecot-imapd")
	s, err := New(Options{Dovecot: bin})
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("dovecottest: close: %v", err)
		}
	})
	return s
}

// New writes a configuration and starts Dovecot on a free loopback port.
func New(o Options) (*Server, error) {
	if o.Dovecot == "" {
		p, err := exec.LookPath("dovecot")
		if err != nil {
			return nil, errors.New("dovecottest: dovecot is not installed (Debian package dovecot-imapd)")
		}
		o.Dovecot = p
	}
	if o.User == "" {
		o.User = "keydesk"
	}
	if o.Password == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		o.Password = hex.EncodeToString(b[:])
	}
	s := &Server{User: o.User, Password: o.Password, dovecot: o.Dovecot}
	if o.Dir == "" {
		// Not t.TempDir: its parents are mode 0700 and root-owned, and the
		// mail user must be able to reach the mail.
		d, err := os.MkdirTemp("", "dovecottest-")
		if err != nil {
			return nil, fmt.Errorf("dovecottest: %w", err)
		}
		o.Dir, s.ownDir = d, true
	}
	s.dir = o.Dir
	if err := s.prepare(o.Extra); err != nil {
		s.cleanup()
		return nil, err
	}
	if err := s.Run(); err != nil {
		s.cleanup()
		return nil, err
	}
	return s, nil
}

// mailOwner picks who owns the mail: the current user, or when that is
// root, an unprivileged system user.
func mailOwner() (name string, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return "", 0, 0, err
		}
		return u.Username, os.Geteuid(), os.Getegid(), nil
	}
	for _, n := range []string{"dovecot", "nobody"} {
		u, err := user.Lookup(n)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return n, uid, gid, nil
	}
	return "", 0, 0, errors.New("dovecottest: running as root, but no unprivileged user (dovecot, nobody) to own the mail")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) prepare(extra string) error {
	owner, uid, gid, err := mailOwner()
	if err != nil {
		return err
	}
	s.uid, s.gid = uid, gid
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("dovecottest: free port: %w", err)
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	home := filepath.Join(s.dir, "home", s.User)
	s.Maildir = filepath.Join(home, "Maildir")
	if err := s.makeDirs(); err != nil {
		return err
	}
	passwd := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s\n", s.User, s.Password, uid, gid, home)
	if err := os.WriteFile(filepath.Join(s.dir, "passwd"), []byte(passwd), 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	s.conf = filepath.Join(s.dir, "dovecot.conf")
	if err := os.WriteFile(s.conf, []byte(config(s.dir, owner, uid, gid, port, extra)), 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return nil
}

// makeDirs makes the server's run and state directories and the user's
// Maildir, owned by the user the mail belongs to.
func (s *Server) makeDirs() error {
	for _, d := range []string{filepath.Join(s.dir, "run"), filepath.Join(s.dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
	}
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.Maildir, d), 0o700); err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
	}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if err := s.chownTree(filepath.Join(s.dir, "home")); err != nil {
		return err
	}
	return nil
}

// config is the server's dovecot.conf: a private loopback server, with
// extra appended.
func config(dir, owner string, uid, gid, port int, extra string) string {
	return fmt.Sprintf(confTemplate, dir, owner, uid, gid, port, groupName(gid), extra)
}

// confTemplate takes the directory, the owner's name, uid and gid, the
// port, the group's name and the extra settings.
const confTemplate = `# generated by dovecottest: a private loopback server
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = %[2]s
default_internal_group = %[6]s
default_login_user = %[2]s
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_location = maildir:~/Maildir
mailbox_list_index = no
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/passwd
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[5]d
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
%[7]s
`

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

func (s *Server) chownTree(root string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, s.uid, s.gid)
	})
}

// Run starts Dovecot (again, after Stop) and waits until it accepts
// connections.
func (s *Server) Run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("dovecottest: already running")
	}
	cmd := exec.Command(s.dovecot, "-F", "-c", s.conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dovecottest: start dovecot: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			return fmt.Errorf("dovecottest: dovecot exited: %s%s", out.String(), s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("dovecottest: dovecot did not listen on %s within 20s: %s%s", s.Addr, out.String(), s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd, s.done = cmd, done
	return nil
}

// Stop stops Dovecot, dropping every connection; Run starts it again on
// the same address with the same mail.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	// Dovecot's master waits long for IDLE sessions to end after SIGTERM;
	// a test restart need not: after a short grace, kill the whole group,
	// as a crash of the server would.
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	// The master is gone; make sure no child outlives it.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	s.cmd = nil
	// Wait until the port is free again, so that Run can bind it.
	if err := testenv.Poll(10*time.Second, "the port to be free", func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}); err != nil {
		return fmt.Errorf("dovecottest: %s still accepts connections after stop", s.Addr)
	}
	return nil
}

// Restart stops and starts Dovecot.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Run()
}

// Close stops Dovecot and removes its directory if New made it.
func (s *Server) Close() error {
	err := s.Stop()
	s.cleanup()
	return err
}

func (s *Server) cleanup() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

// Log returns Dovecot's log, for test failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "dovecot.log"))
	return string(b)
}

func (s *Server) logTail() string {
	l := s.Log()
	if len(l) > 4000 {
		l = l[len(l)-4000:]
	}
	if l == "" {
		return ""
	}
	return "\nlog:\n" + l
}

// FolderDir is the Maildir directory of a folder ("" or INBOX: the root).
func (s *Server) FolderDir(folder string) string {
	if folder == "" || strings.EqualFold(folder, "INBOX") {
		return s.Maildir
	}
	return filepath.Join(s.Maildir, "."+strings.ReplaceAll(folder, "/", "."))
}

// Deliver writes a message straight into a folder's Maildir new/, as a
// local delivery agent would: much faster than APPEND for filling a
// mailbox. The folder must exist (INBOX always does).
func (s *Server) Deliver(folder string, raw []byte) error {
	_, err := s.DeliverFile(folder, raw)
	return err
}

// DeliverFile is Deliver, returning the file's path in new/ (Dovecot
// renames it into cur/ once it has seen it).
func (s *Server) DeliverFile(folder string, raw []byte) (string, error) {
	dir := s.FolderDir(folder)
	name := fmt.Sprintf("%d.P%dQ%d.dovecottest,S=%d", time.Now().Unix(), os.Getpid(), s.seq.Add(1), len(raw))
	tmp := filepath.Join(dir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return "", fmt.Errorf("dovecottest: deliver: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(tmp, s.uid, s.gid); err != nil {
			return "", fmt.Errorf("dovecottest: deliver: %w", err)
		}
	}
	dst := filepath.Join(dir, "new", name)
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("dovecottest: deliver: %w", err)
	}
	return dst, nil
}

// Count returns how many messages a folder holds on disk (new and cur).
func (s *Server) Count(folder string) (int, error) {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(s.FolderDir(folder), sub))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		n += len(es)
	}
	return n, nil
}

// ChangeUIDValidity stops Dovecot, gives a folder a new UIDVALIDITY (as a
// restored backup or a rebuilt index would) and starts it again. The
// messages stay; their UIDs start over.
func (s *Server) ChangeUIDValidity(ctx context.Context, folder string) error {
	if err := s.Stop(); err != nil {
		return err
	}
	dir := s.FolderDir(folder)
	uidlist := filepath.Join(dir, "dovecot-uidlist")
	b, err := os.ReadFile(uidlist)
	if err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	// Header: "3 V<uidvalidity> N<nextuid> G<guid>".
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	fields := strings.Fields(string(line))
	for i, f := range fields {
		if strings.HasPrefix(f, "V") {
			v, err := strconv.ParseUint(f[1:], 10, 32)
			if err != nil {
				return fmt.Errorf("dovecottest: uidlist header %q", line)
			}
			fields[i] = "V" + strconv.FormatUint(v+1000, 10)
		}
	}
	_ = rest
	// Drop the UID assignments too, so every message gets a fresh UID.
	if err := os.WriteFile(uidlist, []byte(strings.Join(fields, " ")+"\n"), 0o600); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if os.Geteuid() == 0 {
		_ = os.Lchown(uidlist, s.uid, s.gid)
	}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if strings.HasPrefix(e.Name(), "dovecot.index") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Run()
}
