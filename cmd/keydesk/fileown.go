package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fileOwner is the user and group a written file is given.
type fileOwner struct {
	uid, gid int
	name     string // as the operator wrote it, for messages
}

// lookupOwner reads USER[:GROUP], names or numeric IDs (a number need not
// be in the user database); without GROUP, the user's primary group.
func lookupOwner(spec string) (*fileOwner, error) {
	uname, gname, _ := strings.Cut(spec, ":")
	o := &fileOwner{name: spec, gid: -1}
	if u, err := user.Lookup(uname); err == nil {
		o.uid, _ = strconv.Atoi(u.Uid)
		o.gid, _ = strconv.Atoi(u.Gid)
	} else if n, err := strconv.Atoi(uname); err == nil && n >= 0 {
		o.uid = n
		if u, err := user.LookupId(uname); err == nil {
			o.gid, _ = strconv.Atoi(u.Gid)
		}
	} else {
		return nil, fmt.Errorf("user %q: no such user on this host", uname)
	}
	if gname != "" {
		if g, err := user.LookupGroup(gname); err == nil {
			o.gid, _ = strconv.Atoi(g.Gid)
		} else if n, err := strconv.Atoi(gname); err == nil && n >= 0 {
			o.gid = n
		} else {
			return nil, fmt.Errorf("group %q: no such group on this host", gname)
		}
	}
	if o.gid < 0 {
		return nil, fmt.Errorf("user %s is a number without an entry in the user database: give its group too (%s:GROUP)", uname, uname)
	}
	return o, nil
}

// statOwner is who owns the file at path, and its permissions.
func statOwner(path string) (*fileOwner, os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fi.Mode().Perm(), nil
	}
	return &fileOwner{uid: int(st.Uid), gid: int(st.Gid), name: fmt.Sprintf("%d:%d", st.Uid, st.Gid)}, fi.Mode().Perm(), nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory and a rename, so that a reader (the review role
// re-reading users.yaml) sees the old file or the new one, never half of
// one. The new file gets mode and, when own is not nil, that owner: set on
// the temporary file before the rename, so the file is never readable by
// anyone it should not be.
func writeFileAtomic(path string, data []byte, mode os.FileMode, own *fileOwner) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if own != nil {
		if err := f.Chown(own.uid, own.gid); err != nil {
			return ownerError(path, own, err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// chownPath gives path to own (nil: leaves it).
func chownPath(path string, own *fileOwner) error {
	if own == nil {
		return nil
	}
	if err := os.Lchown(path, own.uid, own.gid); err != nil {
		return ownerError(path, own, err)
	}
	return nil
}

func ownerError(path string, own *fileOwner, err error) error {
	if errors.Is(err, os.ErrPermission) && os.Geteuid() != 0 {
		return fmt.Errorf("%s: cannot give it to %s (uid %d, gid %d): only root may; run this as root", path, own.name, own.uid, own.gid)
	}
	return fmt.Errorf("%s: give it to %s: %w", path, own.name, err)
}
