package review

import (
	"net/http"
	"net/url"
	"testing"
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
