package fake_test

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

const (
	acmeKey, acmeSecret     = "bm_key_acme_mgr", "bm_secret_acme_mgr_s3cr3t"
	globexKey, globexSecret = "bm_key_globex_mgr", "bm_secret_globex_mgr_s3cr3t"
	readerKey, readerSecret = "bm_key_acme_reader", "bm_secret_acme_reader"
)

const seedJSON = `{"accounts":[
  {"id":"acme","manager_keys":[
    {"api_key":"bm_key_acme_mgr","api_secret":"bm_secret_acme_mgr_s3cr3t","scopes":["keys:manage"]},
    {"api_key":"bm_key_acme_reader","api_secret":"bm_secret_acme_reader","scopes":["accounts:read"],"label":"reader"}]},
  {"id":"globex","manager_keys":[
    {"api_key":"bm_key_globex_mgr","api_secret":"bm_secret_globex_mgr_s3cr3t","scopes":["keys:manage"]}]}]}`

var clock = func() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) }

func start(t *testing.T, o fake.Options) (*fake.Server, *httptest.Server) {
	t.Helper()
	if o.Seed == nil {
		s, err := fake.ParseSeed([]byte(seedJSON))
		if err != nil {
			t.Fatal(err)
		}
		o.Seed = s
	}
	if o.Clock == nil {
		o.Clock = clock
	}
	f, err := fake.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, srv *httptest.Server, method, path, key, secret, body string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if secret != "" {
		req.Header.Set("X-API-Secret", secret)
	}
	r, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{r.StatusCode, r.Header, b}
}

type created struct {
	ID        string          `json:"id"`
	Label     string          `json:"label"`
	APIKey    string          `json:"api_key"`
	APISecret string          `json:"api_secret"`
	Scopes    []keydesk.Scope `json:"scopes"`
	CreatedAt string          `json:"created_at"`
}

