package review

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates/templatestest"
	"golang.org/x/net/html"
)

func TestNoSession(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	b := e.browser()
	for _, p := range []string{"/queue", "/requests/" + r.ID, "/batches", "/audit", "/audit/export"} {
		code, h, _ := b.get(p)
		if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without a session: %d %q, want a redirect to /login", p, code, h.Get("Location"))
		}
	}
	if code, _, _ := b.post("/requests/"+r.ID+"/approve", nil); code != http.StatusUnauthorized {
		t.Errorf("POST approve without a session: %d, want 401", code)
	}
	for _, p := range []string{"/api/v1/requests", "/api/v1/requests/" + r.ID, "/api/v1/batches"} {
		code, body := e.api("", "GET", p, nil)
		if code != http.StatusUnauthorized || body["code"] != "unauthorized" {
			t.Errorf("GET %s without a token: %d %v, want 401", p, code, body)
		}
	}
	e.tokens["mallory"] = "kd_not-a-real-token"
	if code, _ := e.api("mallory", "GET", "/api/v1/requests", nil); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}
	if e.get(r.ID).State != keydesk.StatePendingReview {
		t.Fatal("the request changed without a session")
	}
}

func TestLoginLogoutAndIdle(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	code, h, _ := b.post("/login", url.Values{"username": {"alice"}, "password": {password("alice")}, "next": {"//evil.example/x"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/queue" {
		t.Fatalf("login with an off-site next: %d %q, want /queue", code, h.Get("Location"))
	}
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
	if code, _, body := b.get("/queue"); code != 200 || !strings.Contains(body, "alice") {
		t.Fatalf("queue after login: %d", code)
	}
	// Idle for longer than session_idle: the session ends.
	e.clock.Add(31 * time.Minute)
	if code, _, _ := b.get("/queue"); code != http.StatusSeeOther {
		t.Fatalf("after 31 idle minutes: %d, want a redirect to login", code)
	}
	// Active use keeps a session alive beyond the idle time.
	b = e.login("alice")
	for range 4 {
		e.clock.Add(20 * time.Minute)
		if code, _, _ := b.get("/queue"); code != 200 {
			t.Fatalf("an active session ended: %d", code)
		}
	}
	if code, _, _ := b.post("/logout", nil); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	if code, _, _ := b.get("/queue"); code != http.StatusSeeOther {
		t.Fatalf("after logout: %d, want a redirect", code)
	}
	// Logins and failed logins are in the audit trail (failed ones
	// rolled up by the minute).
	e.browser().post("/login", url.Values{"username": {"alice"}, "password": {"wrong"}})
	e.clock.Add(loginWindow)
	e.srv.flushLogins(context.Background(), false)
	ev, err := e.q.Audit(context.Background(), queue.AuditQuery{Kind: "staff"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, x := range ev {
		actions = append(actions, x.Action)
	}
	if got := strings.Join(actions, ","); got != "login,login,logout,login-failed" {
		t.Fatalf("staff audit = %s", got)
	}
}

func TestSessionStoredHashed(t *testing.T) {
	e := newEnv(t)
	b := e.login("alice")
	u, _ := url.Parse(e.ts.URL)
	var cookie string
	for _, c := range b.c.Jar.Cookies(u) {
		cookie = c.Value
	}
	stored, err := queue.NewBucket[json.RawMessage](e.q, queue.BucketSessions).Scan(context.Background(), "")
	if err != nil || len(stored) != 1 {
		t.Fatalf("sessions: %v %v", stored, err)
	}
	if stored[0].Key == cookie || strings.Contains(stored[0].Key, cookie) {
		t.Fatal("the session cookie is stored as is")
	}
	if strings.Contains(string(*stored[0].Value), cookie) {
		t.Fatal("the session record holds the cookie")
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	var last int
	for i := range nameBurst + 1 {
		last, _, _ = b.post("/login", url.Values{"username": {"alice"}, "password": {"guess" + string(rune('a'+i))}})
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("attempt %d: %d, want 429", nameBurst+1, last)
	}
	// Even the right password is refused while throttled.
	if code, _, _ := b.post("/login", url.Values{"username": {"alice"}, "password": {password("alice")}}); code != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled: %d", code)
	}
	e.clock.Add(nameEvery)
	if code, _, _ := b.post("/login", url.Values{"username": {"alice"}, "password": {password("alice")}}); code != http.StatusSeeOther {
		t.Fatalf("after waiting: %d, want a login", code)
	}
}

func TestViewerCannotAct(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	b := e.login("viv")
	if code, _, body := b.get("/requests/" + r.ID); code != 200 || strings.Contains(body, "/approve\"") {
		t.Fatalf("a viewer sees an approve form (%d)", code)
	}
	for _, act := range []string{"approve", "reject", "cancel", "correct"} {
		code, _, body := b.post("/requests/"+r.ID+"/"+act, url.Values{"reason": {"x"}, "field": {"label"}, "value": {"y"}})
		if code != http.StatusForbidden || !strings.Contains(body, "approver role") {
			t.Errorf("viewer %s in the UI: %d, want 403", act, code)
		}
		code, out := e.api("viv", "POST", "/api/v1/requests/"+r.ID+"/"+act, map[string]string{"reason": "x"})
		if code != http.StatusForbidden || out["code"] != "forbidden" {
			t.Errorf("viewer %s in the API: %d %v, want 403", act, code, out)
		}
	}
	if code, _ := e.api("alice", "POST", "/api/v1/batches", nil); code != http.StatusForbidden {
		t.Errorf("an approver ran a batch: %d, want 403", code)
	}
	if e.get(r.ID).State != keydesk.StatePendingReview {
		t.Fatal("a viewer changed the request")
	}
}

func TestCrossSiteAndCSRF(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	b := e.login("alice")
	tests := []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"cross-site fetch metadata", nil, []string{"Sec-Fetch-Site", "cross-site"}},
		{"foreign Origin", nil, []string{"Origin", "https://evil.example"}},
		{"no CSRF token", url.Values{"csrf": {""}}, nil},
		{"wrong CSRF token", url.Values{"csrf": {"forged"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, _ := b.post("/requests/"+r.ID+"/approve", tt.form, tt.hdr...)
			if code != http.StatusForbidden {
				t.Fatalf("%d, want 403", code)
			}
		})
	}
	// The API refuses a browser's cross-site POST too, token or not.
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/requests/"+r.ID+"/approve", nil)
	req.Header.Set("Authorization", "Bearer "+e.tokens["alice"])
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site API POST: %d", resp.StatusCode)
	}
	if e.get(r.ID).State != keydesk.StatePendingReview {
		t.Fatal("a refused request changed the record")
	}
	// A same-origin form with the token works.
	if code, _, _ := b.post("/requests/"+r.ID+"/approve", url.Values{"revision": {"0"}}, "Sec-Fetch-Site", "same-origin"); code != http.StatusSeeOther {
		t.Fatalf("same-origin approve: %d", code)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, p := range []string{"/login", "/static/style.css", "/api/v1/requests"} {
		_, h, _ := b.get(p)
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: CSP allows script: %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: missing nosniff or frame options", p)
		}
	}
}

const hostile = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`

func TestHostileContentRendersEscaped(t *testing.T) {
	e := newEnv(t)
	raw := "From: \"" + hostile + "\" <dev@acme.example>\r\n" +
		"To: support@buildmarkets.ai\r\n" +
		"Subject: " + hostile + "\r\n" +
		"Message-ID: <x1@acme.example>\r\n" +
		"Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease create " + hostile + "\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body onload=alert(3)><b>bold</b>" + hostile + "</body></html>\r\n--b--\r\n"
	r := e.request(func(r *keydesk.Request) {
		r.Subject = hostile
		r.Label = hostile
		r.Requester = "x\"><script>alert(4)</script>@acme.example"
	}, raw)
	b := e.login("alice")
	for _, p := range []string{"/requests/" + r.ID, "/queue", "/audit"} {
		code, _, body := b.get(p)
		if code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
		if bad := activeContent(body); bad != "" {
			t.Errorf("%s: %s", p, bad)
		}
	}
	_, _, body := b.get("/requests/" + r.ID)
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "dmarc=pass", "Please create", "Authentication-Results"} {
		if !strings.Contains(body, want) {
			t.Errorf("request page lacks %q (the escaped payload or the email's text)", want)
		}
	}
}

func TestFourEyes(t *testing.T) {
	e := newEnv(t)
	r := e.request(func(r *keydesk.Request) {
		r.Environment = keydesk.Production
		r.Flags = []keydesk.Flag{keydesk.FlagProduction}
	}, "")
	alice := e.login("alice")
	alice.get("/requests/" + r.ID)
	code, h, _ := alice.post("/requests/"+r.ID+"/approve", url.Values{"revision": {itoa(r.Revision)}})
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=approval1") {
		t.Fatalf("first approval: %d %s", code, h.Get("Location"))
	}
	if got := e.get(r.ID); got.State != keydesk.StatePendingReview || len(got.Approvals) != 1 {
		t.Fatalf("after one approval: %s %v", got.State, got.Approvals)
	}
	// The same approver again: refused, clearly.
	alice.get("/requests/" + r.ID)
	cur := e.get(r.ID)
	code, _, body := alice.post("/requests/"+r.ID+"/approve", url.Values{"revision": {itoa(cur.Revision)}})
	if code != http.StatusConflict || !strings.Contains(body, "already approved") {
		t.Fatalf("second approval by the same person: %d", code)
	}
	code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
	if code != http.StatusConflict || out["code"] != "already_approved" {
		t.Fatalf("same approver over the API: %d %v", code, out)
	}
	if got := e.get(r.ID); got.State != keydesk.StatePendingReview || len(got.Approvals) != 1 {
		t.Fatalf("one approver twice changed the request: %s %v", got.State, got.Approvals)
	}
	// The second approver sees the first.
	bob := e.login("bob")
	_, _, body = bob.get("/requests/" + r.ID)
	if !strings.Contains(body, "<b>alice</b> approved") || !strings.Contains(body, "second approval") {
		t.Fatal("the second approver does not see the first approval")
	}
	code, h, _ = bob.post("/requests/"+r.ID+"/approve", url.Values{"revision": {itoa(cur.Revision)}})
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=approved") {
		t.Fatalf("second approval: %d %s", code, h.Get("Location"))
	}
	got := e.get(r.ID)
	if got.State != keydesk.StateApproved || len(got.Approvals) != 2 || got.Approvals[1].By != "bob" {
		t.Fatalf("after two approvals: %s %v", got.State, got.Approvals)
	}
	h2, err := e.q.History(context.Background(), r.ID, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, x := range h2 {
		notes = append(notes, x.Actor+":"+x.Change)
	}
	joined := strings.Join(notes, "|")
	if !strings.Contains(joined, "alice:approval 1 of 2") || !strings.Contains(joined, "bob:approval 2 of 2 (after alice): approved") {
		t.Fatalf("history = %s", joined)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestRacingApprovals(t *testing.T) {
	e := newEnv(t)
	// Same revision seen by two approvers: one wins, the other gets 409.
	r := e.request(nil, "")
	alice, bob := e.login("alice"), e.login("bob")
	alice.get("/requests/" + r.ID)
	bob.get("/requests/" + r.ID)
	c1, _, _ := alice.post("/requests/"+r.ID+"/approve", url.Values{"revision": {itoa(r.Revision)}})
	c2, _, body := bob.post("/requests/"+r.ID+"/approve", url.Values{"revision": {itoa(r.Revision)}})
	if c1 != http.StatusSeeOther || c2 != http.StatusConflict || !strings.Contains(body, "reload it and decide again") {
		t.Fatalf("stale second approval: %d, %d", c1, c2)
	}
	// Truly concurrent over the API, many times: exactly one wins each time.
	for range 5 {
		r := e.request(nil, "")
		var wg sync.WaitGroup
		codes := make([]int, 2)
		msgs := make([]any, 2)
		for i, u := range []string{"alice", "bob"} {
			wg.Go(func() {
				var out map[string]any
				codes[i], out = e.api(u, "POST", "/api/v1/requests/"+r.ID+"/approve", map[string]any{"revision": r.Revision})
				msgs[i] = out["error"]
			})
		}
		wg.Wait()
		ok, conflict := 0, 0
		for i, c := range codes {
			switch c {
			case 200:
				ok++
			case 409:
				conflict++
				if s, _ := msgs[i].(string); !strings.Contains(s, "decide again") {
					t.Errorf("409 message is not clear: %v", msgs[i])
				}
			}
		}
		if ok != 1 || conflict != 1 {
			t.Fatalf("racing approvals: %v, want one 200 and one 409", codes)
		}
		if got := e.get(r.ID); got.State != keydesk.StateApproved || len(got.Approvals) != 1 {
			t.Fatalf("after the race: %s %v", got.State, got.Approvals)
		}
	}
}

func outboxMessages(t *testing.T, q *queue.Conn) []*keydesk.Outgoing {
	t.Helper()
	out, err := q.Outbox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestRejectTellsRequester(t *testing.T) {
	e := newEnv(t)
	// A fixed source message: a fixed request ID for the golden email.
	known := e.request(func(r *keydesk.Request) {
		r.SourceMessageID = "<reject-golden@acme.example>"
		r.SourceKey = keydesk.SourceKey(r.Requester, r.SourceMessageID, nil)
		r.Label = "Équipe trésorerie — moteur de règlement des ordres, instance 2/3"
		r.Scopes = []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead, keydesk.ScopeTradingWrite, keydesk.ScopeMarketdataRead, keydesk.ScopeKeysManage}
	}, "")
	unknown := e.request(func(r *keydesk.Request) {
		r.Partner = ""
		r.Requester = "spoof@evil.example"
		r.Flags = []keydesk.Flag{keydesk.FlagUnknownSender}
	}, "")
	b := e.login("alice")
	b.get("/requests/" + known.ID)
	if code, _, body := b.post("/requests/"+known.ID+"/reject", url.Values{"reason": {""}}); code != http.StatusBadRequest || !strings.Contains(body, "give a reason") {
		t.Fatalf("reject without a reason: %d", code)
	}
	code, h, _ := b.post("/requests/"+known.ID+"/reject", url.Values{"reason": {"keys:manage is not available to partners"}})
	if code != http.StatusSeeOther {
		t.Fatalf("reject: %d", code)
	}
	if _, _, body := b.get(h.Get("Location")); !strings.Contains(body, "The requester is told why") || !strings.Contains(body, "keys:manage is not available to partners") {
		t.Fatal("the page after rejecting does not say the requester is told, or lacks the reason")
	}
	code, out := e.api("bob", "POST", "/api/v1/requests/"+unknown.ID+"/reject", map[string]string{"reason": "not a partner"})
	if code != 200 || !strings.Contains(out["message"].(string), "no reply") {
		t.Fatalf("reject unknown sender: %d %v", code, out)
	}
	got := e.get(known.ID)
	if got.State != keydesk.StateRejected || got.Problem != "keys:manage is not available to partners" {
		t.Fatalf("rejected: %s %q", got.State, got.Problem)
	}
	msgs := outboxMessages(t, e.q)
	if len(msgs) != 1 {
		t.Fatalf("outbox holds %d messages, want 1 (none to the unknown sender)", len(msgs))
	}
	m := msgs[0]
	if m.Kind != keydesk.KindRejection || m.To[0] != "dev@acme.example" || m.InReplyTo != known.SourceMessageID ||
		!strings.Contains(m.Text, "keys:manage is not available to partners") || !strings.Contains(m.Subject, known.ID) {
		t.Fatalf("rejection email: %+v", m)
	}
	testenv.Golden(t, filepath.Join("testdata", "review-rejection.golden"), []byte("Subject: "+m.Subject+"\n\n"+m.Text), *update)
	templatestest.Check(t, m.Text)
	if strings.Contains(m.Text, "support@buildmarkets.ai") {
		t.Errorf("the rejection names support's own address:\n%s", m.Text)
	}
}

func TestCorrectAndCancel(t *testing.T) {
	e := newEnv(t)
	r := e.request(func(r *keydesk.Request) { r.Environment = keydesk.Production }, "")
	b := e.login("alice")
	b.get("/requests/" + r.ID)
	b.post("/requests/"+r.ID+"/approve", url.Values{"revision": {itoa(r.Revision)}})
	tests := []struct {
		field, value string
		code         int
		want         string
	}{
		{"environment", "staging", 400, "not an environment"},
		{"scopes", "acounts:read", 400, "did you mean accounts:read"},
		{"label", "two\nlines", 400, "line break"},
		{"color", "red", 400, "the fields are"},
		{"environment", "sandbox", 303, ""},
		{"scopes", "accounts:read, keys:manage", 303, ""},
		{"label", "sandbox-trading", 303, ""},
	}
	for _, tt := range tests {
		code, _, body := b.post("/requests/"+r.ID+"/correct", url.Values{"field": {tt.field}, "value": {tt.value}})
		if code != tt.code || (tt.want != "" && !strings.Contains(body, tt.want)) {
			t.Errorf("correct %s=%q: %d, want %d with %q", tt.field, tt.value, code, tt.code, tt.want)
		}
	}
	got := e.get(r.ID)
	if got.Environment != keydesk.Sandbox || got.Label != "sandbox-trading" || len(got.Approvals) != 0 ||
		!got.HasFlag(keydesk.FlagKeysManage) || !got.HasFlag(keydesk.FlagScopeNotAllowed) || got.HasFlag(keydesk.FlagProduction) {
		t.Fatalf("after corrections: %+v", got)
	}
	h, _ := e.q.History(context.Background(), r.ID, 5*time.Second)
	var notes []string
	for _, x := range h {
		if x.Action == "correct" {
			notes = append(notes, x.Actor+": "+x.Change)
		}
	}
	want := []string{
		"alice: environment: production → sandbox (earlier approvals cleared)",
		"alice: scopes: accounts:read, trading:read → accounts:read, keys:manage — widens access (adds keys:manage): alice cannot approve it",
		`alice: label: "sandbox-backend" → "sandbox-trading"`,
	}
	if strings.Join(notes, "\n") != strings.Join(want, "\n") {
		t.Fatalf("correction notes:\n%s\nwant:\n%s", strings.Join(notes, "\n"), strings.Join(want, "\n"))
	}
	code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/cancel", map[string]string{"reason": "duplicate of another request"})
	if code != 200 || out["state"] != "cancelled" {
		t.Fatalf("cancel: %d %v", code, out)
	}
	code, out = e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
	if code != http.StatusConflict || out["code"] != "invalid_state" {
		t.Fatalf("approve a cancelled request: %d %v", code, out)
	}
}

func TestAPIListAndErrors(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := range 7 {
		r := e.request(func(r *keydesk.Request) {
			if i%2 == 1 {
				r.Environment = keydesk.Production
			}
		}, "")
		ids = append(ids, r.ID)
	}
	e.api("alice", "POST", "/api/v1/requests/"+ids[0]+"/approve", nil)
	// Every request, newest first, in pages of 3.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		path := "/api/v1/requests?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		code, out := e.api("viv", "GET", path, nil)
		if code != 200 || pages > 5 {
			t.Fatalf("list: %d %v", code, out)
		}
		for _, x := range out["requests"].([]any) {
			got = append(got, x.(map[string]any)["id"].(string))
		}
		c, _ := out["next_cursor"].(string)
		if c == "" {
			break
		}
		cursor = c
	}
	if len(got) != 7 || got[0] != ids[6] || got[6] != ids[0] {
		t.Fatalf("paged list = %v, want %v reversed", got, ids)
	}
	code, out := e.api("viv", "GET", "/api/v1/requests?state=pending_review&environment=production", nil)
	if code != 200 || len(out["requests"].([]any)) != 3 {
		t.Fatalf("filtered list: %d %v", code, out)
	}
	first := out["requests"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "state", "partner", "environment", "scopes", "label", "flags", "requester", "source_message_id", "approvals", "key_id", "created_at", "updated_at"} {
		if _, ok := first[k]; !ok {
			t.Errorf("request JSON lacks %q", k)
		}
	}
	code, out = e.api("viv", "GET", "/api/v1/requests/"+ids[0], nil)
	if code != 200 || out["state"] != "approved" || len(out["history"].([]any)) == 0 {
		t.Fatalf("get: %d %v", code, out)
	}
	errs := []struct {
		method, path string
		body         any
		code         int
		errCode      string
	}{
		{"GET", "/api/v1/requests?state=bogus", nil, 400, "bad_request"},
		{"GET", "/api/v1/requests?limit=0", nil, 400, "bad_request"},
		{"GET", "/api/v1/requests?cursor=!!", nil, 400, "bad_request"},
		{"GET", "/api/v1/requests/KR-20990101-ZZZZ", nil, 404, "not_found"},
		{"GET", "/api/v1/requests/../../etc", nil, 404, "not_found"},
		{"POST", "/api/v1/requests/" + ids[1] + "/explode", nil, 404, "not_found"},
		{"POST", "/api/v1/requests/" + ids[1] + "/reject", map[string]any{"reason": 5}, 400, "bad_request"},
		{"POST", "/api/v1/requests/" + ids[1] + "/reject", map[string]any{"reason": "x", "extra": 1}, 400, "bad_request"},
		{"POST", "/api/v1/requests/" + ids[1] + "/approve", map[string]any{"revision": 1}, 409, "conflict"},
	}
	for _, tt := range errs {
		code, out := e.api("alice", tt.method, tt.path, tt.body)
		if code != tt.code || out["code"] != tt.errCode || out["error"] == "" {
			t.Errorf("%s %s: %d %v, want %d %s", tt.method, tt.path, code, out, tt.code, tt.errCode)
		}
	}
}

func TestBatches(t *testing.T) {
	e := newEnv(t)
	admin := e.login("ada")
	_, _, body := admin.get("/batches")
	if !strings.Contains(body, "Next scheduled run") || !strings.Contains(body, "Run a batch now") {
		t.Fatal("the batches page lacks the schedule or the run-now button")
	}
	code, _, body := admin.post("/batches", nil)
	if code != 200 || !strings.Contains(body, "requested") {
		t.Fatalf("run now: %d", code)
	}
	code, out := e.api("ada", "POST", "/api/v1/batches", nil)
	if code != http.StatusAccepted || out["state"] != "requested" || out["by"] != "ada" {
		t.Fatalf("run now over the API: %d %v", code, out)
	}
	list, err := e.q.ListBatches(context.Background())
	if err != nil || len(list) != 2 || list[0].State != keydesk.BatchRequested {
		t.Fatalf("batches: %v %v", list, err)
	}
	code, out = e.api("viv", "GET", "/api/v1/batches", nil)
	if code != 200 || len(out["batches"].([]any)) != 2 || out["next_run"] == nil {
		t.Fatalf("list batches: %d %v", code, out)
	}
	viewer := e.login("viv")
	if _, _, body := viewer.get("/batches"); strings.Contains(body, "Run a batch now") {
		t.Fatal("a viewer sees run now")
	}
	if code, _, _ := viewer.post("/batches", nil); code != http.StatusForbidden {
		t.Fatalf("viewer run now: %d", code)
	}
}

func TestAuditPageAndExport(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
	b := e.login("ada")
	if _, err := e.q.History(context.Background(), r.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	_, _, body := b.get("/audit?kind=request&ref=" + r.ID)
	if !strings.Contains(body, "approved (via API)") || !strings.Contains(body, "create") {
		t.Fatal("the audit page lacks the request's events")
	}
	code, h, body := b.get("/audit/export?actor=alice")
	if code != 200 || h.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s", code, h.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 1 {
		t.Fatalf("export for alice: %d lines:\n%s", len(lines), body)
	}
	var l auditLine
	if err := json.Unmarshal([]byte(lines[0]), &l); err != nil || l.Event.Action != "approve" || l.State != keydesk.StateApproved {
		t.Fatalf("export line: %+v %v", l, err)
	}
	if code, _, _ := b.get("/audit?kind=nope"); code != 400 {
		t.Fatalf("bad kind: %d", code)
	}
}

func TestSessionSweep(t *testing.T) {
	e := newEnv(t)
	e.login("alice")
	e.clock.Add(time.Hour)
	n, err := e.srv.sweepSessions(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if left, err := queue.NewBucket[json.RawMessage](e.q, queue.BucketSessions).Scan(context.Background(), ""); err != nil || len(left) != 0 {
		t.Fatalf("sessions left: %d %v", len(left), err)
	}
}

// TestForbiddenImports holds the design's rule: the web face never
// reaches key material or the API.
func TestForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/buildmarkets/keydesk/crypto", "github.com/buildmarkets/keydesk/bmapi", "github.com/buildmarkets/keydesk/batch", "github.com/ProtonMail/"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(dep, bad)) {
				t.Errorf("review depends on %s", dep)
			}
		}
	}
}

// activeContent parses a page as a browser would and reports any script,
// event handler or element that came from the hostile payload.
func activeContent(page string) string {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return err.Error()
	}
	var found string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "img", "iframe", "object", "embed", "body":
				if n.Data != "body" || len(n.Attr) > 0 {
					found = "a <" + n.Data + "> element"
				}
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") {
					found = "an event handler attribute " + a.Key
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return found
}

// TestNoSecretInPages: the partner's manager credentials are in the
// registry the UI reads; no page or API answer may show them.
func TestNoSecretInPages(t *testing.T) {
	e := newEnv(t)
	const secret = "bm_secret_xyz789_do_not_show"
	e.reg.Partners[0].Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{
		keydesk.Sandbox: {APIKey: "bm_key_manager", APISecret: keydesk.SecretString(secret)},
	}
	r := e.request(nil, "From: dev@acme.example\r\n\r\nhello\r\n")
	e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
	b := e.login("ada")
	for _, p := range []string{"/queue", "/requests/" + r.ID, "/batches", "/audit", "/audit/export"} {
		if _, _, body := b.get(p); strings.Contains(body, secret) || strings.Contains(body, "bm_key_manager") {
			t.Errorf("%s shows the partner's manager credentials", p)
		}
	}
	for _, p := range []string{"/api/v1/requests", "/api/v1/requests/" + r.ID, "/api/v1/batches"} {
		_, out := e.api("viv", "GET", p, nil)
		if b, _ := json.Marshal(out); strings.Contains(string(b), secret) {
			t.Errorf("%s shows the secret", p)
		}
	}
}
