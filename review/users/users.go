// Package users holds the support team's staff accounts, read from
// users.yaml: a name, a role, a password hash for the web login and the
// SHA-256 of an API token.
//
// Invariants: no password or token is ever stored, only a PHC-format hash
// (argon2id or bcrypt) and a token digest; every comparison is constant
// time and an unknown name costs as much as a known one, so timing tells
// nothing about who exists; hash parameters are bounded, so a hostile or
// mistyped file cannot make a login take minutes or gigabytes.
package users

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Role is what a staff member may do.
type Role string

const (
	// Viewer reads the queue, requests, batches and the audit trail.
	Viewer Role = "viewer"
	// Approver may also approve, reject, correct, retry and cancel requests.
	Approver Role = "approver"
	// Admin may also run a batch now.
	Admin Role = "admin"
)

// Can reports whether a role is at least need.
func (r Role) Can(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Approver:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// User is one staff member.
type User struct {
	Name         string `yaml:"name"`
	Role         Role   `yaml:"role"`
	PasswordHash string `yaml:"password_hash,omitempty"`
	TokenSHA256  string `yaml:"token_sha256,omitempty"`
	// Person is the email, at the identity provider, of the person this
	// account (an API token, a break-glass password) acts for: four eyes
	// counts it as that person, and the audit trail names them. Empty:
	// the account is a person of its own.
	Person string `yaml:"person,omitempty"`
}

// PersonKey is who the user is for four eyes: the person it is tied to
// (their email, lower-cased, as single sign-on records it), or else the
// account itself. Account names cannot hold an "@", so the two never meet.
func (u User) PersonKey() string {
	if u.Person != "" {
		return strings.ToLower(u.Person)
	}
	return u.Name
}

// File is users.yaml.
type File struct {
	Users []User `yaml:"users"`
}

// Set is a loaded, validated users file.
type Set struct {
	users  []User
	tokens [][]byte // decoded token digests, parallel to users
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// maxFileBytes bounds users.yaml.
const maxFileBytes = 1 << 20

// Parse reads and validates a users file; the error lists every problem.
func Parse(name string, data []byte) (*Set, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFileBytes)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	bad := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: users[%d]: %s", name, i, fmt.Sprintf(format, args...)))
	}
	s := &Set{}
	seen := map[string]bool{}
	for i, u := range f.Users {
		if !nameRE.MatchString(u.Name) {
			bad(i, "name %q: use lower-case letters, digits, '.', '_' or '-' (at most 64)", u.Name)
		}
		if seen[u.Name] {
			bad(i, "name %q appears twice", u.Name)
		}
		seen[u.Name] = true
		if !u.Role.Valid() {
			bad(i, "role %q: use viewer, approver or admin", u.Role)
		}
		if u.PasswordHash == "" && u.TokenSHA256 == "" {
			bad(i, "%s has neither password_hash nor token_sha256: they could never sign in", u.Name)
		}
		if u.PasswordHash != "" {
			if err := checkHash(u.PasswordHash); err != nil {
				bad(i, "password_hash: %v", err)
			}
		}
		if u.Person != "" {
			if a, err := mail.ParseAddress(u.Person); err != nil || a.Address != u.Person || len(u.Person) > 254 {
				bad(i, "person %q: write the person's email at the identity provider (one address, no name)", u.Person)
			}
		}
		var tok []byte
		if u.TokenSHA256 != "" {
			b, err := hex.DecodeString(strings.ToLower(u.TokenSHA256))
			if err != nil || len(b) != sha256.Size {
				bad(i, "token_sha256: want 64 hex digits (the SHA-256 of the token)")
			}
			tok = b
		}
		s.users = append(s.users, u)
		s.tokens = append(s.tokens, tok)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Load reads a users file from disk.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return Parse(path, data)
}

// Len is the number of users.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.users)
}

// All returns every user, in file order.
func (s *Set) All() []User {
	if s == nil {
		return nil
	}
	return slices.Clone(s.users)
}