func create(t *testing.T, srv *httptest.Server, label string) created {
	t.Helper()
	r := call(t, srv, "POST", "/v1/keys", acmeKey, acmeSecret, `{"label":"`+label+`","scopes":["accounts:read","trading:write","marketdata:read"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var c created
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCreateFollowsContract(t *testing.T) {
	_, srv := start(t, fake.Options{})
	r := call(t, srv, "POST", "/v1/keys", acmeKey, acmeSecret,
		`{"label":"backend-service-prod","scopes":["accounts:read","trading:write","marketdata:read","accounts:read"],"note":"ignored"}`)
	if r.status != 201 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var c created
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	// acme holds key-001 and key-002 (its seeded keys): ids are numbered
	// per account, so globex's key-001 does not move acme's counter.
	if c.ID != "key-003" || c.Label != "backend-service-prod" || c.CreatedAt != "2026-11-27T10:00:00Z" ||
		strings.Join([]string{string(c.Scopes[0]), string(c.Scopes[1]), string(c.Scopes[2])}, ",") != "accounts:read,trading:write,marketdata:read" || len(c.Scopes) != 3 {
		t.Fatalf("created %+v", c)
	}
	if !regexp.MustCompile(`^bm_key_[A-Za-z0-9]{20}$`).MatchString(c.APIKey) || !regexp.MustCompile(`^bm_secret_[A-Za-z0-9]{32}$`).MatchString(c.APISecret) {
		t.Fatalf("key %q secret %q", c.APIKey, c.APISecret)
	}
	// The secret is returned once: the list never holds it.
	l := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, "")
	if l.status != 200 || bytes.Contains(l.body, []byte(c.APISecret)) || bytes.Contains(l.body, []byte("secret")) {
		t.Fatalf("list: %d %s", l.status, l.body)
	}
	// The new key authenticates with its own credentials.
	me := call(t, srv, "GET", "/v1/me", c.APIKey, c.APISecret, "")
	if me.status != 200 || !bytes.Contains(me.body, []byte(`"account":"acme"`)) {
		t.Fatalf("me: %d %s", me.status, me.body)
	}
}

// TestKeyIDsPerAccount: the API numbers keys per partner account, so two
// accounts hold keys with the same ID; each sees and revokes only its own.
func TestKeyIDsPerAccount(t *testing.T) {
	f, srv := start(t, fake.Options{})
	post := func(key, secret string) created {
		t.Helper()
		r := call(t, srv, "POST", "/v1/keys", key, secret, `{"label":"backend","scopes":["accounts:read"]}`)
		var c created
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &c) != nil {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		return c
	}
	// globex holds key-001 (its manager key); acme holds key-001 and key-002.
	g, a := post(globexKey, globexSecret), post(acmeKey, acmeSecret)
	if g.ID != "key-002" || a.ID != "key-003" {
		t.Fatalf("ids globex %s, acme %s; want key-002 and key-003 (numbered per account)", g.ID, a.ID)
	}
	g2 := post(globexKey, globexSecret)
	if g2.ID != "key-003" {
		t.Fatalf("globex's next id %s, want key-003 (acme has one too)", g2.ID)
	}
	if r := call(t, srv, "DELETE", "/v1/keys/key-003", acmeKey, acmeSecret, ""); r.status != 204 {
		t.Fatalf("acme revokes its key-003: %d %s", r.status, r.body)
	}
	if r := call(t, srv, "GET", "/v1/me", g2.APIKey, g2.APISecret, ""); r.status != 200 {
		t.Fatalf("globex's key-003 after acme revoked its own key-003: %d", r.status)
	}
	if r := call(t, srv, "GET", "/v1/me", a.APIKey, a.APISecret, ""); r.status != 401 {
		t.Fatalf("acme's revoked key-003: %d", r.status)
	}
	if live := f.LiveKeys("globex"); len(live) != 2 || live[1].ID != "key-003" {
		t.Fatalf("globex live keys %+v", live)
	}
}

func TestBadRequests(t *testing.T) {
	f, srv := start(t, fake.Options{})
	tests := []struct{ name, body, code string }{
		{"malformed JSON", `{"label":"x","scopes":[`, "invalid_json"},
		{"not an object", `["x"]`, "invalid_json"},
		{"empty body", ``, "invalid_json"},
		{"no label", `{"scopes":["accounts:read"]}`, "invalid_label"},
		{"empty label", `{"label":"  ","scopes":["accounts:read"]}`, "invalid_label"},
		{"label too long", `{"label":"` + strings.Repeat("é", 65) + `","scopes":["accounts:read"]}`, "invalid_label"},
		{"label with a control character", `{"label":"a\u0007b","scopes":["accounts:read"]}`, "invalid_label"},
		{"no scopes", `{"label":"x","scopes":[]}`, "invalid_scopes"},
		{"unknown scope", `{"label":"x","scopes":["accounts:read","accounts:admin"]}`, "invalid_scope"},
		{"scope not a string", `{"label":"x","scopes":[12]}`, "invalid_scope"},
		{"body too large", `{"label":"` + strings.Repeat("a", 70<<10) + `","scopes":["accounts:read"]}`, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, "POST", "/v1/keys", acmeKey, acmeSecret, tt.body)
			if r.status != 400 || !bytes.Contains(r.body, []byte(`"code":"`+tt.code+`"`)) {
				t.Fatalf("%d %s, want 400 %s", r.status, r.body, tt.code)
			}
		})
	}
	if n := len(f.LiveKeys("acme")); n != 0 {
		t.Fatalf("%d keys created", n)
	}
	if got := f.Stats().BadRequests; got != len(tests) {
		t.Fatalf("bad_requests = %d, want %d", got, len(tests))
	}
}

func TestAuthentication(t *testing.T) {
	_, srv := start(t, fake.Options{})
	tests := []struct {
		name, method, path, key, secret string
		status                          int
	}{
		{"no headers", "GET", "/v1/keys", "", "", 401},
		{"no secret", "GET", "/v1/keys", acmeKey, "", 401},
		{"no key", "POST", "/v1/keys", "", acmeSecret, 401},
		{"wrong secret", "GET", "/v1/keys", acmeKey, acmeSecret + "x", 401},
		{"another key's secret", "DELETE", "/v1/keys/key-002", acmeKey, globexSecret, 401},
		{"unknown key", "GET", "/v1/me", "bm_key_nobody", acmeSecret, 401},
		{"reader lists", "GET", "/v1/keys", readerKey, readerSecret, 403},
		{"reader creates", "POST", "/v1/keys", readerKey, readerSecret, 403},
		{"reader revokes", "DELETE", "/v1/keys/key-001", readerKey, readerSecret, 403},
		{"reader asks who it is", "GET", "/v1/me", readerKey, readerSecret, 200},
		{"manager lists", "GET", "/v1/keys", acmeKey, acmeSecret, 200},
		{"unknown endpoint", "GET", "/v1/accounts", acmeKey, acmeSecret, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, tt.method, tt.path, tt.key, tt.secret, `{"label":"x","scopes":["accounts:read"]}`)
			if r.status != tt.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.status)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	f, srv := start(t, fake.Options{})
	k := create(t, srv, "short-lived")
	if r := call(t, srv, "GET", "/v1/me", k.APIKey, k.APISecret, ""); r.status != 200 {
		t.Fatalf("before revocation: %d", r.status)
	}
	// Another account cannot see or revoke it.
	if r := call(t, srv, "DELETE", "/v1/keys/"+k.ID, globexKey, globexSecret, ""); r.status != 404 {
		t.Fatalf("globex revokes acme's key: %d %s", r.status, r.body)
	}
	if r := call(t, srv, "GET", "/v1/keys", globexKey, globexSecret, ""); r.status != 200 || bytes.Contains(r.body, []byte(k.ID)) {
		t.Fatalf("globex lists: %d %s", r.status, r.body)
	}

	// A request already in flight when the key is revoked gets 401.
	f.Latency(300 * time.Millisecond)
	var wg sync.WaitGroup
	var inFlight resp
	before := f.Stats().Requests
	wg.Go(func() { inFlight = call(t, srv, "GET", "/v1/me", k.APIKey, k.APISecret, "") })
	testenv.Eventually(t, 5*time.Second, "the request at the simulator", func() bool { return f.Stats().Requests > before }) // the simulator holds it
	f.Latency(0)
	if r := call(t, srv, "DELETE", "/v1/keys/"+k.ID, acmeKey, acmeSecret, ""); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	wg.Wait()
	if inFlight.status != 401 {
		t.Fatalf("in-flight request after revocation: %d %s", inFlight.status, inFlight.body)
	}
	if r := call(t, srv, "GET", "/v1/me", k.APIKey, k.APISecret, ""); r.status != 401 {
		t.Fatalf("after revocation: %d", r.status)
	}
	if r := call(t, srv, "DELETE", "/v1/keys/"+k.ID, acmeKey, acmeSecret, ""); r.status != 404 {
		t.Fatalf("revoke again: %d", r.status)
	}
	if r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, ""); bytes.Contains(r.body, []byte(k.ID)) {
		t.Fatalf("revoked key listed: %s", r.body)
	}
	info := f.Keys("acme")
	if last := info[len(info)-1]; last.ID != k.ID || !last.Revoked || !last.RevokedAt.Equal(clock()) || last.Seeded {
		t.Fatalf("simulator shows %+v", last)
	}
	// A manager key may revoke itself, and is refused at once after.
	if r := call(t, srv, "DELETE", "/v1/keys/key-001", acmeKey, acmeSecret, ""); r.status != 204 {
		t.Fatalf("self-revoke: %d", r.status)
	}
	if r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, ""); r.status != 401 {
		t.Fatalf("revoked manager lists: %d", r.status)
	}
}

func TestFaults(t *testing.T) {
	f, srv := start(t, fake.Options{})
	f.FailNext(2, 503)
	for i := range 2 {
		if r := call(t, srv, "GET", "/v1/keys", "", "", ""); r.status != 503 {
			t.Fatalf("request %d: %d, want the injected 503 before authentication", i, r.status)
		}
	}
	if r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, ""); r.status != 200 {
		t.Fatalf("after the burst: %d", r.status)
	}
	// Aimed at one method: the others go through, the fault waits.
	f.FailNextOf("DELETE", 1, 429)
	if r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, ""); r.status != 200 {
		t.Fatalf("a GET while a DELETE fault waits: %d", r.status)
	}
	if r := call(t, srv, "DELETE", "/v1/keys/key-999", acmeKey, acmeSecret, ""); r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Fatalf("the DELETE: %d, Retry-After %q; want the injected 429", r.status, r.header.Get("Retry-After"))
	}
	if r := call(t, srv, "DELETE", "/v1/keys/key-999", acmeKey, acmeSecret, ""); r.status != 404 {
		t.Fatalf("the next DELETE: %d, want 404", r.status)
	}

	f.RateLimit(2)
	var statuses []int
	var retryAfter string
	for range 3 {
		r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, "")
		statuses = append(statuses, r.status)
		if r.status == 429 {
			retryAfter = r.header.Get("Retry-After")
		}
	}
	if statuses[0] != 200 || statuses[2] != 429 || retryAfter != "1" {
		t.Fatalf("statuses %v, Retry-After %q: want the third refused with Retry-After: 1", statuses, retryAfter)
	}
	f.RateLimit(0)

	// A dropped answer: the client sees the connection close, the key exists.
	f.DropAfterCreate(1)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/keys", strings.NewReader(`{"label":"dropped","scopes":["accounts:read"]}`))
	req.Header.Set("X-API-Key", acmeKey)
	req.Header.Set("X-API-Secret", acmeSecret)
	if r, err := srv.Client().Do(req); err == nil {
		r.Body.Close()
		t.Fatalf("dropped create answered %d", r.StatusCode)
	}
	if live := f.LiveKeys("acme"); len(live) != 1 || live[0].Label != "dropped" {
		t.Fatalf("after the drop: %+v", live)
	}

	f.FailAfterCreate(1, 0)
	if r := call(t, srv, "POST", "/v1/keys", acmeKey, acmeSecret, `{"label":"failed","scopes":["accounts:read"]}`); r.status != 500 || bytes.Contains(r.body, []byte("bm_secret_")) {
		t.Fatalf("fail after create: %d %s", r.status, r.body)
	}
	if live := f.LiveKeys("acme"); len(live) != 2 {
		t.Fatalf("after the failure: %+v", live)
	}
	st := f.Stats()
	if st.Injected != 4 || st.RateLimited != 1 || st.Dropped != 1 || st.Creates != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestAdminEndpoint(t *testing.T) {
	f, srv := start(t, fake.Options{})
	post := func(body string) resp { return call(t, srv, "POST", "/_fake/faults", "", "", body) }
	r := post(`{"fail_next":1,"fail_status":502,"latency":"1ms","rate_limit":100,"drop_after_create":2,"list_envelope":"data"}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := fake.Faults{FailNext: 1, FailStatus: 502, Latency: "1ms", RateLimit: 100, DropAfterCreate: 2, ListEnvelope: "data"}
	if got := f.Faults(); got != want {
		t.Fatalf("faults = %+v, want %+v", got, want)
	}
	if r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, ""); r.status != 502 {
		t.Fatalf("injected: %d", r.status)
	}
	if r := call(t, srv, "GET", "/v1/keys", acmeKey, acmeSecret, ""); r.status != 200 || !bytes.HasPrefix(r.body, []byte(`{"count":2,"data":[`)) {
		t.Fatalf("enveloped list: %d %s", r.status, r.body)
	}
	for _, bad := range []string{`{"latency":"soon"}`, `{"fail_next":1,"fail_status":200}`, `{"rate_limit":-1}`, `not json`} {
		if r := post(bad); r.status != 400 {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}
	if r := post(`{"clear":true}`); r.status != 200 || f.Faults() != (fake.Faults{Latency: "0s"}) {
		t.Fatalf("clear: %d %+v", r.status, f.Faults())
	}
	create(t, srv, "admin-visible")
	var keys []fake.KeyInfo
	r = call(t, srv, "GET", "/_fake/keys?account=acme", "", "", "")
	if err := json.Unmarshal(r.body, &keys); err != nil || len(keys) != 3 || keys[2].Label != "admin-visible" || keys[0].Seeded != true {
		t.Fatalf("keys: %v %s", err, r.body)
	}
	r = call(t, srv, "GET", "/_fake/keys", "", "", "")
	if err := json.Unmarshal(r.body, &keys); err != nil || len(keys) != 4 {
		t.Fatalf("all keys: %v %s", err, r.body)
	}
	var st fake.Stats
	r = call(t, srv, "GET", "/_fake/stats", "", "", "")
	if err := json.Unmarshal(r.body, &st); err != nil || st.Creates != 1 || st.Injected != 1 || st.Lists != 1 {
		t.Fatalf("stats: %v %s", err, r.body)
	}
	if bytes.Contains(r.body, []byte("secret")) {
		t.Fatalf("stats show a secret: %s", r.body)
	}
}

func TestStatePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	f, srv := start(t, fake.Options{StatePath: path})
	a := create(t, srv, "kept")
	b := create(t, srv, "revoked")
	if r := call(t, srv, "DELETE", "/v1/keys/"+b.ID, acmeKey, acmeSecret, ""); r.status != 204 {
		t.Fatal(r.status)
	}
	srv.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{a.APISecret, b.APISecret, acmeSecret, globexSecret, "bm_secret_"} {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("the state file holds a secret %q:\n%s", s, raw)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(m) != 0 {
		t.Fatalf("temporary files left: %v", m)
	}

	f2, srv2 := start(t, fake.Options{StatePath: path})
	if got, want := f2.Keys("acme"), f.Keys("acme"); !reflect.DeepEqual(got, want) || !got[3].Revoked {
		t.Fatalf("after restart %+v, want %+v", got, want)
	}
	if r := call(t, srv2, "GET", "/v1/me", a.APIKey, a.APISecret, ""); r.status != 200 {
		t.Fatalf("a created key after restart: %d", r.status)
	}
	if r := call(t, srv2, "GET", "/v1/me", b.APIKey, b.APISecret, ""); r.status != 401 {
		t.Fatalf("a revoked key after restart: %d", r.status)
	}
	if c := create(t, srv2, "next"); c.ID != "key-005" {
		t.Fatalf("id after restart %s, want key-005", c.ID)
	}

	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.New(fake.Options{StatePath: path}); err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("broken state: %v", err)
	}
}

func TestSeedValidation(t *testing.T) {
	tests := []struct{ name, seed, want string }{
		{"not JSON", `{`, "not valid seed JSON"},
		{"no account id", `{"accounts":[{"id":""}]}`, "id is empty"},
		{"account twice", `{"accounts":[{"id":"a"},{"id":"a"}]}`, "listed twice"},
		{"key without secret", `{"accounts":[{"id":"a","manager_keys":[{"api_key":"k"}]}]}`, "api_secret are required"},
		{"key twice", `{"accounts":[{"id":"a","manager_keys":[{"api_key":"k","api_secret":"s"}]},{"id":"b","manager_keys":[{"api_key":"k","api_secret":"t"}]}]}`, "used twice"},
		{"bad scope", `{"accounts":[{"id":"a","manager_keys":[{"api_key":"k","api_secret":"s","scopes":["keys:admin"]}]}]}`, "not a scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fake.ParseSeed([]byte(tt.seed))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "seed.json")
	os.WriteFile(p, []byte(seedJSON), 0o600)
	if s, err := fake.LoadSeed(p); err != nil || len(s.Accounts) != 2 {
		t.Fatalf("LoadSeed: %v", err)
	}
}

func TestDeterministicRand(t *testing.T) {
	key := func() string {
		_, srv := start(t, fake.Options{Rand: rand.NewChaCha8([32]byte{1})})
		return create(t, srv, "x").APIKey
	}
	if a, b := key(), key(); a != b {
		t.Fatalf("same Rand gave %s and %s", a, b)
	}
}
