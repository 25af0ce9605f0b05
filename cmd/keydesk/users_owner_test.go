package main

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/buildmarkets/keydesk/review/users"
)

// TestUsersAddWriteKeepsOwner runs `keydesk users add --write` as root on
// a users file owned by another uid: the rewritten file must keep its
// owner, group and mode, or the service user could no longer read it. A
// new file takes its directory's owner and group; --owner sets them.
func TestUsersAddWriteKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another uid needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this host")
	}
	nuid, _ := strconv.Atoi(nobody.Uid)
	ngid, _ := strconv.Atoi(nobody.Gid)
	first := "users:\n  - name: zoe\n    role: admin\n    token_sha256: " + users.TokenDigest("kd_zoe") + "\n"
	for _, tc := range []struct {
		name     string
		existing bool
		fileUID  int // of the existing file, or of the directory for a new one
		fileGID  int
		mode     os.FileMode
		owner    string // --owner
		wantUID  int
		wantGID  int
		wantMode os.FileMode
	}{
		{name: "existing, group-readable", existing: true, fileUID: 4242, fileGID: 4243, mode: 0o640, wantUID: 4242, wantGID: 4243, wantMode: 0o640},
		{name: "existing, owner only", existing: true, fileUID: 4242, fileGID: 4242, mode: 0o600, wantUID: 4242, wantGID: 4242, wantMode: 0o600},
		{name: "new, from its directory", fileUID: 4244, fileGID: 4245, wantUID: 4244, wantGID: 4245, wantMode: 0o640},
		{name: "existing, --owner", existing: true, fileUID: 4242, fileGID: 4243, mode: 0o600, owner: "nobody", wantUID: nuid, wantGID: ngid, wantMode: 0o600},
		{name: "new, --owner uid:gid", fileUID: 0, fileGID: 0, owner: "4246:4247", wantUID: 4246, wantGID: 4247, wantMode: 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "users.yaml")
			if tc.existing {
				if err := os.WriteFile(path, []byte(first), tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(path, tc.fileUID, tc.fileGID); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Chown(dir, tc.fileUID, tc.fileGID); err != nil {
				t.Fatal(err)
			}
			args := []string{"ann", "--role", "approver", "--write", path}
			if tc.owner != "" {
				args = append(args, "--owner", tc.owner)
			}
			var out bytes.Buffer
			if err := runUsersAdd(&out, args); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != tc.wantUID || int(st.Gid) != tc.wantGID || fi.Mode().Perm() != tc.wantMode {
				t.Errorf("users.yaml is %d:%d %v; want %d:%d %v", st.Uid, st.Gid, fi.Mode().Perm(), tc.wantUID, tc.wantGID, tc.wantMode)
			}
			set, err := users.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := set.Lookup("ann"); !ok || tc.existing && set.Len() != 2 {
				t.Errorf("users.yaml after the add holds %d users, ann found %v", set.Len(), ok)
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
			if len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// TestUsersAddOwnerErrors: --owner names a user that must exist, and only
// goes with --write.
func TestUsersAddOwnerErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	var out bytes.Buffer
	err := runUsersAdd(&out, []string{"ann", "--role", "viewer", "--write", path, "--owner", "no-such-user-kd"})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`--owner: user "no-such-user-kd"`)) {
		t.Errorf("an unknown --owner: %v", err)
	}
	if err := runUsersAdd(&out, []string{"ann", "--role", "viewer", "--owner", "nobody"}); err != errUsage {
		t.Errorf("--owner without --write: %v, want the usage", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a refused add wrote %s", path)
	}
}

// TestUsersAddPerson: --person ties the account to a person at the
// identity provider, and users.yaml then says so; an address that is not
// one email is refused and nothing is written.
func TestUsersAddPerson(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	var out bytes.Buffer
	if err := runUsersAdd(&out, []string{"deploy-bot", "--role", "approver", "--person", "ann@corp.example", "--write", path}); err != nil {
		t.Fatal(err)
	}
	set, err := users.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := set.Lookup("deploy-bot")
	if !ok || u.Person != "ann@corp.example" || u.PersonKey() != "ann@corp.example" {
		t.Fatalf("deploy-bot in users.yaml: %+v (found %v), want tied to ann@corp.example", u, ok)
	}
	err = runUsersAdd(&out, []string{"other", "--role", "viewer", "--person", "Ann <ann@corp.example>", "--write", path})
	if err == nil || !strings.Contains(err.Error(), "person") {
		t.Fatalf("--person with a display name: %v, want an error naming person", err)
	}
	if set, _ := users.Load(path); set.Len() != 1 {
		t.Errorf("users.yaml has %d users after a refused add, want 1", set.Len())
	}
}
