package notify_test

import (
	"context"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/notify"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

func digests(t *testing.T, q *queue.Conn) []*keydesk.Outgoing {
	t.Helper()
	out, err := q.Outbox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ds []*keydesk.Outgoing
	for _, o := range out {
		if o.Kind == keydesk.KindDigest {
			ds = append(ds, o)
		}
	}
	return ds
}

// TestDigestOncePerTick: at each time of notify.digest one digest lands
// in the outbox, to support; a second instance (or a restart) sending
// the same time's digest adds none; when nothing waits, none is sent.
func TestDigestOncePerTick(t *testing.T) {
	q := queuetest.Open(t)
	sched, err := batch.ParseSchedule("CRON_TZ=UTC 0 9 * * 1-5")
	if err != nil {
		t.Fatal(err)
	}
	clock := testenv.NewClock(time.Date(2026, 11, 30, 8, 59, 30, 0, time.UTC)) // a Monday
	o := options(q, "keydesk-1")
	o.Digest, o.Clock = sched, clock
	run := start(t, o)
	count := run.metrics.Counter("keydesk_notifications_total", "", "channel", "outcome")

	// Nothing waits at 09:00 Monday: no digest.
	testenv.Eventually(t, wait, "the digest loop waiting", func() bool { return clock.Waiters() > 0 })
	clock.Set(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	testenv.Eventually(t, wait, "the empty digest counted", func() bool { return count.Value("digest", "empty") == 1 })
	if ds := digests(t, q); len(ds) != 0 {
		t.Fatalf("%d digests with nothing waiting", len(ds))
	}

	create(t, q, 0, keydesk.StatePendingReview)
	create(t, q, 1, keydesk.StateApproved) // waits for the batch, not a person
	testenv.Eventually(t, wait, "the digest loop waiting", func() bool { return clock.Waiters() > 0 })
	tue := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock.Set(tue)
	testenv.Eventually(t, wait, "Tuesday's digest", func() bool { return len(digests(t, q)) == 1 })
	d := digests(t, q)[0]
	if d.ID != notify.DigestID(tue) || len(d.To) != 1 || d.To[0] != supportAddr || !strings.Contains(d.Subject, "1 request waits") {
		t.Errorf("digest %s to %v: %q", d.ID, d.To, d.Subject)
	}

	// Another instance sends the same time's digest: still one.
	other, err := notify.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.SendDigest(context.Background(), tue); err != nil {
		t.Fatal(err)
	}
	if n := len(digests(t, q)); n != 1 {
		t.Errorf("%d digests for one time, want 1", n)
	}
	testenv.Eventually(t, wait, "the digest loop waiting", func() bool { return clock.Waiters() > 0 })
	clock.Set(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	testenv.Eventually(t, wait, "Wednesday's digest", func() bool { return len(digests(t, q)) == 2 })
}

// TestDigestDelivered: the digest reaches support's mailbox through the
// delivery role and a real SMTP server.
func TestDigestDelivered(t *testing.T) {
	q := queuetest.Open(t)
	srv := smtptest.Start(t, smtptest.Options{Domain: "mx.test"})
	r := create(t, q, 0, keydesk.StatePendingReview)
	o := options(q, "keydesk-1")
	o.Digest = everyMinute{}
	n, err := notify.New(o)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	if err := n.SendDigest(context.Background(), tick); err != nil {
		t.Fatal(err)
	}
	sender, err := delivery.NewSMTP(delivery.SMTPOptions{
		Server:   mailauth.MailServer{Address: srv.Addr, Security: mailauth.SecurityNone, Auth: "none", Timeout: 10 * time.Second},
		HeloName: "keydesk.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	dv, err := delivery.New(delivery.Options{
		Queue: q, Sender: sender, From: "Buildmarkets Support <support@buildmarkets.ai>", SupportAddress: supportAddr,
		Partners: func() *keydesk.Registry { return &keydesk.Registry{} }, Templates: templates.MustLoadEmbedded(),
		AckWait: 3 * time.Second, Holder: "keydesk-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = dv.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testenv.Eventually(t, wait, "the digest at support", func() bool { return len(srv.To(supportAddr)) == 1 })
	m, err := mail.ReadMessage(strings.NewReader(string(srv.To(supportAddr)[0].Data)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Header.Get("Subject"), "1 request waits") || !strings.Contains(string(b), r.ID) {
		t.Errorf("support got %q:\n%s", m.Header.Get("Subject"), b)
	}
}

// everyMinute is a schedule for tests that call SendDigest themselves.
type everyMinute struct{}

func (everyMinute) Next(t time.Time) time.Time { return t.Truncate(time.Minute).Add(time.Minute) }

// TestDigestGolden: the digest reads as its golden file, every line within
// 72 columns, oldest first; proposed changes are called out; a long list
// ends in "and N more".
func TestDigestGolden(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	mk := func(id string, st keydesk.State, partner, label string, age time.Duration) *keydesk.Request {
		return &keydesk.Request{ID: id, State: st, Partner: partner, Environment: keydesk.Sandbox, Label: label,
			Scopes: []keydesk.Scope{"accounts:read"}, CreatedAt: now.Add(-age), UpdatedAt: now.Add(-age)}
	}
	a := mk("KR-20261127-7QX4", keydesk.StatePendingReview, "acme", "Trading bot", 50*time.Hour)
	a.Environment = keydesk.Production
	a.Flags = []keydesk.Flag{keydesk.FlagProduction, keydesk.FlagDuplicate, keydesk.FlagProposedChange, keydesk.FlagScopeNotAllowed,
		keydesk.FlagContactKeyExpiring, keydesk.FlagDMARCNotPassed}
	a.Proposal = &keydesk.Proposal{ID: "p1", At: now.Add(-2 * time.Hour), Environment: keydesk.Production,
		Scopes: []keydesk.Scope{"trading:read"}, Label: "Trading bot"}
	b := mk("KR-20261129-3MPA", keydesk.StateBlocked, "globex", "", 20*time.Hour)
	b.Problem = "the technical contact's key (sec@globex.example) cannot receive a key: it expired on 2026-11-01"
	b.LastEvent = &keydesk.Event{At: now.Add(-6 * time.Hour), From: keydesk.StateApproved, To: keydesk.StateBlocked}
	c := mk("KR-20261130-9RT2", keydesk.StatePendingReview, "", strings.Repeat("long label ", 6), 15*time.Minute)
	c.Flags = []keydesk.Flag{keydesk.FlagUnknownSender}
	d := mk("KR-20261126-Z1Z1", keydesk.StateDeliveryFailed, "initech", "CI", 80*time.Hour)
	data := notify.Digest([]*keydesk.Request{a, b, c, d}, "https://keydesk.buildmarkets.ai", now)
	m, err := templates.MustLoadEmbedded().RenderMail("digest", data)
	if err != nil {
		t.Fatal(err)
	}
	got := "Subject: " + m.Subject + "\n\n" + m.Body
	checkColumns(t, m.Body)
	golden(t, "digest.golden", []byte(got))

	var many []*keydesk.Request
	for i := range 53 {
		many = append(many, mk(fmt.Sprintf("KR-20261130-%04d", i), keydesk.StatePendingReview, "acme", "x", time.Duration(i)*time.Minute))
	}
	data = notify.Digest(many, "", now)
	if len(data.Items) != 50 || data.More != 3 || data.Items[0].ID != "KR-20261130-0052" {
		t.Errorf("%d items (first %s), %d more; want the 50 oldest, 3 more", len(data.Items), data.Items[0].ID, data.More)
	}
	m, err = templates.MustLoadEmbedded().RenderMail("digest", data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Body, "... and 3 more: see the queue in the review UI.") {
		t.Errorf("no \"and 3 more\":\n%s", m.Body)
	}
	checkColumns(t, m.Body)
}

func checkColumns(t *testing.T, body string) {
	t.Helper()
	for i, l := range strings.Split(body, "\n") {
		if n := utf8.RuneCountInString(l); n > 72 {
			t.Errorf("line %d is %d columns: %q", i+1, n, l)
		}
	}
}
