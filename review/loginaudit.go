package review

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/buildmarkets/keydesk"
)

// Failed and throttled sign-ins are unauthenticated writes to the audit
// trail, so they are rolled up: one event per name, client address and
// minute, with a count, written when the minute is over (at the next
// attempt, the next sweep of Server.Run, or at shutdown). A flood costs
// at most maxLoginTallies+1 events a minute however it is spread.
//
// A name that is no staff member's is recorded only as a digest: people
// type passwords into the name field. The digest is an HMAC under a key
// made at start and never stored, so the same unknown name matches
// itself within a run but the audit trail holds nothing to guess it from.

const (
	// loginWindow is the span one rolled-up event covers.
	loginWindow = time.Minute
	// maxLoginTallies bounds the names×addresses told apart per window;
	// attempts beyond it share one "others" event.
	maxLoginTallies = 100
)

// loginKey is what one rolled-up event is about.
type loginKey struct {
	name  string // a staff name, or unknownName's digest form
	known bool
	ip    string
}

// loginTally counts one key's attempts in the window.
type loginTally struct {
	failed, throttled int
	first, last       time.Time
}

func (t *loginTally) add(throttled bool, now time.Time) {
	if t.first.IsZero() {
		t.first = now
	}
	t.last = now
	if throttled {
		t.throttled++
	} else {
		t.failed++
	}
}

// loginAudit holds the tallies of the current window.
type loginAudit struct {
	mu     sync.Mutex
	digest []byte // HMAC key for unknown names
	window time.Time
	counts map[loginKey]*loginTally
	order  []loginKey // first-seen order, so events come out stable
	others loginTally // beyond maxLoginTallies
}

func newLoginAudit() *loginAudit {
	return &loginAudit{digest: []byte(randomToken()), counts: map[loginKey]*loginTally{}}
}

// unknownName is how a name that is no staff member's is written down.
func (a *loginAudit) unknownName(name string) string {
	m := hmac.New(sha256.New, a.digest)
	m.Write([]byte(name))
	return "unknown name #" + hex.EncodeToString(m.Sum(nil))[:12]
}

// recordName is name as the log and audit trail may show it.
func (s *Server) recordName(name string) (string, bool) {
	if _, ok := s.o.Users().Lookup(name); ok && name != "" {
		return name, true
	}
	return s.loginAudit.unknownName(name), false
}

// loginAttempt counts a failed (wrong name or password) or throttled
// sign-in, and writes out the windows that have ended.
func (s *Server) loginAttempt(ctx context.Context, name, ip string, throttled bool) {
	rec, known := s.recordName(name)
	now := s.now().UTC()
	a := s.loginAudit
	a.mu.Lock()
	var ended []keydesk.Event
	if w := now.Truncate(loginWindow); !w.Equal(a.window) {
		ended = a.takeLocked()
		a.window = w
	}
	k := loginKey{name: rec, known: known, ip: ip}
	t, ok := a.counts[k]
	switch {
	case ok:
	case len(a.counts) < maxLoginTallies:
		t = &loginTally{}
		a.counts[k] = t
		a.order = append(a.order, k)
	default:
		t = &a.others
	}
	t.add(throttled, now)
	a.mu.Unlock()
	s.writeLoginEvents(ctx, ended)
}

// flushLogins writes out the window if it has ended by now, or whatever
// it holds if all is set (at shutdown).
func (s *Server) flushLogins(ctx context.Context, all bool) {
	a := s.loginAudit
	a.mu.Lock()
	var ended []keydesk.Event
	if all || !s.now().UTC().Before(a.window.Add(loginWindow)) {
		ended = a.takeLocked()
	}
	a.mu.Unlock()
	s.writeLoginEvents(ctx, ended)
}

// takeLocked empties the window into its events.
func (a *loginAudit) takeLocked() []keydesk.Event {
	var out []keydesk.Event
	for _, k := range a.order {
		out = append(out, loginEvent(k, a.counts[k]))
	}
	if a.others.failed+a.others.throttled > 0 {
		e := loginEvent(loginKey{name: "other names", ip: "other addresses"}, &a.others)
		e.Change = fmt.Sprintf("%d more sign-in attempts in this minute beyond the %d name and address pairs told apart: %s",
			e.Count, maxLoginTallies, tallyText(&a.others))
		out = append(out, e)
	}
	clear(a.counts)
	a.order = a.order[:0]
	a.others = loginTally{}
	return out
}

func loginEvent(k loginKey, t *loginTally) keydesk.Event {
	who := "anonymous"
	if k.known {
		who = k.name
	}
	action := "login-failed"
	if t.failed == 0 {
		action = "login-throttled"
	}
	return keydesk.Event{
		Ref: who, Actor: who, Action: action, At: t.first, Count: t.failed + t.throttled,
		Change: fmt.Sprintf("from %s as %s: %s", k.ip, k.name, tallyText(t)),
	}
}

func tallyText(t *loginTally) string {
	return fmt.Sprintf("%d wrong name or password, %d refused by the rate limit, %s–%s",
		t.failed, t.throttled, t.first.Format("15:04:05"), t.last.Format("15:04:05Z"))
}

func (s *Server) writeLoginEvents(ctx context.Context, evs []keydesk.Event) {
	for _, e := range evs {
		s.log.Warn("review: failed sign-ins", "user", e.Actor, "action", e.Action, "count", e.Count, "change", e.Change)
		if err := s.o.Queue.Record(context.WithoutCancel(ctx), "staff", e); err != nil {
			s.log.Error("review: audit", "action", e.Action, "by", e.Actor, "err", err)
		}
	}
}
