// Package fake simulates the Buildmarkets keys API as its published
// contract describes it, for tests, the demo and `keydesk fakeapi`.
//
// What it keeps faithful: every request is authenticated by X-API-Key and
// X-API-Secret (401 when missing, invalid or revoked; 403 when the key
// lacks keys:manage); POST /v1/keys returns the secret once, with an id
// like key-001 numbered per account (two accounts both have a key-001,
// as the contract's example implies), a bm_key_ key and a bm_secret_ secret; GET /v1/keys lists
// the caller's account only, never a secret; DELETE /v1/keys/{id} answers
// 204 and the key is refused at once, even for requests already in flight
// (authentication and the operation happen under one lock, after any
// injected latency). A retried POST creates a second key, as the contract
// warns. Where the contract is silent the simulator picks the strict
// reading and says so in docs/api-client.md.
//
// Faults can be injected from Go (FailNext, Latency, RateLimit,
// DropAfterCreate, FailAfterCreate, SetListEnvelope) and over HTTP at
// /_fake/faults; /_fake/keys and /_fake/stats show what happened.
//
// The simulator keeps no secret in plain text: seeded and created secrets
// are held as SHA-256 hashes, in memory and in the optional state file. It
// is safe for concurrent use.
package fake

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/buildmarkets/keydesk"
)

// Options configure a Server.
type Options struct {
	// Seed holds the accounts and their keys:manage keys.
	Seed *Seed
	// StatePath, if set, is a JSON file that keeps the keys across
	// restarts: loaded at New, rewritten atomically after each change.
	// Secrets are stored only as hashes.
	StatePath string
	// Clock gives created_at; default time.Now. Rate limiting and latency
	// use real time regardless.
	Clock func() time.Time
	// Rand gives key values and secrets; default crypto/rand.
	Rand io.Reader
	// Logger gets a debug line per request; default: discard.
	Logger *slog.Logger
	// Latency, RateLimit and ListEnvelope set the initial faults (see the
	// methods of the same names).
	Latency      time.Duration
	RateLimit    float64
	ListEnvelope string
}

// Server is the simulator, an http.Handler.
type Server struct {
	clock func() time.Time
	rand  io.Reader
	log   *slog.Logger
	path  string
	mux   *http.ServeMux

	mu       sync.Mutex
	accounts map[string][]*key // account → keys in creation order
	byAPIKey map[string]*key
	// nextID numbers keys per account, as the API does: every account
	// has its own key-001.
	nextID  map[string]int
	f       faults
	limiter *rate.Limiter
	stats   Stats
}

var _ http.Handler = (*Server)(nil)

type key struct {
	ID         string
	Account    string
	Label      string
	APIKey     string
	SecretHash [sha256.Size]byte
	Scopes     []keydesk.Scope
	CreatedAt  time.Time
	RevokedAt  time.Time
	Seeded     bool
}

func (k *key) revoked() bool { return !k.RevokedAt.IsZero() }

// Limits of what a client may send.
const (
	maxBodyBytes   = 64 << 10
	maxLabelRunes  = keydesk.MaxLabelLength
	maxScopesInKey = 64
)

