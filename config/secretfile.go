package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// credentialsDirEnv is where systemd tells a service its credentials
// are (LoadCredential=): a directory of read-only files, one per
// credential, readable by the service alone.
const credentialsDirEnv = "CREDENTIALS_DIRECTORY"

// maxSecretBytes bounds a secret file: a password, passphrase, API secret
// or URL is far smaller, and a larger file is a wrong path, not a secret.
const maxSecretBytes = 64 << 10

// CredentialName is the name systemd gives the file at the relative path
// p of a directory loaded whole as a credential: "LoadCredential=secrets:
// /etc/keydesk/secrets" makes /etc/keydesk/secrets/imap-password the
// credential secrets_imap-password. So a config names its secret once,
// relative to its own directory (secrets/imap-password), and finds it
// under systemd and without it alike.
func CredentialName(p string) string {
	return strings.ReplaceAll(filepath.ToSlash(filepath.Clean(p)), "/", "_")
}

// readSecret reads the secret file p of a "<name>_file" key. An absolute
// p is read as it is. A relative p is looked for first in credsDir
// ($CREDENTIALS_DIRECTORY, when set) under its CredentialName, then
// relative to dir, the directory of the file that names it. Only a
// credential that does not exist falls through to dir: one that exists
// but cannot be read is an error, never silently replaced by another file.
func readSecret(p, dir, credsDir string) ([]byte, error) {
	if filepath.IsAbs(p) {
		return readBounded(p)
	}
	local := filepath.Join(dir, p)
	// A path that leaves its directory ("../x") is no file of a loaded
	// directory: it is only looked for where it points.
	if credsDir == "" || !filepath.IsLocal(p) {
		return readBounded(local)
	}
	cred := filepath.Join(credsDir, CredentialName(p))
	b, err := readBounded(cred)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	b, err = readBounded(local)
	if err != nil {
		return nil, fmt.Errorf("%s: not found as the credential %s (%s=%s) nor at %s: %w",
			p, CredentialName(p), credentialsDirEnv, credsDir, local, pathErr(err))
	}
	return b, nil
}

// readBounded reads at most maxSecretBytes of the regular file at p.
func readBounded(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(b) > maxSecretBytes {
		clear(b)
		return nil, fmt.Errorf("%s: larger than %d KiB: not a secret", p, maxSecretBytes>>10)
	}
	return b, nil
}

// pathErr drops the path an *fs.PathError repeats, keeping its cause
// ("permission denied", "no such file or directory").
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
