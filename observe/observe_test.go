package observe

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

// obsEnv is an observer on a real embedded JetStream, with a clock the
// test moves.
type obsEnv struct {
	q   *queue.Conn
	m   *metrics.Registry
	o   *Observer
	now time.Time
}

func newObsEnv(t *testing.T, reg *keydesk.Registry, support string) *obsEnv {
	t.Helper()
	return newObsEnvOn(t, queuetest.Open(t), reg, support)
}

// newObsEnvOn is newObsEnv on a queue the test opened.
func newObsEnvOn(t *testing.T, q *queue.Conn, reg *keydesk.Registry, support string) *obsEnv {
	t.Helper()
	e := &obsEnv{q: q, m: metrics.New(), now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}
	e.q.Now = func() time.Time { return e.now }
	e.o = New(Options{Queue: e.q, Partners: func() *keydesk.Registry { return reg }, SupportAddress: support,
		Templates: templates.MustLoadEmbedded(), Metrics: e.m, Now: func() time.Time { return e.now }})
	return e
}

func (e *obsEnv) scrape() string {
	var b bytes.Buffer
	e.m.Write(&b)
	return b.String()
}

func TestRequestGauges(t *testing.T) {
	e := newObsEnv(t, &keydesk.Registry{}, "")
	if s := e.scrape(); strings.Contains(s, "keydesk_requests{") {
		t.Fatalf("request gauges shown before the first count:\n%s", s)
	}
	ctx := context.Background()
	mk := func(key string, st keydesk.State) *keydesk.Request {
		r, _, err := e.q.Create(ctx, &keydesk.Request{
			State: st, Partner: "acme", Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead},
			Label: "x", Requester: "a@acme.example", SourceKey: key, SourceDate: e.now,
		}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	mk("a", keydesk.StatePendingReview) // waits 3h by the end
	e.now = e.now.Add(time.Hour)
	mk("b", keydesk.StatePendingReview)
	appr := mk("c", keydesk.StatePendingReview)
	e.now = e.now.Add(time.Hour)
	if _, err := e.q.Transition(ctx, appr.ID, keydesk.StatePendingReview, keydesk.StateApproved, "alice", "", nil); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Hour)
	e.o.refresh(ctx)
	s := e.scrape()
	for _, want := range []string{
		`keydesk_requests{state="pending_review"} 2`,
		`keydesk_requests{state="approved"} 1`,
		`keydesk_requests{state="delivered"} 0`,
		`keydesk_request_oldest_age_seconds{state="pending_review"} 10800`,
		`keydesk_request_oldest_age_seconds{state="approved"} 3600`,
		`keydesk_request_oldest_age_seconds{state="generated"} 0`,
	} {
		if !strings.Contains(s, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, s)
		}
	}
}

// outboxAlerts returns the alerts waiting in the outbox.
func outboxAlerts(t *testing.T, q *queue.Conn) []*keydesk.Outgoing {
	t.Helper()
	all, err := q.Outbox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*keydesk.Outgoing
	for _, o := range all {
		if o.Kind == keydesk.KindAlert {
			out = append(out, o)
		}
	}
	return out
}

