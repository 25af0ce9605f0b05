package review

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestSafeNext holds the post-login redirect on this site whatever next
// holds: a browser drops tabs and line breaks from a Location and reads a
// backslash as a slash.
func TestSafeNext(t *testing.T) {
	tests := []struct{ name, next, want string }{
		{"path", "/requests/KR-20261127-7QX4", "/requests/KR-20261127-7QX4"},
		{"path and query", "/queue?state=approved&partner=acme", "/queue?state=approved&partner=acme"},
		{"empty", "", "/queue"},
		{"relative", "queue", "/queue"},
		{"absolute URL", "https://evil.example/x", "/queue"},
		{"scheme-relative", "//evil.example/x", "/queue"},
		{"backslash", "/\\evil.example/x", "/queue"},
		{"tab", "/\t/evil.example/x", "/queue"},
		{"line break", "/\n/evil.example/x", "/queue"},
		{"carriage return", "/\r/evil.example", "/queue"},
		{"tab and backslash", "/\t\\evil.example", "/queue"},
		{"NUL", "/queue\x00", "/queue"},
		{"DEL", "/\x7f/evil.example", "/queue"},
		{"C1 control", "/\u0085/evil.example", "/queue"},
		{"format character", "/\u200b/evil.example", "/queue"},
		{"scheme after slash", "/javascript:alert(1)", "/javascript:alert(1)"},
		{"too long", "/" + string(make([]byte, 600)), "/queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := safeNext(tt.next); got != tt.want {
				t.Errorf("safeNext(%q) = %q, want %q", tt.next, got, tt.want)
			}
		})
	}
}

// TestLoginNextStaysOnSite follows the links of the issue: a signed-in
// user opening /login?next=/%09/host/x, and one signing in through it.
func TestLoginNextStaysOnSite(t *testing.T) {
	e := newEnv(t)
	const hostile = "/\t/evil.example/x"
	b := e.login("alice")
	code, h, _ := b.get("/login?next=" + url.QueryEscape(hostile))
	if code != http.StatusSeeOther || h.Get("Location") != "/queue" {
		t.Fatalf("signed in, GET /login?next=%%09…: %d %q, want a redirect to /queue", code, h.Get("Location"))
	}
	code, h, _ = e.browser().post("/login", url.Values{"username": {"bob"}, "password": {password("bob")}, "next": {hostile}})
	if code != http.StatusSeeOther || h.Get("Location") != "/queue" {
		t.Fatalf("sign in with next=%%09…: %d %q, want a redirect to /queue", code, h.Get("Location"))
	}
}

// TestLoginLimiterSurvivesNameFlood is the reset of the issue: a name
// under attack is throttled, then one address sends maxLimiters logins
// under distinct names. The name must stay throttled, even from an
// address the limiter has not seen.
func TestLoginLimiterSurvivesNameFlood(t *testing.T) {
	l := newLoginLimiter()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for i := range nameBurst {
		if !l.allow("alice", "198.51.100.7", now) {
			t.Fatalf("attempt %d for alice refused within the burst", i+1)
		}
	}
	if l.allow("alice", "198.51.100.7", now) {
		t.Fatal("alice not throttled after the burst")
	}
	for i := range maxLimiters {
		l.allow(fmt.Sprintf("spray-%d", i), "203.0.113.9", now)
	}
	if n := len(l.byName.m); n > ipBurst+1 {
		t.Errorf("after the flood the name table holds %d entries: refused attempts added names", n)
	}
	if l.allow("alice", "192.0.2.44", now) {
		t.Fatal("a flood of distinct names reset alice's counter")
	}
	if !l.allow("alice", "192.0.2.44", now.Add(nameEvery)) {
		t.Fatal("alice still refused after waiting")
	}
}

// TestLimiterSetEvictsOldest: a full table drops the entry used least
// recently, not all of them.
func TestLimiterSetEvictsOldest(t *testing.T) {
	s := newLimiterSet(time.Minute, 1, 3)
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for _, k := range []string{"a", "b", "c"} {
		s.add(k).AllowN(now, 1)
	}
	s.get("a") // a is now the most recently used; b the least
	s.add("d")
	if s.get("b") != nil {
		t.Error("b, the least recently used, was kept")
	}
	for _, k := range []string{"a", "c", "d"} {
		if s.get(k) == nil {
			t.Errorf("%s was dropped", k)
		}
	}
	if l := s.get("a"); l.TokensAt(now) >= 1 {
		t.Error("a kept its entry but lost its count")
	}
}
