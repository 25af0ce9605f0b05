package bmapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

const (
	acmeKey      = "bm_key_acme_manager"
	acmeSecret   = "bm_secret_acme_manager_0123456789"
	globexKey    = "bm_key_globex_manager"
	globexSecret = "bm_secret_globex_manager_abcdef"
	readerKey    = "bm_key_acme_reader"
	readerSecret = "bm_secret_acme_reader_xyz"
)

var seed = &fake.Seed{Accounts: []fake.SeedAccount{
	{ID: "acme", ManagerKeys: []fake.SeedKey{
		{APIKey: acmeKey, APISecret: acmeSecret, Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}},
		{APIKey: readerKey, APISecret: readerSecret, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "reader"},
	}},
	{ID: "globex", ManagerKeys: []fake.SeedKey{
		{APIKey: globexKey, APISecret: globexSecret, Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}},
	}},
}}

// env is a simulator on loopback and a client of acme's manager key.
type env struct {
	fake *fake.Server
	srv  *httptest.Server
	log  *bytes.Buffer // read only when no call runs
	lw   *lockedWriter
	c    *bmapi.Client
}

var testClock = func() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) }

func newEnv(t *testing.T) *env {
	t.Helper()
	f, err := fake.New(fake.Options{Seed: seed, Clock: testClock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	e := &env{fake: f, srv: srv, log: &bytes.Buffer{}}
	e.lw = &lockedWriter{w: e.log}
	e.c = e.client(t, acmeKey, acmeSecret, nil)
	return e
}

// lockedWriter lets concurrent calls log into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (e *env) client(t *testing.T, key, secret string, edit func(*bmapi.Options)) *bmapi.Client {
	o := bmapi.Options{
		BaseURL: e.srv.URL, APIKey: key, APISecret: keydesk.SecretString(secret),
		Timeout: 5 * time.Second, RetryBase: 5 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(e.lw, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&o)
	}
	return bmapi.New(o)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantKind(t *testing.T, err error, kind bmapi.ErrorKind, status int) *bmapi.Error {
	t.Helper()
	var e *bmapi.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *bmapi.Error", err, err)
	}
	if !errors.Is(err, kind) || e.Status != status {
		t.Fatalf("err = %v (kind %q, status %d), want kind %q status %d", err, e.Kind, e.Status, kind, status)
	}
	return e
}

func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	scopes := []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingWrite}
	k, err := e.c.CreateKey(ctx(t), "backend-service-prod", scopes)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != "key-003" || k.Label != "backend-service-prod" || !strings.HasPrefix(k.APIKey, "bm_key_") ||
		!strings.HasPrefix(k.APISecret.Reveal(), "bm_secret_") || !slices.Equal(k.Scopes, scopes) || !k.CreatedAt.Equal(testClock()) {
		t.Fatalf("created %+v (secret prefix ok: %v)", k.Key, strings.HasPrefix(k.APISecret.Reveal(), "bm_secret_"))
	}
	if !e.fake.Authenticate(k.APIKey, k.APISecret.RevealBytes()) {
		t.Fatal("the simulator does not accept the created key's secret")
	}

	keys, err := e.c.ListKeys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ks []keydesk.Key) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.ID+"/"+k.Label)
		}
		return out
	}
	if got, want := ids(keys), []string{"key-001/manager", "key-002/reader", "key-003/backend-service-prod"}; !slices.Equal(got, want) {
		t.Fatalf("acme lists %v, want %v (globex's own key-001 must not show)", got, want)
	}

	// The new key works with its own credentials until it is revoked; it
	// lacks keys:manage, so the keys endpoints refuse it with 403.
	own := e.client(t, k.APIKey, k.APISecret.Reveal(), nil)
	_, err = own.ListKeys(ctx(t))
	wantKind(t, err, bmapi.ErrForbidden, 403)

	if err := e.c.RevokeKey(ctx(t), k.ID); err != nil {
		t.Fatal(err)
	}
	_, err = own.ListKeys(ctx(t))
	wantKind(t, err, bmapi.ErrUnauthorized, 401)
	keys, err = e.c.ListKeys(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(keys); slices.Contains(got, "key-003/backend-service-prod") {
		t.Fatalf("revoked key still listed: %v", got)
	}
	if info := e.fake.Keys("acme"); !info[2].Revoked {
		t.Fatalf("simulator shows key-003 as %+v", info[2])
	}
	// Revoking again, or a key that never was, is success (404 counts as gone).
	for _, id := range []string{k.ID, "key-999", "../globex"} {
		if err := e.c.RevokeKey(ctx(t), id); err != nil {
			t.Fatalf("revoke %q again: %v", id, err)
		}
	}
	if st := e.fake.Stats(); st.Creates != 1 || st.Revokes != 1 || st.NotFound != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestAuthErrors(t *testing.T) {
	e := newEnv(t)
	revoked, err := e.c.CreateKey(ctx(t), "soon-gone-manager", []keydesk.Scope{keydesk.ScopeKeysManage})
	if err != nil {
		t.Fatal(err)
	}
	revokedSecret := revoked.APISecret.Reveal()
	if err := e.c.RevokeKey(ctx(t), revoked.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, key, secret string
		kind              bmapi.ErrorKind
		status            int
	}{
		{"missing key", "", acmeSecret, bmapi.ErrUnauthorized, 401},
		{"missing secret", acmeKey, "", bmapi.ErrUnauthorized, 401},
		{"wrong secret", acmeKey, "bm_secret_wrong_guess", bmapi.ErrUnauthorized, 401},
		{"unknown key", "bm_key_nobody", acmeSecret, bmapi.ErrUnauthorized, 401},
		{"revoked key", revoked.APIKey, revokedSecret, bmapi.ErrUnauthorized, 401},
		{"secret of another key", acmeKey, globexSecret, bmapi.ErrUnauthorized, 401},
		{"no keys:manage", readerKey, readerSecret, bmapi.ErrForbidden, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.client(t, tt.key, tt.secret, nil)
			calls := map[string]func() error{
				"create": func() error {
					_, err := c.CreateKey(ctx(t), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
					return err
				},
				"list":   func() error { _, err := c.ListKeys(ctx(t)); return err },
				"revoke": func() error { return c.RevokeKey(ctx(t), "key-001") },
			}
			for name, call := range calls {
				err := call()
				be := wantKind(t, err, tt.kind, tt.status)
				if be.Temporary() || bmapi.Unclear(err) {
					t.Errorf("%s: %v is temporary or unclear", name, err)
				}
				if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
					t.Errorf("%s: error shows the secret: %v", name, err)
				}
			}
		})
	}
	// Nothing was created or revoked by the refused calls.
	if st := e.fake.Stats(); st.Creates != 1 || st.Revokes != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		label  string
		scopes []keydesk.Scope
		status int // 0: refused by the client before sending
	}{
		{"unknown scope", "ok", []keydesk.Scope{"accounts:admin"}, 400},
		{"label too long", strings.Repeat("a", keydesk.MaxLabelLength+1), []keydesk.Scope{keydesk.ScopeAccountsRead}, 400},
		{"label with a line break", "a\nb", []keydesk.Scope{keydesk.ScopeAccountsRead}, 400},
		{"empty label", "  ", []keydesk.Scope{keydesk.ScopeAccountsRead}, 0},
		{"no scopes", "ok", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.fake.Stats().Requests
			_, err := e.c.CreateKey(ctx(t), tt.label, tt.scopes)
			be := wantKind(t, err, bmapi.ErrBadRequest, tt.status)
			if be.Temporary() || bmapi.Unclear(err) {
				t.Errorf("%v is temporary or unclear", err)
			}
			if tt.status != 0 && !strings.Contains(be.Body, `"error"`) {
				t.Errorf("body %q does not show the API's error", be.Body)
			}
			if sent := e.fake.Stats().Requests - before; (tt.status == 0) != (sent == 0) {
				t.Errorf("%d requests sent", sent)
			}
		})
	}
	if n := len(e.fake.LiveKeys("acme")); n != 0 {
		t.Fatalf("%d keys created by bad requests", n)
	}
	if st := e.fake.Stats(); st.BadRequests != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestRateLimited(t *testing.T) {
	e := newEnv(t)
	e.fake.RateLimit(1) // a burst of one, then one a second

	if _, err := e.c.ListKeys(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// A POST is never retried: 429 goes back to the caller with Retry-After.
	_, err := e.c.CreateKey(ctx(t), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
	be := wantKind(t, err, bmapi.ErrRateLimited, 429)
	if be.RetryAfter != time.Second || !be.Temporary() || bmapi.Unclear(err) {
		t.Fatalf("429: retry after %v, temporary %v, unclear %v", be.RetryAfter, be.Temporary(), bmapi.Unclear(err))
	}
	// A GET waits as the API asks and then succeeds.
	start := time.Now()
	if _, err := e.c.ListKeys(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("the retried GET took %v: Retry-After: 1 was not honoured", d)
	}
	// A Retry-After beyond MaxRetryWait ends the call at once.
	impatient := e.client(t, acmeKey, acmeSecret, func(o *bmapi.Options) { o.MaxRetryWait = 100 * time.Millisecond })
	start = time.Now()
	_, err = impatient.ListKeys(ctx(t))
	wantKind(t, err, bmapi.ErrRateLimited, 429)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("gave up after %v, want at once", d)
	}
	if st := e.fake.Stats(); st.RateLimited != 3 || st.Creates != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name     string
		failNext int
		call     func(*bmapi.Client) error
		wantErr  bool
		requests int // requests the simulator saw
		unclear  bool
	}{
		{name: "GET retried through a burst", failNext: 3, requests: 4,
			call: func(c *bmapi.Client) error { _, err := c.ListKeys(context.Background()); return err }},
		{name: "GET gives up after MaxAttempts", failNext: 10, requests: 4, wantErr: true,
			call: func(c *bmapi.Client) error { _, err := c.ListKeys(context.Background()); return err }},
		{name: "DELETE retried", failNext: 2, requests: 3,
			call: func(c *bmapi.Client) error { return c.RevokeKey(context.Background(), "key-002") }},
		{name: "POST not retried", failNext: 1, requests: 1, wantErr: true, unclear: true,
			call: func(c *bmapi.Client) error {
				_, err := c.CreateKey(context.Background(), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var mu sync.Mutex
			var seen []int
			c := e.client(t, acmeKey, acmeSecret, func(o *bmapi.Options) {
				o.Observe = func(_ string, status int, _ time.Duration) { mu.Lock(); seen = append(seen, status); mu.Unlock() }
			})
			e.fake.FailNext(tt.failNext, 503)
			err := tt.call(c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil {
				be := wantKind(t, err, bmapi.ErrServer, 503)
				if !be.Temporary() || bmapi.Unclear(err) != tt.unclear {
					t.Fatalf("%v: temporary %v, unclear %v", err, be.Temporary(), bmapi.Unclear(err))
				}
			}
			if got := e.fake.Stats().Requests; got != tt.requests {
				t.Fatalf("simulator saw %d requests, want %d", got, tt.requests)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != tt.requests || seen[0] != 503 {
				t.Fatalf("Observe saw %v", seen)
			}
		})
	}
}

func TestUnclearCreate(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*fake.Server)
		kind  bmapi.ErrorKind
	}{
		{"connection dropped after create", func(f *fake.Server) { f.DropAfterCreate(1) }, bmapi.ErrTransport},
		{"500 after create", func(f *fake.Server) { f.FailAfterCreate(1, 500) }, bmapi.ErrServer},
		{"timeout", func(f *fake.Server) { f.Latency(400 * time.Millisecond) }, bmapi.ErrTransport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.client(t, acmeKey, acmeSecret, func(o *bmapi.Options) { o.Timeout = 200 * time.Millisecond })
			tt.fault(e.fake)
			k, err := c.CreateKey(ctx(t), "orphan-to-be", []keydesk.Scope{keydesk.ScopeMarketdataRead})
			if k != nil || !errors.Is(err, tt.kind) || !bmapi.Unclear(err) {
				t.Fatalf("CreateKey = %v, %v; want an unclear %q", k, err, tt.kind)
			}
			if !strings.Contains(err.Error(), "outcome unknown") {
				t.Errorf("error %q does not tell the reader to reconcile", err)
			}
			e.fake.ClearFaults()
			// The key exists (eventually, for the timeout: the simulator
			// finishes its work after the client gave up).
			testenv.Eventually(t, 5*time.Second, "a live key at the simulator", func() bool { return len(e.fake.LiveKeys("acme")) > 0 })
			live := e.fake.LiveKeys("acme")
			if len(live) != 1 || live[0].Label != "orphan-to-be" {
				t.Fatalf("simulator keys: %+v", live)
			}
			// Reconciliation as the batch does it: list, find, revoke.
			keys, err := c.ListKeys(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(keys, func(k keydesk.Key) bool { return k.Label == "orphan-to-be" })
			if i < 0 {
				t.Fatalf("orphan not listed: %+v", keys)
			}
			if err := c.RevokeKey(ctx(t), keys[i].ID); err != nil {
				t.Fatal(err)
			}
			if live := e.fake.LiveKeys("acme"); len(live) != 0 {
				t.Fatalf("orphan still live: %+v", live)
			}
		})
	}
}

func TestTransportErrorBeforeSendingIsClear(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	c := bmapi.New(bmapi.Options{BaseURL: "http://" + addr, APIKey: acmeKey, APISecret: keydesk.SecretString(acmeSecret),
		RetryBase: time.Millisecond})
	_, err = c.CreateKey(ctx(t), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if !errors.Is(err, bmapi.ErrTransport) || bmapi.Unclear(err) {
		t.Fatalf("err = %v (unclear %v), want a clear transport error", err, bmapi.Unclear(err))
	}
	_, err = c.ListKeys(ctx(t))
	if !errors.Is(err, bmapi.ErrTransport) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v", err)
	}
}

func TestListEnvelopes(t *testing.T) {
	e := newEnv(t)
	if _, err := e.c.CreateKey(ctx(t), "one", []keydesk.Scope{keydesk.ScopeAccountsRead}); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"", "keys", "data", "api_keys"} {
		t.Run("envelope "+env, func(t *testing.T) {
			e.fake.SetListEnvelope(env)
			keys, err := e.c.ListKeys(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 3 || keys[2].Label != "one" || keys[2].Scopes[0] != keydesk.ScopeAccountsRead {
				t.Fatalf("keys = %+v", keys)
			}
		})
	}
}

// TestHostileServer covers answers the simulator does not give: a server
// that redirects, echoes the secret, answers too much or paginates.
func TestHostileServer(t *testing.T) {
	var stolen sync.Map
	thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Store("secret", r.Header.Get("X-API-Secret"))
	}))
	t.Cleanup(thief.Close)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		call    func(*bmapi.Client) error
		kind    bmapi.ErrorKind
		unclear bool
		errHas  string
	}{
		{name: "redirect not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, thief.URL+"/v1/keys", http.StatusFound)
			},
			call: func(c *bmapi.Client) error { _, err := c.ListKeys(context.Background()); return err },
			kind: bmapi.ErrBadRequest, errHas: "not followed"},
		{name: "secret echoed in an error body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"error":"bad","got_header":%q,"api_secret":"bm_secret_other"}`, r.Header.Get("X-API-Secret"))
			},
			call: func(c *bmapi.Client) error {
				_, err := c.CreateKey(context.Background(), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
				return err
			},
			kind: bmapi.ErrBadRequest, errHas: "[redacted]"},
		{name: "huge created answer",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(201)
				w.Write(bytes.Repeat([]byte(" "), 2<<20))
			},
			call: func(c *bmapi.Client) error {
				_, err := c.CreateKey(context.Background(), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
				return err
			},
			kind: bmapi.ErrProtocol, unclear: true, errHas: "too large"},
		{name: "created answer without secret",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				w.Write([]byte(`{"id":"key-9","api_key":"bm_key_9"}`))
			},
			call: func(c *bmapi.Client) error {
				_, err := c.CreateKey(context.Background(), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
				return err
			},
			kind: bmapi.ErrProtocol, unclear: true, errHas: "no api_secret"},
		{name: "HTML 404 on revoke is not success",
			handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			call:    func(c *bmapi.Client) error { return c.RevokeKey(context.Background(), "key-001") },
			kind:    bmapi.ErrProtocol, errHas: "check the API base URL"},
		{name: "JSON 404 on revoke is success",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(404)
				w.Write([]byte(`{"title":"no such key"}`))
			},
			call: func(c *bmapi.Client) error { return c.RevokeKey(context.Background(), "key-001") }},
		{name: "paginated list",
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"data":[],"has_more":true}`)) },
			call:    func(c *bmapi.Client) error { _, err := c.ListKeys(context.Background()); return err },
			kind:    bmapi.ErrProtocol, errHas: "more pages"},
		{name: "HTML error page",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(502)
				w.Write([]byte("<html>" + strings.Repeat("bad gateway ", 500) + "</html>"))
			},
			call: func(c *bmapi.Client) error {
				_, err := c.CreateKey(context.Background(), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
				return err
			},
			kind: bmapi.ErrServer, unclear: true, errHas: "bad gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			c := bmapi.New(bmapi.Options{BaseURL: srv.URL, APIKey: acmeKey, APISecret: keydesk.SecretString(acmeSecret),
				MaxAttempts: 1})
			err := tt.call(c)
			if tt.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.kind) || bmapi.Unclear(err) != tt.unclear || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v (unclear %v), want kind %q unclear %v containing %q", err, bmapi.Unclear(err), tt.kind, tt.unclear, tt.errHas)
			}
			if s := err.Error(); strings.Contains(s, acmeSecret) || strings.Contains(s, "bm_secret_") || len(s) > 1000 {
				t.Fatalf("error shows a secret or is too long (%d bytes): %s", len(s), s)
			}
		})
	}
	if v, ok := stolen.Load("secret"); ok {
		t.Fatalf("the redirect target received the secret %q", v)
	}
}

func TestRetryAfterBeyondDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "10")
		w.WriteHeader(503)
	}))
	t.Cleanup(srv.Close)
	c := bmapi.New(bmapi.Options{BaseURL: srv.URL, APIKey: acmeKey, APISecret: keydesk.SecretString(acmeSecret)})
	cx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.ListKeys(cx)
	be := wantKind(t, err, bmapi.ErrServer, 503)
	if be.RetryAfter != 10*time.Second || time.Since(start) > time.Second {
		t.Fatalf("retry after %v, returned after %v: want 10s, at once", be.RetryAfter, time.Since(start))
	}
}

func TestSharedLimiter(t *testing.T) {
	e := newEnv(t)
	lim := rate.NewLimiter(50, 1)
	a := e.client(t, acmeKey, acmeSecret, func(o *bmapi.Options) { o.Limiter = lim })
	g := e.client(t, globexKey, globexSecret, func(o *bmapi.Options) { o.Limiter = lim })
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			c := a
			if i%2 == 1 {
				c = g
			}
			if _, err := c.ListKeys(ctx(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// 10 calls at 50/s with a burst of 1 take at least 9 intervals of 20ms.
	if d := time.Since(start); d < 170*time.Millisecond {
		t.Fatalf("10 calls took %v: the shared limiter did not pace them", d)
	}
}

func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			k, err := e.c.CreateKey(ctx(t), fmt.Sprintf("k%02d", i), []keydesk.Scope{keydesk.ScopeAccountsRead})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, v := range []string{k.ID, k.APIKey, k.APISecret.Reveal()} {
				if seen[v] {
					t.Errorf("%s given twice", v)
				}
				seen[v] = true
			}
		})
	}
	wg.Wait()
	if n := len(e.fake.LiveKeys("acme")); n != 20 {
		t.Fatalf("%d live keys, want 20", n)
	}
}

// TestSecretsNeverLogged runs calls of every outcome with debug logging on
// and greps the log and the errors for any secret.
func TestSecretsNeverLogged(t *testing.T) {
	e := newEnv(t)
	var secrets []string
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error(), fmt.Sprintf("%+v %#v", err, err))
		}
	}
	k, err := e.c.CreateKey(ctx(t), "logged", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, k.APISecret.Reveal())
	e.log.WriteString(fmt.Sprintf("%v %+v %#v %s\n", k, k, k, k.APISecret)) // what a careless caller might log
	slog.New(slog.NewJSONHandler(e.log, nil)).Info("created", "key", k, "secret", k.APISecret)

	e.fake.FailNext(2, 503)
	_, err = e.c.ListKeys(ctx(t))
	note(err)
	e.fake.FailNext(1, 503)
	_, err = e.c.CreateKey(ctx(t), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
	note(err)
	e.fake.FailAfterCreate(1, 500)
	_, err = e.c.CreateKey(ctx(t), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
	note(err)
	e.fake.DropAfterCreate(1)
	_, err = e.c.CreateKey(ctx(t), "x", []keydesk.Scope{keydesk.ScopeAccountsRead})
	note(err)
	_, err = e.client(t, acmeKey, "bm_secret_wrong", nil).ListKeys(ctx(t))
	note(err)
	secrets = append(secrets, "bm_secret_wrong")
	_, err = e.client(t, k.APIKey, k.APISecret.Reveal(), nil).ListKeys(ctx(t))
	note(err)

	if len(errs) == 0 || e.log.Len() == 0 {
		t.Fatal("nothing to check")
	}
	all := e.log.String() + strings.Join(errs, "\n")
	for _, s := range append(secrets, acmeSecret, "bm_secret_") {
		if strings.Contains(all, s) {
			t.Fatalf("%q appears in the log or an error:\n%s", s, all)
		}
	}
	if !strings.Contains(e.log.String(), `"msg":"bmapi: retrying"`) {
		t.Fatalf("the log has no retry line:\n%s", e.log)
	}
}

func TestBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "dev-tapp-api.tappengine.com", "https://user:pw@host", "https://host/?q=1"} {
		c := bmapi.New(bmapi.Options{BaseURL: u, APIKey: "k", APISecret: keydesk.SecretString("s")})
		_, err := c.ListKeys(ctx(t))
		if !errors.Is(err, bmapi.ErrBadRequest) || !strings.Contains(err.Error(), "base URL") || strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: err = %v", u, err)
		}
	}
}

func TestBaseURLPathPrefix(t *testing.T) {
	e := newEnv(t)
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", e.fake))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := bmapi.New(bmapi.Options{BaseURL: srv.URL + "/api/", APIKey: acmeKey, APISecret: keydesk.SecretString(acmeSecret)})
	if _, err := c.ListKeys(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCreateKey(b *testing.B) {
	f, err := fake.New(fake.Options{Seed: seed})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := bmapi.New(bmapi.Options{BaseURL: srv.URL, APIKey: acmeKey, APISecret: keydesk.SecretString(acmeSecret)})
	b.ResetTimer()
	for b.Loop() {
		k, err := c.CreateKey(context.Background(), "bench", []keydesk.Scope{keydesk.ScopeAccountsRead})
		if err != nil {
			b.Fatal(err)
		}
		k.APISecret.Wipe()
	}
}