// Lookup returns a user by name.
func (s *Set) Lookup(name string) (User, bool) {
	if s == nil {
		return User{}, false
	}
	for _, u := range s.users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// dummyHash is verified when the name is unknown, so that a login for a
// name that does not exist takes as long as one that does.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("keydesk-no-such-user", DefaultParams)
	return h
})

// ErrBadLogin is returned for a wrong name or password alike.
var ErrBadLogin = errors.New("users: wrong name or password")

// Authenticate checks a name and password.
func (s *Set) Authenticate(name, password string) (User, error) {
	u, ok := s.Lookup(name)
	if !ok || u.PasswordHash == "" {
		_ = VerifyPassword(dummyHash(), password)
		return User{}, ErrBadLogin
	}
	if err := VerifyPassword(u.PasswordHash, password); err != nil {
		return User{}, ErrBadLogin
	}
	return u, nil
}

// ByToken returns the user whose token digest matches token. Every digest
// is compared, in constant time.
func (s *Set) ByToken(token string) (User, bool) {
	if s == nil || token == "" {
		return User{}, false
	}
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i, d := range s.tokens {
		if d != nil && subtle.ConstantTimeCompare(d, sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return User{}, false
	}
	return s.users[found], true
}

// Params are argon2id parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultParams follow OWASP's argon2id baseline (19 MiB, 2 passes, 1
// lane): about 30 ms on a small server.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

// Limits a stored hash may not exceed.
const (
	maxMemoryKiB = 256 * 1024
	maxTime      = 16
	maxThreads   = 16
)

// HashPassword returns a PHC-format argon2id hash of password.
func HashPassword(password string, p Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

type argonHash struct {
	p         Params
	salt, key []byte
}

func parseArgon2id(h string) (argonHash, error) {
	// $argon2id$v=19$m=19456,t=2,p=1$salt$hash
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return argonHash{}, errors.New("not a PHC argon2id hash ($argon2id$v=19$m=…,t=…,p=…$salt$hash)")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return argonHash{}, fmt.Errorf("argon2 version %q: only v=%d is supported", parts[2], argon2.Version)
	}
	var a argonHash
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return argonHash{}, fmt.Errorf("argon2id parameter %q is not a number", kv)
		}
		switch k {
		case "m":
			a.p.Memory = uint32(n)
		case "t":
			a.p.Time = uint32(n)
		case "p":
			if n > 255 {
				return argonHash{}, errors.New("argon2id p is too large")
			}
			a.p.Threads = uint8(n)
		default:
			return argonHash{}, fmt.Errorf("argon2id parameter %q is unknown", k)
		}
	}
	switch {
	case a.p.Memory < 8 || a.p.Memory > maxMemoryKiB:
		return argonHash{}, fmt.Errorf("argon2id m=%d is out of range 8..%d KiB", a.p.Memory, maxMemoryKiB)
	case a.p.Time < 1 || a.p.Time > maxTime:
		return argonHash{}, fmt.Errorf("argon2id t=%d is out of range 1..%d", a.p.Time, maxTime)
	case a.p.Threads < 1 || a.p.Threads > maxThreads:
		return argonHash{}, fmt.Errorf("argon2id p=%d is out of range 1..%d", a.p.Threads, maxThreads)
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return argonHash{}, errors.New("argon2id salt is not unpadded base64 of at least 8 bytes")
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.key) < 16 || len(a.key) > 64 {
		return argonHash{}, errors.New("argon2id hash is not unpadded base64 of 16 to 64 bytes")
	}
	return a, nil
}

func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon2id(h)
		return err
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil {
			return fmt.Errorf("bcrypt: %v", err)
		}
		if cost > 14 {
			return fmt.Errorf("bcrypt cost %d is above 14: a login would take seconds", cost)
		}
		return nil
	}
	return errors.New("not a PHC argon2id ($argon2id$…) or bcrypt ($2b$…) hash; make one with 'keydesk users add'")
}

