package review

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/oidctest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/review/users"
	"github.com/buildmarkets/keydesk/templates"
)

// clock is a settable clock for the tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// env is a review server on a real embedded JetStream.
type env struct {
	t      testing.TB
	q      *queue.Conn
	srv    *Server
	ts     *httptest.Server
	clock  *clock
	tokens map[string]string // user name → API token
	reg    *keydesk.Registry
	logs   *testenv.Buffer    // the server's log, at debug level
	idp    *oidctest.Provider // single sign-on's provider, if any
}

var staffRoles = map[string]users.Role{"viv": users.Viewer, "alice": users.Approver, "bob": users.Approver, "ada": users.Admin}

func password(name string) string { return "pw-" + name + "-correct-horse" }

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, queuetest.Open(t), nil)
}

// newEnvOn is newEnv on a given queue; mod changes the options.
func newEnvOn(t testing.TB, q *queue.Conn, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, q: q, clock: &clock{t: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}, tokens: map[string]string{}, logs: &testenv.Buffer{}}
	var y strings.Builder
	y.WriteString("users:\n")
	for name, role := range staffRoles {
		h, err := users.HashPassword(password(name), users.Params{Memory: 64, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, tok, _ := users.NewCredentials()
		e.tokens[name] = tok
		for l := range strings.SplitSeq(strings.TrimRight(users.Entry(users.User{Name: name, Role: role, PasswordHash: h, TokenSHA256: users.TokenDigest(tok)}), "\n"), "\n") {
			y.WriteString("  " + l + "\n")
		}
	}
	set, err := users.Parse("users.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	e.reg = &keydesk.Registry{Partners: []*keydesk.Partner{{
		ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: "sec@acme.example", Fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567",
			KeyExpires: e.clock.Now().Add(400 * 24 * time.Hour)},
		AllowedScopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead, keydesk.ScopeTradingWrite, keydesk.ScopeMarketdataRead},
	}}}
	q.Now = e.clock.Now
	o := Options{
		Queue: q, Users: func() *users.Set { return set }, Partners: func() *keydesk.Registry { return e.reg },
		Templates: templates.MustLoadEmbedded(), FourEyes: []string{"production", "keys:manage"},
		SessionIdle: 30 * time.Minute, InsecureCookie: true, Now: e.clock.Now,
		NextRun:        func(now time.Time) time.Time { return now.Truncate(time.Hour).Add(time.Hour) },
		SupportAddress: "support@buildmarkets.ai",
		Mail:           mailFromIntake(q),
		Logger:         slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

var seq atomic.Int64

// request stores a request as intake would, with its raw email.
func (e *env) request(mod func(r *keydesk.Request), raw string) *keydesk.Request {
	e.t.Helper()
	n := seq.Add(1)
	r := &keydesk.Request{
		State: keydesk.StatePendingReview, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead}, Label: "sandbox-backend",
		Requester: "dev@acme.example", SourceMessageID: fmt.Sprintf("<m%d@acme.example>", n),
		SourceDate: e.clock.Now(), Subject: "API keys please",
	}
	r.SourceKey = keydesk.SourceKey(r.Requester, r.SourceMessageID, nil)
	if mod != nil {
		mod(r)
	}
	if raw != "" {
		r.MailRef = queue.MailRef(r.SourceKey)
		if err := e.q.PutMail(context.Background(), r.MailRef, strings.NewReader(raw), 1<<20); err != nil {
			e.t.Fatal(err)
		}
	}
	out, _, err := e.q.Create(context.Background(), r, "intake")
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(time.Second)
	return out
}

func (e *env) get(id string) *keydesk.Request {
	e.t.Helper()
	r, err := e.q.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (int, http.Header, string) {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return resp.StatusCode, resp.Header, string(body)
}

func (b *browser) get(path string) (int, http.Header, string) {
	req, _ := http.NewRequest("GET", b.e.ts.URL+path, nil)
	return b.do(req)
}

// post sends a form with the page's CSRF token (unless form sets one).
func (b *browser) post(path string, form url.Values, hdr ...string) (int, http.Header, string) {
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok && b.csrf != "" {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (e *env) login(name string) *browser {
	e.t.Helper()
	b := e.browser()
	code, h, body := b.post("/login", url.Values{"username": {name}, "password": {password(name)}, "next": {"/queue"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/queue" {
		e.t.Fatalf("login %s: %d %s\n%s", name, code, h.Get("Location"), body)
	}
	if code, _, _ := b.get("/queue"); code != 200 {
		e.t.Fatalf("queue after login: %d", code)
	}
	return b
}

// api calls the JSON API as a user ("" sends no token).
func (e *env) api(user, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.ts.URL+path, rd)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[user])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		e.t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}
