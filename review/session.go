package review

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
	"golang.org/x/time/rate"
)

// session is what the sessions bucket holds for one login. The cookie
// value is never stored: the key is its SHA-256.
type session struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Seen    time.Time `json:"seen"`

	// A person signed in by single sign-on: the provider's issuer and
	// subject, their email, the role their groups gave, the person key
	// four eyes counts, when they signed in at the provider and when
	// their ID token ends (both on this server's clock). No provider
	// token is kept.
	Issuer  string     `json:"issuer,omitempty"`
	Subject string     `json:"subject,omitempty"`
	Email   string     `json:"email,omitempty"`
	Role    users.Role `json:"role,omitempty"`
	Person  string     `json:"person,omitempty"`
	AuthAt  time.Time  `json:"auth_at,omitzero"`
	Expires time.Time  `json:"expires,omitzero"`

	key string
	rev uint64
}

// staff is who makes a request, from a session or a token.
type staff struct {
	Name string
	Role users.Role
	// Person is who the staff member is for four eyes (an approval's
	// person key); Subject is the provider's ID of a person signed in by
	// single sign-on.
	Person  string
	Subject string
	sess    *session // nil for API tokens
}

// person is the staff member's person key.
func (st staff) person() string {
	if st.Person != "" {
		return st.Person
	}
	return st.Name
}

// staffOf is a users.yaml account as staff.
func staffOf(u users.User) *staff {
	return &staff{Name: u.Name, Role: u.Role, Person: u.PersonKey()}
}

// errSSOEnded says the request's session was a single sign-on one that
// has ended: a page load goes back through the provider.
var errSSOEnded = errors.New("review: single sign-on session ended")

// maxSessionLife ends even a busy session: a stolen cookie is not good
// forever.
const maxSessionLife = 12 * time.Hour

func (s *Server) cookieName() string {
	if s.o.InsecureCookie {
		return "keydesk_session"
	}
	// __Host- makes browsers insist on Secure, Path=/ and no Domain.
	return "__Host-keydesk_session"
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("review: crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// sessions is the sessions bucket, by sessionKey.
func (s *Server) sessions() *queue.Bucket[session] {
	return queue.NewBucket[session](s.o.Queue, queue.BucketSessions)
}

// newSession stores a session for user and sets its cookie.
func (s *Server) newSession(ctx context.Context, w http.ResponseWriter, user string) error {
	now := s.now().UTC()
	return s.storeSession(ctx, w, &session{User: user, CSRF: randomToken(), Created: now, Seen: now})
}

// newSSOSession stores a session for a person the provider vouched for.
func (s *Server) newSSOSession(ctx context.Context, w http.ResponseWriter, id *identity) error {
	now := s.now().UTC()
	return s.storeSession(ctx, w, &session{
		User: id.Name, CSRF: randomToken(), Created: now, Seen: now,
		Issuer: s.rp.o.Issuer, Subject: id.Subject, Email: id.Email, Role: id.Role,
		Person: id.Person, AuthAt: id.AuthAt, Expires: id.Expires,
	})
}

func (s *Server) storeSession(ctx context.Context, w http.ResponseWriter, se *session) error {
	cookie := randomToken()
	if _, err := s.sessions().Create(ctx, sessionKey(cookie), se); err != nil {
		return fmt.Errorf("review: store session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: cookie, Path: "/",
		HttpOnly: true, Secure: !s.o.InsecureCookie, SameSite: http.SameSiteStrictMode,
	})
	return nil
}

func (s *Server) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: !s.o.InsecureCookie, SameSite: http.SameSiteStrictMode,
	})
}

// sessionStaff returns the signed-in staff member of a UI request, or nil.
// A session idle too long, too old, or whose user is gone or has no
// password any more is ended. The role is read from users.yaml each time,
// so a change of role takes effect at once.
func (s *Server) sessionStaff(r *http.Request) (*staff, error) {
	c, err := r.Cookie(s.cookieName())
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	key := sessionKey(c.Value)
	ctx := r.Context()
	se, rev, err := s.sessions().Get(ctx, key)
	var de *queue.DecodeError
	switch {
	case errors.Is(err, keydesk.ErrNotFound):
		return nil, nil
	case errors.As(err, &de):
		_ = s.sessions().Purge(ctx, key)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("review: read session: %w", err)
	}
	se.key, se.rev = key, rev
	now := s.now().UTC()
	if se.Issuer != "" {
		return s.ssoStaff(ctx, se, now)
	}
	u, ok := s.o.Users().Lookup(se.User)
	if s.ended(se, now) || !ok || u.PasswordHash == "" || s.o.PasswordLoginOff {
		_ = s.sessions().Purge(ctx, key)
		return nil, nil
	}
	s.touch(ctx, se, now)
	st := staffOf(u)
	st.sess = se
	return st, nil
}

// ended reports whether a session is past its idle time or its life, or
// (single sign-on) past its ID token's end.
func (s *Server) ended(se *session, now time.Time) bool {
	return now.Sub(se.Seen) > s.o.SessionIdle || now.Sub(se.Created) > maxSessionLife ||
		(!se.Expires.IsZero() && !now.Before(se.Expires))
}

// ssoStaff is the person of a single sign-on session, whose role came
// from the provider at sign-in. A session of another issuer (the config
// changed) ends; one whose ID token has ended says so, so that a page
// load goes back through the provider.
func (s *Server) ssoStaff(ctx context.Context, se *session, now time.Time) (*staff, error) {
	if s.rp == nil || se.Issuer != s.rp.o.Issuer {
		_ = s.sessions().Purge(ctx, se.key)
		return nil, nil
	}
	if s.ended(se, now) {
		_ = s.sessions().Purge(ctx, se.key)
		return nil, errSSOEnded
	}
	s.touch(ctx, se, now)
	return &staff{Name: se.User, Role: se.Role, Person: se.Person, Subject: se.Subject, sess: se}, nil
}