// VerifyPassword checks password against a PHC argon2id or bcrypt hash.
func VerifyPassword(hash, password string) error {
	if len(password) > 1024 {
		return ErrBadLogin
	}
	if strings.HasPrefix(hash, "$argon2id$") {
		a, err := parseArgon2id(hash)
		if err != nil {
			return err
		}
		got := argon2.IDKey([]byte(password), a.salt, a.p.Time, a.p.Memory, a.p.Threads, uint32(len(a.key)))
		if subtle.ConstantTimeCompare(got, a.key) != 1 {
			return ErrBadLogin
		}
		return nil
	}
	if err := checkHash(hash); err != nil {
		return err
	}
	if len(password) > 72 { // bcrypt reads 72 bytes; refuse rather than truncate
		return ErrBadLogin
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		return ErrBadLogin
	}
	return nil
}

// TokenDigest is the hex SHA-256 of a token, as users.yaml stores it.
func TokenDigest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewCredentials makes a random password (for people: 24 characters of
// base32) and API token (kd_ and 43 characters of base64url, 256 bits).
func NewCredentials() (password, token string, err error) {
	pw := make([]byte, 15)
	tk := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(tk); err != nil {
		return "", "", err
	}
	p := strings.ToLower(base32NoPad(pw))
	// Groups of six read and type more easily: abcdef-ghijkl-…
	var b strings.Builder
	for i := 0; i < len(p); i += 6 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(p[i:min(i+6, len(p))])
	}
	return b.String(), "kd_" + base64.RawURLEncoding.EncodeToString(tk), nil
}

// NewAccount makes a staff account with fresh credentials: the User to
// store (hashes only), and the password and token to hand over once.
func NewAccount(name string, role Role) (u User, password, token string, err error) {
	password, token, err = NewCredentials()
	if err != nil {
		return User{}, "", "", err
	}
	hash, err := HashPassword(password, DefaultParams)
	if err != nil {
		return User{}, "", "", err
	}
	return User{Name: name, Role: role, PasswordHash: hash, TokenSHA256: TokenDigest(token)}, password, token, nil
}

func base32NoPad(b []byte) string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789" // no l, o, 0, 1
	var out []byte
	var acc uint32
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		out = append(out, alphabet[(acc<<(5-bits))&31])
	}
	return string(out)
}

// Entry renders a user as a users.yaml list item.
func Entry(u User) string {
	b, _ := yaml.Marshal([]User{u})
	return string(b)
}

// Source holds the users file in force and reads it again when it
// changes on disk (checked at most every Interval), so that adding a
// staff member needs no restart. A file with problems is refused and the
// set in force kept.
type Source struct {
	Path     string
	Interval time.Duration
	OnError  func(error)

	mu      sync.Mutex
	cur     *Set
	modTime time.Time
	size    int64
	checked time.Time
}

// NewSource loads path now; a problem is an error.
func NewSource(path string) (*Source, error) {
	s := &Source{Path: path, Interval: 2 * time.Second}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	set, err := Load(path)
	if err != nil {
		return nil, err
	}
	s.cur, s.modTime, s.size, s.checked = set, st.ModTime(), st.Size(), time.Now()
	return s, nil
}

// Static returns a Source that always returns set.
func Static(set *Set) *Source { return &Source{cur: set} }

// Current returns the users in force.
func (s *Source) Current() *Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Path == "" || time.Since(s.checked) < s.Interval {
		return s.cur
	}
	s.checked = time.Now()
	st, err := os.Stat(s.Path)
	if err != nil || (st.ModTime().Equal(s.modTime) && st.Size() == s.size) {
		return s.cur
	}
	set, err := Load(s.Path)
	if err != nil {
		if s.OnError != nil {
			s.OnError(err)
		}
		return s.cur
	}
	s.cur, s.modTime, s.size = set, st.ModTime(), st.Size()
	return s.cur
}
