package review

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/queue"
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

// staffEvents returns the audit trail's staff events with these actions.
func staffEvents(t *testing.T, e *env, actions ...string) []queue.AuditEntry {
	t.Helper()
	all, err := e.q.Audit(context.Background(), queue.AuditQuery{Kind: "staff"})
	if err != nil {
		t.Fatal(err)
	}
	var out []queue.AuditEntry
	for _, x := range all {
		if slices.Contains(actions, x.Action) {
			out = append(out, x)
		}
	}
	return out
}

// TestFailedLoginFloodRollsUp: a flood of failed sign-ins for one name
// within a minute is one audit event with a count, not one per attempt;
// a flood spread over many names is bounded too.
func TestFailedLoginFloodRollsUp(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	const n = 50
	for i := range n {
		b.post("/login", url.Values{"username": {"alice"}, "password": {fmt.Sprintf("guess-%d", i)}})
	}
	if got := staffEvents(t, e, "login-failed", "login-throttled"); len(got) != 0 {
		t.Fatalf("%d events before the minute is over, want them rolled up", len(got))
	}
	e.clock.Add(loginWindow)
	e.srv.flushLogins(context.Background(), false)
	got := staffEvents(t, e, "login-failed", "login-throttled")
	if len(got) != 1 {
		t.Fatalf("%d failed logins for one name in a minute made %d audit events, want 1", n, len(got))
	}
	ev := got[0]
	want := fmt.Sprintf("from 127.0.0.1 as alice: %d wrong name or password, %d refused by the rate limit", nameBurst, n-nameBurst)
	if ev.Count != n || ev.Ref != "alice" || ev.Action != "login-failed" || !strings.HasPrefix(ev.Change, want) {
		t.Fatalf("the event: %s %s count %d %q; want login-failed for alice, count %d, %q", ev.Action, ev.Ref, ev.Count, ev.Change, n, want)
	}
	ada := e.login("ada")
	if _, _, body := ada.get("/audit?kind=staff"); !strings.Contains(body, fmt.Sprintf("×%d", n)) {
		t.Error("the audit page does not show the count")
	}

	// Many names from many addresses in one minute: at most
	// maxLoginTallies events and one for the rest, every attempt counted.
	e.clock.Add(loginWindow)
	const spray = 3 * maxLoginTallies
	for i := range spray {
		e.srv.loginAttempt(context.Background(), fmt.Sprintf("spray-%d", i), fmt.Sprintf("192.0.2.%d", i%250), i%2 == 0)
	}
	e.clock.Add(loginWindow)
	e.srv.flushLogins(context.Background(), false)
	got = staffEvents(t, e, "login-failed", "login-throttled")[1:]
	total := 0
	for _, x := range got {
		total += x.Count
	}
	if len(got) != maxLoginTallies+1 || total != spray {
		t.Fatalf("%d attempts under distinct names made %d events counting %d, want %d counting all", spray, len(got), total, maxLoginTallies+1)
	}
}

// TestRunWritesLoginsAtShutdown: what the minute holds when the server
// stops is written, not lost.
func TestRunWritesLoginsAtShutdown(t *testing.T) {
	e := newEnv(t)
	e.browser().post("/login", url.Values{"username": {"bob"}, "password": {"wrong"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := staffEvents(t, e, "login-failed"); len(got) != 1 || got[0].Ref != "bob" || got[0].Count != 1 {
		t.Fatalf("after shutdown: %+v, want bob's failed login", got)
	}
}

// TestUnknownNameOnlyAsDigest: a password typed into the name field
// reaches neither the log nor the audit trail (nor its export); the same
// unknown name is recognisable as itself.
func TestUnknownNameOnlyAsDigest(t *testing.T) {
	e := newEnv(t)
	const typed = "Tr0ub4dor&3-horse-battery"
	for range 2 {
		e.browser().post("/login", url.Values{"username": {typed}, "password": {"x"}})
	}
	e.browser().post("/login", url.Values{"username": {"alice"}, "password": {typed}})
	e.clock.Add(loginWindow)
	e.srv.flushLogins(context.Background(), false)
	got := staffEvents(t, e, "login-failed")
	if len(got) != 2 {
		t.Fatalf("%d events, want one for the unknown name and one for alice: %+v", len(got), got)
	}
	unknown := got[0]
	if unknown.Ref != "anonymous" || unknown.Count != 2 || !strings.Contains(unknown.Change, "as unknown name #") {
		t.Errorf("unknown name's event: %s count %d %q", unknown.Ref, unknown.Count, unknown.Change)
	}
	if got[1].Ref != "alice" || !strings.Contains(got[1].Change, "as alice:") {
		t.Errorf("a staff name is kept as is: %s %q", got[1].Ref, got[1].Change)
	}
	_, _, export := e.login("ada").get("/audit/export?kind=staff")
	for where, text := range map[string]string{"the audit export": export, "the log": e.logs.String()} {
		if strings.Contains(text, typed) {
			t.Errorf("%s holds the name as typed:\n%s", where, text)
		}
	}
	if !strings.Contains(export, "unknown name #") {
		t.Errorf("the export lacks the unknown name's digest:\n%s", export)
	}
}