func TestContactKeyExpiryAlert(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	partner := func(id string, expires time.Time) *keydesk.Partner {
		return &keydesk.Partner{ID: id, Name: strings.ToUpper(id[:1]) + id[1:] + " Capital", TechnicalContact: keydesk.TechnicalContact{
			Email: "sec@" + id + ".example", KeyFile: "keys/" + id + ".asc", Fingerprint: "B6BF4C10D022F14EBA3137A969C75F86B834AC27", KeyExpires: expires,
		}}
	}
	reg := &keydesk.Registry{Partners: []*keydesk.Partner{
		partner("acme", now.Add(10*24*time.Hour)),    // alert: within 30 days
		partner("globex", time.Time{}),               // never expires
		partner("initech", now.Add(90*24*time.Hour)), // far off
		partner("hooli", now.Add(-48*time.Hour)),     // already expired: alert
	}}
	e := newObsEnv(t, reg, "api-support@buildmarkets.example")
	ctx := context.Background()

	s := e.scrape()
	for _, want := range []string{
		"keydesk_contact_keys_expiring 2\n",
		"keydesk_contact_key_expiry_timestamp_seconds{partner=\"acme\"} " + strconv.FormatFloat(float64(now.Add(10*24*time.Hour).Unix()), 'g', -1, 64) + "\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("metrics lack %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `partner="globex"`) {
		t.Errorf("a key that never expires has an expiry gauge:\n%s", s)
	}

	e.o.checkKeys(ctx)
	alerts := outboxAlerts(t, e.q)
	if len(alerts) != 2 {
		t.Fatalf("%d alerts, want 2 (acme, hooli): %+v", len(alerts), alerts)
	}
	byPartner := map[string]*keydesk.Outgoing{}
	for _, a := range alerts {
		byPartner[a.Partner] = a
	}
	acme := byPartner["acme"]
	if acme == nil || byPartner["hooli"] == nil {
		t.Fatalf("alerts for %v, want acme and hooli", byPartner)
	}
	if len(acme.To) != 1 || acme.To[0] != "api-support@buildmarkets.example" {
		t.Errorf("alert to %v, want support", acme.To)
	}
	for _, want := range []string{"Acme Capital", "in 10 days", "2026-12-07"} {
		if !strings.Contains(acme.Subject, want) {
			t.Errorf("subject %q lacks %q", acme.Subject, want)
		}
	}
	for _, want := range []string{"sec@acme.example", "B6BF4C10D022F14EBA3137A969C75F86B834AC27", "keys/acme.asc", "out of band"} {
		if !strings.Contains(acme.Text, want) {
			t.Errorf("alert text lacks %q:\n%s", want, acme.Text)
		}
	}
	if !strings.Contains(byPartner["hooli"].Subject, "expired on") {
		t.Errorf("expired key's subject %q", byPartner["hooli"].Subject)
	}

	// The hourly checks of the same day send nothing more, even from a
	// fresh process (a restart, or a second instance).
	e.now = e.now.Add(3 * time.Hour)
	e.o.checkKeys(ctx)
	e.o.alerted = map[string]bool{}
	e.o.checkKeys(ctx)
	if n := len(outboxAlerts(t, e.q)); n != 2 {
		t.Fatalf("%d alerts after more checks the same day, want still 2", n)
	}
	// The next day, one more each.
	e.now = e.now.Add(24 * time.Hour)
	e.o.checkKeys(ctx)
	if n := len(outboxAlerts(t, e.q)); n != 4 {
		t.Fatalf("%d alerts the next day, want 4", n)
	}
}

// TestAuditSizeAlert: the AUDIT stream's size and limit are gauges, and
// support is alerted once a day while it is over 80% full.
func TestAuditSizeAlert(t *testing.T) {
	ctx := context.Background()
	const max = 64 << 10
	q, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), AuditMaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	e := newObsEnvOn(t, q, &keydesk.Registry{}, "api-support@buildmarkets.example")
	fill := func(until float64) {
		t.Helper()
		for i := 0; ; i++ {
			u, err := q.AuditUsage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if u.Full() >= until {
				return
			}
			if err := q.Record(ctx, "system", keydesk.Event{Ref: "test", Actor: "test", Action: "fill", Change: fmt.Sprintf("%d %s", i, strings.Repeat("x", 200))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(0.5)
	e.o.refresh(ctx)
	s := e.scrape()
	if !strings.Contains(s, "keydesk_audit_max_bytes 65536\n") || !strings.Contains(s, "keydesk_audit_bytes ") {
		t.Fatalf("metrics lack the audit gauges:\n%s", s)
	}
	if n := len(outboxAlerts(t, q)); n != 0 {
		t.Fatalf("%d alerts at half full, want none", n)
	}
	fill(auditAlertFull)
	e.o.refresh(ctx)
	e.o.refresh(ctx)
	alerts := outboxAlerts(t, q)
	if len(alerts) != 1 {
		t.Fatalf("%d alerts past %.0f%%, want 1", len(alerts), auditAlertFull*100)
	}
	a := alerts[0]
	if len(a.To) != 1 || a.To[0] != "api-support@buildmarkets.example" || !strings.Contains(a.Subject, "audit trail is") {
		t.Errorf("alert to %v, subject %q", a.To, a.Subject)
	}
	for _, want := range []string{"of its 65536 bytes", "drops the oldest events", "nats.audit_max_bytes"} {
		if !strings.Contains(a.Text, want) {
			t.Errorf("alert text lacks %q:\n%s", want, a.Text)
		}
	}
	// The next day, if still full, once more.
	e.now = e.now.Add(24 * time.Hour)
	e.o.refresh(ctx)
	if n := len(outboxAlerts(t, q)); n != 2 {
		t.Fatalf("%d alerts the next day, want 2", n)
	}
}
