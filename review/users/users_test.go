package users

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var fast = Params{Memory: 64, Time: 1, Threads: 1}

func TestPasswordHashes(t *testing.T) {
	argon, err := HashPassword("correct horse", fast)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, password string
		ok                   bool
	}{
		{"argon2id right", argon, "correct horse", true},
		{"argon2id wrong", argon, "correct horsE", false},
		{"bcrypt right", string(bc), "correct horse", true},
		{"bcrypt wrong", string(bc), "battery staple", false},
		{"bcrypt over 72 bytes refused", string(bc), "correct horse" + strings.Repeat("x", 80), false},
		{"argon2id huge memory refused", "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "x", false},
		{"not a hash", "plaintext", "plaintext", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyPassword(tt.hash, tt.password)
			if (err == nil) != tt.ok {
				t.Fatalf("VerifyPassword = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestParseAndAuthenticate(t *testing.T) {
	h, _ := HashPassword("pw-alice", fast)
	_, tok, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	y := Entry(User{Name: "alice", Role: Approver, PasswordHash: h, TokenSHA256: TokenDigest(tok)}) +
		Entry(User{Name: "bot", Role: Viewer, TokenSHA256: TokenDigest("kd_other")})
	set, err := Parse("users.yaml", []byte("users:\n"+indent(y)))
	if err != nil {
		t.Fatal(err)
	}
	if u, err := set.Authenticate("alice", "pw-alice"); err != nil || u.Role != Approver {
		t.Fatalf("alice: %v %v", u, err)
	}
	if _, err := set.Authenticate("alice", "nope"); err != ErrBadLogin {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := set.Authenticate("mallory", "pw-alice"); err != ErrBadLogin {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := set.Authenticate("bot", ""); err != ErrBadLogin {
		t.Fatalf("token-only user logged in with a password: %v", err)
	}
	if u, ok := set.ByToken(tok); !ok || u.Name != "alice" {
		t.Fatalf("ByToken = %v %v", u, ok)
	}
	if _, ok := set.ByToken(tok + "x"); ok {
		t.Fatal("a wrong token matched")
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"bad role", "users:\n  - {name: a, role: root, token_sha256: " + strings.Repeat("a", 64) + "}\n", `role "root"`},
		{"no credential", "users:\n  - {name: a, role: viewer}\n", "neither password_hash nor token_sha256"},
		{"bad digest", "users:\n  - {name: a, role: viewer, token_sha256: abc}\n", "64 hex digits"},
		{"plain password", "users:\n  - {name: a, role: viewer, password_hash: hunter2}\n", "not a PHC"},
		{"duplicate", "users:\n  - {name: a, role: viewer, token_sha256: " + strings.Repeat("a", 64) + "}\n  - {name: a, role: viewer, token_sha256: " + strings.Repeat("b", 64) + "}\n", "twice"},
		{"unknown key", "users:\n  - {name: a, role: viewer, password: x}\n", "password"},
		{"bad person", "users:\n  - {name: a, role: viewer, person: \"Alice <alice@corp.example>\", token_sha256: " + strings.Repeat("a", 64) + "}\n", `users[0]: person "Alice <alice@corp.example>": write the person's email`},
		{"bad name", "users:\n  - {name: \"A B\", role: viewer, token_sha256: " + strings.Repeat("a", 64) + "}\n", "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("users.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestPersonKey: a token tied to a person counts as that person (by the
// email single sign-on records, in lower case); one not tied is its own.
func TestPersonKey(t *testing.T) {
	s, err := Parse("users.yaml", []byte("users:\n  - {name: ci-alice, role: approver, person: Alice@Corp.example, token_sha256: "+strings.Repeat("a", 64)+"}\n  - {name: bob, role: approver, token_sha256: "+strings.Repeat("b", 64)+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Lookup("ci-alice")
	b, _ := s.Lookup("bob")
	if a.PersonKey() != "alice@corp.example" || b.PersonKey() != "bob" {
		t.Fatalf("person keys %q, %q", a.PersonKey(), b.PersonKey())
	}
}

func TestRoles(t *testing.T) {
	if Viewer.Can(Approver) || !Approver.Can(Viewer) || !Admin.Can(Approver) || Approver.Can(Admin) || Role("x").Can(Viewer) {
		t.Fatal("role order is wrong")
	}
}

func TestSourceReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "users.yaml")
	write := func(name string) {
		y := "users:\n" + indent(Entry(User{Name: name, Role: Viewer, TokenSHA256: TokenDigest("kd_" + name)}))
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice")
	src, err := NewSource(p)
	if err != nil {
		t.Fatal(err)
	}
	src.Interval = 0
	write("bob")
	// Make sure the modification time differs on coarse file systems.
	_ = os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if _, ok := src.Current().Lookup("bob"); !ok {
		t.Fatal("the changed file was not read again")
	}
	if err := os.WriteFile(p, []byte("users: [{name: x, role: god}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(p, time.Now().Add(2*time.Second), time.Now().Add(2*time.Second))
	var got error
	src.OnError = func(err error) { got = err }
	if _, ok := src.Current().Lookup("bob"); !ok || got == nil {
		t.Fatalf("a broken file replaced the users in force (err %v)", got)
	}
}

func TestNewCredentials(t *testing.T) {
	pw, tok, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pw2, tok2, _ := NewCredentials()
	if pw == pw2 || tok == tok2 || len(pw) < 24 || !strings.HasPrefix(tok, "kd_") || len(tok) < 40 {
		t.Fatalf("weak credentials: %q %q", pw, tok)
	}
}