// New returns a simulator with the seed's accounts, and the keys of
// StatePath if it exists.
func New(o Options) (*Server, error) {
	s := &Server{
		clock:    o.Clock,
		rand:     o.Rand,
		log:      o.Logger,
		path:     o.StatePath,
		accounts: map[string][]*key{},
		byAPIKey: map[string]*key{},
		nextID:   map[string]int{},
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.path != "" {
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	if o.Seed != nil {
		if err := o.Seed.Validate(); err != nil {
			return nil, fmt.Errorf("fake: seed: %w", err)
		}
		for _, a := range o.Seed.Accounts {
			if _, ok := s.accounts[a.ID]; !ok {
				s.accounts[a.ID] = nil
			}
			for _, sk := range a.ManagerKeys {
				if _, ok := s.byAPIKey[sk.APIKey]; ok {
					continue // kept from the state file, revoked or not
				}
				label := sk.Label
				if label == "" {
					label = "manager"
				}
				s.addKey(&key{Account: a.ID, Label: label, APIKey: sk.APIKey, SecretHash: sha256.Sum256([]byte(sk.APISecret)),
					Scopes: slices.Clone(sk.Scopes), CreatedAt: s.now(), Seeded: true})
			}
		}
	}
	if s.path != "" {
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	s.Latency(o.Latency)
	s.RateLimit(o.RateLimit)
	s.SetListEnvelope(o.ListEnvelope)

	m := http.NewServeMux()
	m.HandleFunc("POST /v1/keys", s.api(s.create, true))
	m.HandleFunc("GET /v1/keys", s.api(s.list, true))
	m.HandleFunc("DELETE /v1/keys/{id}", s.api(s.revoke, true))
	m.HandleFunc("GET /v1/me", s.api(s.me, false))
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	s.adminRoutes(m)
	s.mux = m
	return s, nil
}

func (s *Server) now() time.Time { return s.clock().UTC().Truncate(time.Second) }

// addKey gives k the next id of its account and indexes it. A key that
// comes with an id (from the state file) moves the account's counter past
// it. s.mu held (or not yet shared).
func (s *Server) addKey(k *key) {
	if k.ID == "" {
		k.ID = fmt.Sprintf("key-%03d", max(s.nextID[k.Account], 1))
	}
	var n int
	if _, err := fmt.Sscanf(k.ID, "key-%d", &n); err == nil && n >= s.nextID[k.Account] {
		s.nextID[k.Account] = n + 1
	}
	s.accounts[k.Account] = append(s.accounts[k.Account], k)
	s.byAPIKey[k.APIKey] = k
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// caller is an authenticated request.
type caller struct {
	key *key
}

// api wraps an endpoint: latency, rate limit and injected failures come
// first, as a proxy's would; then authentication and the operation run
// under the lock, so that a revocation takes effect for every request that
// has not yet been answered.
func (s *Server) api(h func(w http.ResponseWriter, r *http.Request, c caller, body []byte) int, needManage bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		status := s.serveAPI(w, r, h, needManage)
		s.log.DebugContext(r.Context(), "fake: request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("api_key", r.Header.Get("X-API-Key")), slog.Int("status", status))
	}
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request, caller, []byte) int, needManage bool) int {
	s.mu.Lock()
	s.stats.Requests++
	lat := s.f.latency
	s.mu.Unlock()
	if lat > 0 {
		// Not cut short when the client gives up: a real server goes on
		// with a request whose caller timed out, and may create the key.
		time.Sleep(lat)
	}
	// Read the body before taking the lock: a slow client must not stall
	// the others.
	var body []byte
	if r.Method == http.MethodPost {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			s.count(func(st *Stats) { st.BadRequests++ })
			return writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("the body could not be read (limit %d bytes)", maxBodyBytes))
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limiter != nil {
		now := time.Now()
		res := s.limiter.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			s.stats.RateLimited++
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
			return writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests: slow down")
		}
	}
	if s.f.failNext > 0 && (s.f.failMethod == "" || s.f.failMethod == r.Method) {
		s.f.failNext--
		s.stats.Injected++
		if s.f.failStatus == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		return writeError(w, s.f.failStatus, "injected", "injected fault")
	}

	apiKey, secret := r.Header.Get("X-API-Key"), r.Header.Get("X-API-Secret")
	if apiKey == "" || secret == "" {
		s.stats.Unauthorized++
		return writeError(w, http.StatusUnauthorized, "unauthorized", "missing X-API-Key or X-API-Secret header")
	}
	k := s.byAPIKey[apiKey]
	h2 := sha256.Sum256([]byte(secret))
	if k == nil || subtle.ConstantTimeCompare(k.SecretHash[:], h2[:]) != 1 || k.revoked() {
		s.stats.Unauthorized++
		return writeError(w, http.StatusUnauthorized, "unauthorized", "invalid or revoked API key")
	}
	if needManage && !slices.Contains(k.Scopes, keydesk.ScopeKeysManage) {
		s.stats.Forbidden++
		return writeError(w, http.StatusForbidden, "forbidden", "this key lacks the keys:manage scope")
	}
	return h(w, r, caller{key: k}, body)
}

func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// create handles POST /v1/keys. s.mu held.
func (s *Server) create(w http.ResponseWriter, r *http.Request, c caller, body []byte) int {
	var req struct {
		Label  *string           `json:"label"`
		Scopes []json.RawMessage `json:"scopes"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.stats.BadRequests++
		return writeError(w, http.StatusBadRequest, "invalid_json", "the body is not a JSON object with label and scopes")
	}
	if msg := checkLabel(req.Label); msg != "" {
		s.stats.BadRequests++
		return writeError(w, http.StatusBadRequest, "invalid_label", msg)
	}
	if len(req.Scopes) == 0 || len(req.Scopes) > maxScopesInKey {
		s.stats.BadRequests++
		return writeError(w, http.StatusBadRequest, "invalid_scopes", "scopes must list between 1 and 12 scopes")
	}
	var scopes []keydesk.Scope
	for _, raw := range req.Scopes {
		var sc string
		if err := json.Unmarshal(raw, &sc); err != nil || !keydesk.Scope(sc).Valid() {
			s.stats.BadRequests++
			return writeError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("unknown scope %s", truncate(string(raw), 64)))
		}
		if !slices.Contains(scopes, keydesk.Scope(sc)) {
			scopes = append(scopes, keydesk.Scope(sc))
		}
	}
	apiKey, err := s.random("bm_key_", 20)
	if err != nil {
		return writeError(w, http.StatusInternalServerError, "internal", "no randomness")
	}
	secret, err := s.random("bm_secret_", 32)
	if err != nil {
		return writeError(w, http.StatusInternalServerError, "internal", "no randomness")
	}
	k := &key{Account: c.key.Account, Label: strings.TrimSpace(*req.Label), APIKey: string(apiKey),
		SecretHash: sha256.Sum256(secret), Scopes: scopes, CreatedAt: s.now()}
	s.addKey(k)
	s.stats.Creates++
	if err := s.save(); err != nil {
		s.log.ErrorContext(r.Context(), "fake: saving state", slog.String("error", err.Error()))
	}

	// Faults that strike after the key exists: the caller cannot know.
	if s.f.dropAfterCreate > 0 {
		s.f.dropAfterCreate--
		s.stats.Dropped++
		clear(secret)
		dropConnection(w)
		return 0
	}
	if s.f.failAfterCreate > 0 {
		s.f.failAfterCreate--
		s.stats.Injected++
		clear(secret)
		return writeError(w, s.f.failAfterStatus, "injected", "injected fault after the key was created")
	}

	out := struct {
		wireKey
		APISecret string `json:"api_secret"`
	}{wireOf(k), string(secret)}
	clear(secret)
	return writeJSON(w, http.StatusCreated, out)
}

// dropConnection closes the connection without an answer, as a crashed
// server or a cut network would.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 cannot hand over its connection: reset the stream.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func checkLabel(l *string) string {
	if l == nil {
		return "label is required"
	}
	v := strings.TrimSpace(*l)
	switch {
	case v == "":
		return "label must not be empty"
	case !utf8.ValidString(v):
		return "label must be UTF-8 text"
	case utf8.RuneCountInString(v) > maxLabelRunes:
		return fmt.Sprintf("label must be at most %d characters", maxLabelRunes)
	}
	for _, r := range v {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "label must not hold control characters"
		}
	}
	return ""
}

// list handles GET /v1/keys: the caller's account's live keys. s.mu held.
func (s *Server) list(w http.ResponseWriter, _ *http.Request, c caller, _ []byte) int {
	s.stats.Lists++
	out := []wireKey{}
	for _, k := range s.accounts[c.key.Account] {
		if !k.revoked() {
			out = append(out, wireOf(k))
		}
	}
	if s.f.listEnvelope == "" {
		return writeJSON(w, http.StatusOK, out)
	}
	return writeJSON(w, http.StatusOK, map[string]any{s.f.listEnvelope: out, "count": len(out)})
}

// revoke handles DELETE /v1/keys/{id}. A key of another account is as
// unknown as a key that never was. s.mu held.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, c caller, _ []byte) int {
	id := r.PathValue("id")
	for _, k := range s.accounts[c.key.Account] {
		if k.ID == id && !k.revoked() {
			k.RevokedAt = s.now()
			s.stats.Revokes++
			if err := s.save(); err != nil {
				s.log.ErrorContext(r.Context(), "fake: saving state", slog.String("error", err.Error()))
			}
			w.WriteHeader(http.StatusNoContent)
			return http.StatusNoContent
		}
	}
	s.stats.NotFound++
	return writeError(w, http.StatusNotFound, "not_found", "no such key")
}

// me handles GET /v1/me, a simulator endpoint any valid key may call: it
// shows that a delivered key works, or no longer does. s.mu held.
func (s *Server) me(w http.ResponseWriter, _ *http.Request, c caller, _ []byte) int {
	return writeJSON(w, http.StatusOK, map[string]any{"account": c.key.Account, "key": wireOf(c.key)})
}

// wireKey is a key's metadata as the API shows it. The extra members are
// there so that clients are exercised on fields they do not know.
type wireKey struct {
	ID         string          `json:"id"`
	Label      string          `json:"label"`
	APIKey     string          `json:"api_key"`
	Scopes     []keydesk.Scope `json:"scopes"`
	CreatedAt  string          `json:"created_at"`
	Status     string          `json:"status"`
	LastUsedAt *string         `json:"last_used_at"`
}

func wireOf(k *key) wireKey {
	return wireKey{ID: k.ID, Label: k.Label, APIKey: k.APIKey, Scopes: slices.Clone(k.Scopes),
		CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339), Status: "active"}
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	clear(b)
	return status
}

func writeError(w http.ResponseWriter, status int, code, msg string) int {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	return writeJSON(w, status, struct {
		Error detail `json:"error"`
	}{detail{code, msg}})
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// random returns prefix and n random letters and digits. s.mu held.
func (s *Server) random(prefix string, n int) ([]byte, error) {
	out := make([]byte, 0, len(prefix)+n)
	out = append(out, prefix...)
	var buf [64]byte
	for len(out) < len(prefix)+n {
		if _, err := io.ReadFull(s.rand, buf[:]); err != nil {
			return nil, err
		}
		for _, b := range buf {
			// 248 = 4*62: rejecting the rest keeps every letter equally likely.
			if b < 248 && len(out) < len(prefix)+n {
				out = append(out, alnum[b%62])
			}
		}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// KeyInfo is what the simulator knows of a key, for tests.
type KeyInfo struct {
	ID        string          `json:"id"`
	Account   string          `json:"account"`
	Label     string          `json:"label"`
	APIKey    string          `json:"api_key"`
	Scopes    []keydesk.Scope `json:"scopes"`
	CreatedAt time.Time       `json:"created_at"`
	Revoked   bool            `json:"revoked"`
	RevokedAt time.Time       `json:"revoked_at,omitzero"`
	// Seeded keys came from the seed (the manager keys).
	Seeded bool `json:"seeded"`
}

// Keys returns every key of the account, revoked ones included, in
// creation order.
func (s *Server) Keys(account string) []KeyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []KeyInfo{}
	for _, k := range s.accounts[account] {
		out = append(out, KeyInfo{ID: k.ID, Account: k.Account, Label: k.Label, APIKey: k.APIKey, Scopes: slices.Clone(k.Scopes),
			CreatedAt: k.CreatedAt, Revoked: k.revoked(), RevokedAt: k.RevokedAt, Seeded: k.Seeded})
	}
	return out
}

// LiveKeys returns the account's keys that are not revoked and not seeded:
// the keys keydesk made and that still work.
func (s *Server) LiveKeys(account string) []KeyInfo {
	var out []KeyInfo
	for _, k := range s.Keys(account) {
		if !k.Revoked && !k.Seeded {
			out = append(out, k)
		}
	}
	return out
}

// Stats counts what the simulator answered.
type Stats struct {
	Requests     int `json:"requests"`     // every API request, faults included
	Creates      int `json:"creates"`      // keys created (dropped answers included)
	Lists        int `json:"lists"`        // successful GET /v1/keys
	Revokes      int `json:"revokes"`      // keys revoked
	Unauthorized int `json:"unauthorized"` // 401 answers
	Forbidden    int `json:"forbidden"`    // 403 answers
	BadRequests  int `json:"bad_requests"` // 400 answers
	NotFound     int `json:"not_found"`    // 404 answers to DELETE
	RateLimited  int `json:"rate_limited"` // 429 answers of the rate limit
	Injected     int `json:"injected"`     // answers of FailNext and FailAfterCreate
	Dropped      int `json:"dropped"`      // connections closed by DropAfterCreate
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Authenticate reports whether the key and secret would be accepted now,
// as a test's quick check that a delivered key works.
func (s *Server) Authenticate(apiKey string, secret []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.byAPIKey[apiKey]
	h := sha256.Sum256(secret)
	return k != nil && !k.revoked() && subtle.ConstantTimeCompare(k.SecretHash[:], h[:]) == 1
}
