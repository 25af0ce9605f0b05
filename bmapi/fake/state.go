package fake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
)

// stateFile is the state file's shape. Secrets appear only as hashes.
type stateFile struct {
	Version int `json:"version"`
	// NextID was a counter shared by every account; ids are now numbered
	// per account from the keys themselves. Read and ignored.
	NextID int        `json:"next_id,omitempty"`
	Keys   []stateKey `json:"keys"`
}

type stateKey struct {
	ID           string          `json:"id"`
	Account      string          `json:"account"`
	Label        string          `json:"label"`
	APIKey       string          `json:"api_key"`
	SecretSHA256 string          `json:"secret_sha256"`
	Scopes       []keydesk.Scope `json:"scopes"`
	CreatedAt    time.Time       `json:"created_at"`
	RevokedAt    time.Time       `json:"revoked_at,omitzero"`
	Seeded       bool            `json:"seeded,omitempty"`
}

const maxStateBytes = 256 << 20

// load reads the state file, if there is one.
func (s *Server) load() error {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fake: state: %w", err)
	}
	if len(b) > maxStateBytes {
		return fmt.Errorf("fake: state %s is larger than %d bytes", s.path, maxStateBytes)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("fake: state %s is not valid JSON (%v): move it aside to start afresh", s.path, err)
	}
	if st.Version != 1 {
		return fmt.Errorf("fake: state %s has version %d, want 1", s.path, st.Version)
	}
	for i, sk := range st.Keys {
		h, err := hex.DecodeString(sk.SecretSHA256)
		if err != nil || len(h) != sha256.Size || sk.ID == "" || sk.APIKey == "" || sk.Account == "" {
			return fmt.Errorf("fake: state %s: keys[%d] is incomplete", s.path, i)
		}
		if _, dup := s.byAPIKey[sk.APIKey]; dup {
			return fmt.Errorf("fake: state %s: keys[%d]: api_key %q appears twice", s.path, i, sk.APIKey)
		}
		k := &key{ID: sk.ID, Account: sk.Account, Label: sk.Label, APIKey: sk.APIKey, Scopes: slices.Clone(sk.Scopes),
			CreatedAt: sk.CreatedAt, RevokedAt: sk.RevokedAt, Seeded: sk.Seeded}
		copy(k.SecretHash[:], h)
		s.addKey(k)
	}
	return nil
}

// save writes the state file atomically: a temporary file in the same
// directory, renamed over the old one. It is not fsynced: the simulator
// survives its own restarts, not a power loss. s.mu held.
func (s *Server) save() error {
	if s.path == "" {
		return nil
	}
	st := stateFile{Version: 1, Keys: []stateKey{}}
	var accounts []string
	for a := range s.accounts {
		accounts = append(accounts, a)
	}
	slices.Sort(accounts)
	for _, a := range accounts {
		for _, k := range s.accounts[a] {
			st.Keys = append(st.Keys, stateKey{ID: k.ID, Account: k.Account, Label: k.Label, APIKey: k.APIKey,
				SecretSHA256: hex.EncodeToString(k.SecretHash[:]), Scopes: k.Scopes, CreatedAt: k.CreatedAt,
				RevokedAt: k.RevokedAt, Seeded: k.Seeded})
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("fake: state: %w", err)
	}
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+strings.TrimPrefix(base, ".")+".tmp*")
	if err != nil {
		return fmt.Errorf("fake: state: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("fake: state %s: %w", s.path, err)
	}
	if err := os.Rename(f.Name(), s.path); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("fake: state: %w", err)
	}
	return nil
}
