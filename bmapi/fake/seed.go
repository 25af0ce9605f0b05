package fake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// Seed is the simulator's starting point: partner accounts and the
// keys:manage keys keydesk uses to call the API for them. As JSON:
//
//	{"accounts": [{"id": "acme", "manager_keys": [
//	    {"api_key": "bm_key_acme_mgr", "api_secret": "bm_secret_acme_mgr",
//	     "scopes": ["keys:manage"]}]}]}
type Seed struct {
	Accounts []SeedAccount `json:"accounts"`
}

// SeedAccount is one partner account.
type SeedAccount struct {
	ID          string    `json:"id"`
	ManagerKeys []SeedKey `json:"manager_keys"`
}

// SeedKey is a key that exists from the start. Its secret is only hashed:
// the simulator keeps no secret in plain text.
type SeedKey struct {
	APIKey    string          `json:"api_key"`
	APISecret string          `json:"api_secret"`
	Scopes    []keydesk.Scope `json:"scopes"`
	// Label defaults to "manager".
	Label string `json:"label,omitempty"`
}

// maxSeedBytes bounds a seed file.
const maxSeedBytes = 4 << 20

// LoadSeed reads and checks a seed file.
func LoadSeed(path string) (*Seed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fake: seed: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSeedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fake: seed %s: %w", path, err)
	}
	if len(b) > maxSeedBytes {
		return nil, fmt.Errorf("fake: seed %s is larger than %d bytes", path, maxSeedBytes)
	}
	s, err := ParseSeed(b)
	if err != nil {
		return nil, fmt.Errorf("fake: seed %s: %w", path, err)
	}
	return s, nil
}

// ParseSeed reads a seed and checks it, reporting every problem.
func ParseSeed(b []byte) (*Seed, error) {
	var s Seed
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("not valid seed JSON: %v", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks that accounts are named once, and that every key is
// complete, unique and has valid scopes.
func (s *Seed) Validate() error {
	var errs []error
	accounts := map[string]bool{}
	keys := map[string]bool{}
	for i, a := range s.Accounts {
		where := fmt.Sprintf("accounts[%d]", i)
		switch {
		case strings.TrimSpace(a.ID) == "":
			errs = append(errs, fmt.Errorf("%s: id is empty", where))
		case accounts[a.ID]:
			errs = append(errs, fmt.Errorf("%s: account %q is listed twice", where, a.ID))
		}
		accounts[a.ID] = true
		for j, k := range a.ManagerKeys {
			where := fmt.Sprintf("%s.manager_keys[%d]", where, j)
			if k.APIKey == "" || k.APISecret == "" {
				errs = append(errs, fmt.Errorf("%s: api_key and api_secret are required", where))
			}
			if keys[k.APIKey] {
				errs = append(errs, fmt.Errorf("%s: api_key %q is used twice", where, k.APIKey))
			}
			keys[k.APIKey] = true
			for _, sc := range k.Scopes {
				if !sc.Valid() {
					errs = append(errs, fmt.Errorf("%s: %q is not a scope", where, sc))
				}
			}
		}
	}
	return errors.Join(errs...)
}