// touch marks a session used, at most once a minute (or a tenth of the
// idle time): a page load should not cost a write.
func (s *Server) touch(ctx context.Context, se *session, now time.Time) {
	if now.Sub(se.Seen) > min(time.Minute, s.o.SessionIdle/10) {
		se.Seen = now
		if rev, err := s.sessions().Update(ctx, se.key, se, se.rev); err == nil {
			se.rev = rev
		}
	}
}

// endSession removes the session of the request.
func (s *Server) endSession(ctx context.Context, st *staff) {
	if st != nil && st.sess != nil {
		_ = s.sessions().Purge(ctx, st.sess.key)
	}
}

// checkCSRF compares the form's token with the session's.
func checkCSRF(r *http.Request, st *staff) bool {
	if st == nil || st.sess == nil {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(st.sess.CSRF)) == 1
}

// sweepSessions removes sessions past their idle time or life, and any
// that cannot be read.
func (s *Server) sweepSessions(ctx context.Context) (int, error) {
	b := s.sessions()
	entries, err := b.Scan(ctx, "")
	if err != nil {
		return 0, err
	}
	now := s.now().UTC()
	n := 0
	for _, e := range entries {
		se := e.Value
		if strings.HasPrefix(e.Key, oidcPrefix) {
			continue // pending logins: swept below
		}
		if e.Err != nil || s.ended(se, now) {
			if b.Purge(ctx, e.Key) == nil {
				n++
			}
		}
	}
	logins, err := s.pendingLogins().Scan(ctx, oidcPrefix)
	if err != nil {
		return n, err
	}
	for _, e := range logins {
		if e.Err != nil || now.After(e.Value.Expires) {
			if s.pendingLogins().Purge(ctx, e.Key) == nil {
				n++
			}
		}
	}
	return n, nil
}

// pendingLogins is the sessions bucket's pending single sign-on logins,
// under oidcPrefix.
func (s *Server) pendingLogins() *queue.Bucket[pendingLogin] {
	return queue.NewBucket[pendingLogin](s.o.Queue, queue.BucketSessions)
}

// loginLimiter bounds login attempts per name and per client address,
// and bad API tokens per address.
//
// Its memory is bounded without handing an attacker a reset: a refused
// attempt adds no entry (an address over its budget cannot fill the
// tables with names), and a full table drops its least recently used
// entry, never every entry, so a flood of new names or addresses cannot
// clear the counter of a name under attack.
type loginLimiter struct {
	mu     sync.Mutex
	byName *limiterSet
	byIP   *limiterSet
}

// Login rates: a person mistyping gets a few tries at once, then one
// every 20 s per name; an address gets 10, then one every 6 s.
const (
	maxLimiters = 10000
	nameBurst   = 5
	nameEvery   = 20 * time.Second
	ipBurst     = 10
	ipEvery     = 6 * time.Second
)

// newSSOLimiter bounds the single sign-ons begun per client address:
// each writes a pending login to the sessions bucket. 30 at once, then
// one a second.
func newSSOLimiter() *loginLimiter {
	return &loginLimiter{byName: newLimiterSet(time.Second, 1, 1), byIP: newLimiterSet(time.Second, 30, maxLimiters)}
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{
		byName: newLimiterSet(nameEvery, nameBurst, maxLimiters),
		byIP:   newLimiterSet(ipEvery, ipBurst, maxLimiters),
	}
}

// allow reports whether a login for name from ip may be tried now, and if
// so takes a token from each.
func (l *loginLimiter) allow(name, ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A key without an entry has its whole burst: only existing entries
	// can refuse, so they are checked before anything is added or taken.
	lip := l.byIP.get(ip)
	if lip != nil && lip.TokensAt(now) < 1 {
		return false
	}
	var lname *rate.Limiter
	if name != "" {
		lname = l.byName.get(name)
		if lname != nil && lname.TokensAt(now) < 1 {
			return false
		}
	}
	if lip == nil {
		lip = l.byIP.add(ip)
	}
	lip.AllowN(now, 1)
	if name != "" {
		if lname == nil {
			lname = l.byName.add(name)
		}
		lname.AllowN(now, 1)
	}
	return true
}

// limiterSet holds one rate limiter per key, at most max of them; when
// full, adding drops the least recently used.
type limiterSet struct {
	every time.Duration
	burst int
	max   int
	m     map[string]*list.Element // of *limiterEntry
	lru   list.List                // front: most recently used
}

type limiterEntry struct {
	key string
	l   *rate.Limiter
}

func newLimiterSet(every time.Duration, burst, max int) *limiterSet {
	return &limiterSet{every: every, burst: burst, max: max, m: map[string]*list.Element{}}
}

// get returns key's limiter, marked as just used, or nil if it has none.
func (s *limiterSet) get(key string) *rate.Limiter {
	el, ok := s.m[key]
	if !ok {
		return nil
	}
	s.lru.MoveToFront(el)
	return el.Value.(*limiterEntry).l
}

// add makes a limiter for key (which has none).
func (s *limiterSet) add(key string) *rate.Limiter {
	for len(s.m) >= s.max {
		old := s.lru.Back()
		s.lru.Remove(old)
		delete(s.m, old.Value.(*limiterEntry).key)
	}
	e := &limiterEntry{key: key, l: rate.NewLimiter(rate.Every(s.every), s.burst)}
	s.m[key] = s.lru.PushFront(e)
	return e.l
}

// clientIP is the connection's address. X-Forwarded-For is not trusted:
// any client could write it (see docs/review.md for proxies).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
