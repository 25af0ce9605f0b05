package delivery

import (
	"context"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/templates/templatestest"
	"github.com/emersion/go-smtp"
)

func tempFail() error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
}

func permFail() error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"}
}

func qpBody(t *testing.T, r smtptest.Message) string {
	t.Helper()
	m := parse(t, r)
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding %q", cte)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKeyDeliverySent(t *testing.T) {
	e := newEnv(t)
	r := e.generated("a\x00m1", "att-1")
	o := keyDelivery(r, contactAddr)
	e.enqueue(o)
	// A clock that starts at a fixed minute and ticks a millisecond a
	// reading: the notice says when (to the minute) the key was sent,
	// and the thread keeps its order.
	var ticks atomic.Int64
	e.opts.Now = func() time.Time {
		return time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC).Add(time.Duration(ticks.Add(1)) * time.Millisecond)
	}
	e.start(e.opts)

	got := e.waitState(r.ID, keydesk.StateDelivered)
	if got.LastEvent.Actor != Actor || !strings.Contains(got.LastEvent.Change, "s***@acme.example") {
		t.Errorf("last event %+v: want actor delivery, note naming s***@acme.example", got.LastEvent)
	}
	testenv.Eventually(t, 20*time.Second, "the delivery notice", func() bool { return len(e.mail.To(requesterAddr)) == 1 })

	keys := e.mail.To(contactAddr)
	if len(keys) != 1 {
		t.Fatalf("%d key messages reached the contact, want 1", len(keys))
	}
	if keys[0].From != "support@buildmarkets.ai" {
		t.Errorf("envelope from %q", keys[0].From)
	}
	m := parse(t, keys[0])
	for k, want := range map[string]string{
		"Message-ID":     "<" + o.ID + "@buildmarkets.ai>",
		"X-Loop":         "keydesk",
		"Auto-Submitted": "auto-replied",
		"To":             "<sec@acme.example>",
		"MIME-Version":   "1.0",
	} {
		if v := m.Header.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/encrypted;") {
		t.Errorf("Content-Type %q: the entity's own header should be the message's", ct)
	}
	if b := body(t, m); !strings.Contains(b, "ciphertext-of-"+r.ID) {
		t.Errorf("the ciphertext is not in the body:\n%s", b)
	}

	n := parse(t, e.mail.To(requesterAddr)[0])
	if irt := n.Header.Get("In-Reply-To"); irt != r.SourceMessageID {
		t.Errorf("notice In-Reply-To %q, want %q", irt, r.SourceMessageID)
	}
	text := qpBody(t, e.mail.To(requesterAddr)[0])
	if miss := contains(text, r.ID, "s***@acme.example", "sandbox", "accounts:read, marketdata:read"); len(miss) > 0 {
		t.Errorf("notice misses %q:\n%s", miss, text)
	}
	if strings.Contains(text, contactAddr) {
		t.Errorf("the notice shows the contact's full address:\n%s", text)
	}
	golden(t, "delivery-notice", []byte("Subject: "+n.Header.Get("Subject")+"\n\n"+strings.ReplaceAll(text, "\r\n", "\n")))
	templatestest.Check(t, strings.ReplaceAll(text, "\r\n", "\n"))
	if v := e.metrics.Counter("keydesk_deliveries_total", "", "kind", "outcome").Value("key-delivery", "sent"); v != 1 {
		t.Errorf("deliveries_total{key-delivery,sent} = %v", v)
	}

	// Both emails are in the request's conversation, and a reply to
	// either finds the request by its Message-ID.
	thread := e.thread(r.ID, 2)
	if thread[0].MessageID != "<"+o.ID+"@buildmarkets.ai>" || thread[0].To != contactAddr || strings.Contains(thread[0].Text, "ciphertext") {
		t.Errorf("first thread entry %+v: want the key delivery, without its ciphertext", thread[0])
	}
	if thread[1].Kind != keydesk.ThreadEmailOut || thread[1].To != requesterAddr || !strings.Contains(thread[1].Text, r.ID) {
		t.Errorf("second thread entry %+v: want the delivery notice", thread[1])
	}
	for _, en := range thread {
		got, err := e.q.LookupMessage(context.Background(), en.MessageID)
		if err != nil || len(got) != 1 || got[0] != r.ID {
			t.Errorf("a reply to %s finds %v, %v; want %s", en.MessageID, got, err, r.ID)
		}
	}
}

// A server that answers 451 twice and then accepts: exactly one message
// arrives, after two retries.
func TestTemporaryFailuresThenSent(t *testing.T) {
	e := newEnv(t)
	e.mail.SetReply(func(n int, to []string) error {
		if n <= 2 {
			return tempFail()
		}
		return nil
	})
	r := e.generated("a\x00m2", "att-1")
	e.enqueue(keyDelivery(r, contactAddr))
	e.start(e.opts)
	e.waitState(r.ID, keydesk.StateDelivered)
	if n := len(e.mail.To(contactAddr)); n != 1 {
		t.Fatalf("%d key messages arrived, want exactly 1", n)
	}
	if v := e.metrics.Counter("keydesk_delivery_retries_total", "").Value(); v != 2 {
		t.Errorf("retries_total = %v, want 2", v)
	}
}

func TestPermanentFailure(t *testing.T) {
	e := newEnv(t)
	e.mail.SetReply(func(_ int, to []string) error {
		if to[0] == contactAddr {
			return permFail()
		}
		return nil
	})
	r := e.generated("a\x00m3", "att-1")
	o := keyDelivery(r, contactAddr)
	e.enqueue(o)
	e.start(e.opts)
	got := e.waitState(r.ID, keydesk.StateDeliveryFailed)
	if !strings.Contains(got.Problem, "550") || !strings.Contains(got.Problem, "mailbox unavailable") {
		t.Errorf("problem %q: want the server's 550 reply", got.Problem)
	}
	testenv.Eventually(t, 20*time.Second, "the alert to support", func() bool { return len(e.mail.To(supportAddr)) == 1 })
	alert := parse(t, e.mail.To(supportAddr)[0])
	if s := alert.Header.Get("Subject"); !strings.Contains(s, r.ID) {
		t.Errorf("alert subject %q", s)
	}
	if txt := qpBody(t, e.mail.To(supportAddr)[0]); !strings.Contains(txt, "550") {
		t.Errorf("alert text lacks the reply:\n%s", txt)
	}
	if len(e.mail.To(requesterAddr)) != 0 {
		t.Error("a delivery notice went out for a failed delivery")
	}
	var dead []DeadLetter
	testenv.Eventually(t, 20*time.Second, "the dead letter", func() bool {
		var err error
		dead, err = DeadLetters(context.Background(), e.q)
		return err == nil && len(dead) == 1
	})
	d := dead[0]
	if !d.Found || d.ID != o.ID || d.Kind != keydesk.KindKeyDelivery || len(d.To) != 1 || d.To[0] != contactAddr || !strings.Contains(d.Why, "550") {
		t.Errorf("dead letter %+v", d)
	}
}

// The consumer stops after the server accepted the message and its sent
// mark was written, before the ack: the next instance acks it without
// sending, and finishes the request.
func TestCrashAfterAcceptSendsOnce(t *testing.T) {
	e := newEnv(t)
	r := e.generated("a\x00m4", "att-1")
	e.enqueue(keyDelivery(r, contactAddr))

	crashed := make(chan struct{})
	first := e.opts
	first.afterSent = func(*keydesk.Outgoing) bool { close(crashed); return true }
	stop := e.start(first)
	select {
	case <-crashed:
	case <-time.After(20 * time.Second):
		t.Fatal("the first instance never sent")
	}
	stop()
	if st := e.state(r.ID).State; st != keydesk.StateGenerated {
		t.Fatalf("state %s right after the crash, want generated", st)
	}

	second := e.opts
	second.Holder = "test-2"
	e.start(second)
	e.waitState(r.ID, keydesk.StateDelivered)
	testenv.Eventually(t, 20*time.Second, "the notice", func() bool { return len(e.mail.To(requesterAddr)) == 1 })
	if n := len(e.mail.To(contactAddr)); n != 1 {
		t.Fatalf("%d key messages arrived, want exactly 1", n)
	}
	if v := e.metrics.Counter("keydesk_deliveries_total", "", "kind", "outcome").Value("key-delivery", "duplicate"); v != 1 {
		t.Errorf("deliveries_total{duplicate} = %v, want 1", v)
	}
	e.thread(r.ID, 2) // the key delivery once, the notice once
}

// Found in "sending" (a crash between the server's acceptance and the sent
// mark): sent again, with the same Message-ID.
func TestAmbiguousSendingIsSentAgain(t *testing.T) {
	e := newEnv(t)
	o := &keydesk.Outgoing{ID: "KR-20261127-AAAA.ack", Kind: keydesk.KindAcknowledgement, To: []string{requesterAddr}, Subject: "Received", Text: "We have your request.\n"}
	if _, err := putRecord(context.Background(), records(e.q), recordKey(o.ID), &record{ID: o.ID, State: stateSending, Holder: "gone"}, 0); err != nil {
		t.Fatal(err)
	}
	e.enqueue(o)
	e.start(e.opts)
	testenv.Eventually(t, 20*time.Second, "the resend", func() bool { return len(e.mail.To(requesterAddr)) == 1 })
	if id := parse(t, e.mail.To(requesterAddr)[0]).Header.Get("Message-ID"); id != "<KR-20261127-AAAA.ack@buildmarkets.ai>" {
		t.Errorf("Message-ID %q", id)
	}
	if !strings.Contains(e.logs.String(), "stopped mid-send") {
		t.Error("the resend was not logged")
	}
}

func TestKeyDeliveryRefusedOrDropped(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(e *env, r *keydesk.Request, o *keydesk.Outgoing)
		wantState keydesk.State
		wantWhy   string // in the request's Problem (refused) or the log (dropped)
		outcome   string
	}{
		{"attempt replaced", func(e *env, r *keydesk.Request, o *keydesk.Outgoing) { o.AttemptID = "att-old"; o.ID += ".old" },
			keydesk.StateGenerated, "is no longer the request's", "stale"},
		{"request revoked", func(e *env, r *keydesk.Request, o *keydesk.Outgoing) {
			if _, err := e.q.Transition(context.Background(), r.ID, keydesk.StateGenerated, keydesk.StateDeliveryFailed, "test", "", nil); err != nil {
				e.t.Fatal(err)
			}
		}, keydesk.StateDeliveryFailed, "not generated", "stale"},
		{"address from the request", func(_ *env, _ *keydesk.Request, o *keydesk.Outgoing) { o.To = []string{"attacker@evil.example"} },
			keydesk.StateDeliveryFailed, "not to acme's registered technical contact sec@acme.example", "failed"},
		{"extra recipient", func(_ *env, _ *keydesk.Request, o *keydesk.Outgoing) { o.To = append(o.To, "cc@acme.example") },
			keydesk.StateDeliveryFailed, "registered technical contact", "failed"},
		{"partner removed", func(e *env, _ *keydesk.Request, _ *keydesk.Outgoing) { e.reg = &keydesk.Registry{} },
			keydesk.StateDeliveryFailed, "no longer in partners.yaml", "failed"},
		{"not encrypted", func(_ *env, _ *keydesk.Request, o *keydesk.Outgoing) {
			o.Entity = []byte("Content-Type: text/plain\n\napi_secret=oops\n")
		}, keydesk.StateDeliveryFailed, "not a multipart/encrypted entity", "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.generated("k\x00"+tt.name, "att-1")
			o := keyDelivery(r, contactAddr)
			tt.mutate(e, r, o)
			e.enqueue(o)
			e.start(e.opts)
			c := e.metrics.Counter("keydesk_deliveries_total", "", "kind", "outcome")
			testenv.Eventually(t, 20*time.Second, "the outcome "+tt.outcome, func() bool { return c.Value("key-delivery", tt.outcome) == 1 })
			got := e.waitState(r.ID, tt.wantState)
			if tt.outcome == "failed" {
				if !strings.Contains(got.Problem, tt.wantWhy) {
					t.Errorf("problem %q, want %q", got.Problem, tt.wantWhy)
				}
				testenv.Eventually(t, 20*time.Second, "the alert", func() bool { return len(e.mail.To(supportAddr)) == 1 })
			} else if !strings.Contains(e.logs.String(), tt.wantWhy) {
				t.Errorf("log lacks %q:\n%s", tt.wantWhy, e.logs.String())
			}
			for _, m := range e.mail.Messages() {
				if strings.Contains(string(m.Data), "ciphertext-of-") || strings.Contains(string(m.Data), "api_secret") {
					t.Fatalf("the refused delivery was sent to %v", m.To)
				}
			}
		})
	}
}

// Temporary failures past delivery.retry_for end the delivery.
func TestRetryForExpires(t *testing.T) {
	e := newEnv(t)
	e.mail.SetReply(func(int, []string) error { return tempFail() })
	r := e.generated("a\x00m5", "att-1")
	o := keyDelivery(r, contactAddr)
	o.CreatedAt = time.Now().Add(-49 * time.Hour)
	e.enqueue(o)
	e.start(e.opts)
	got := e.waitState(r.ID, keydesk.StateDeliveryFailed)
	if !strings.Contains(got.Problem, "not accepted within 48h0m0s") || !strings.Contains(got.Problem, "451") {
		t.Errorf("problem %q", got.Problem)
	}
}

// A notice refused for good becomes a dead letter; once the cause is
// fixed, Retry sends it, once, and the list is empty again.
func TestDeadLetterRetry(t *testing.T) {
	e := newEnv(t)
	e.mail.SetReply(func(int, []string) error { return permFail() })
	o := &keydesk.Outgoing{ID: "KR-20261127-BBBB.rejection", Kind: keydesk.KindRejection, To: []string{requesterAddr}, Subject: "Rejected", Text: "No.\n"}
	e.enqueue(o)
	e.start(e.opts)
	ctx := context.Background()
	var dead []DeadLetter
	testenv.Eventually(t, 20*time.Second, "the dead letter", func() bool {
		dead, _ = DeadLetters(ctx, e.q)
		return len(dead) == 1
	})
	if dead[0].ID != o.ID || dead[0].Kind != keydesk.KindRejection || !strings.Contains(dead[0].Why, "550") {
		t.Fatalf("dead letter %+v", dead[0])
	}
	if _, err := Retry(ctx, e.q, dead[0].Seq+100); err == nil || !strings.Contains(err.Error(), "no dead letter") {
		t.Fatalf("retry of a missing seq: %v", err)
	}
	e.mail.SetReply(nil) // the cause is fixed
	if _, err := Retry(ctx, e.q, dead[0].Seq); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the retried message", func() bool { return len(e.mail.To(requesterAddr)) == 1 })
	if dead, _ = DeadLetters(ctx, e.q); len(dead) != 0 {
		t.Fatalf("dead letters after retry: %+v", dead)
	}
	if _, err := Retry(ctx, e.q, 1); err == nil {
		t.Fatal("a second retry of the same letter worked")
	}
}

func TestMalformedIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.q.EnqueueRaw(ctx, "outbox.acknowledgement", []byte("{not json"), ""); err != nil {
		t.Fatal(err)
	}
	e.enqueue(&keydesk.Outgoing{ID: "x.1", Kind: keydesk.KindAcknowledgement, To: []string{"not an address"}, Text: "hi"})
	e.start(e.opts)
	var dead []DeadLetter
	testenv.Eventually(t, 20*time.Second, "two dead letters", func() bool {
		dead, _ = DeadLetters(ctx, e.q)
		return len(dead) == 2
	})
	if dead[0].Found || !strings.Contains(dead[0].Why, "undecodable") {
		t.Errorf("first: %+v", dead[0])
	}
	if !dead[1].Found || !strings.Contains(dead[1].Why, "not an address") {
		t.Errorf("second: %+v", dead[1])
	}
	if e.mail.Count() != 0 {
		t.Error("a malformed message was sent")
	}
}

func TestSendErrorClasses(t *testing.T) {
	tests := []struct {
		phase string
		err   error
		perm  bool
	}{
		{"rcpt", permFail(), true},
		{"data", permFail(), true},
		{"mail", permFail(), true},
		{"rcpt", tempFail(), false},
		{"auth", &smtp.SMTPError{Code: 535, Message: "bad credentials"}, false},
		{"connect", errors.New("connection refused"), false},
	}
	for _, tt := range tests {
		se := sendError(tt.phase, tt.err)
		if se.Permanent != tt.perm {
			t.Errorf("%s %v: permanent=%v, want %v", tt.phase, tt.err, se.Permanent, tt.perm)
		}
	}
}

// The batch queues a key delivery before it records the request as
// generated: a delivery that finds its request still generating with the
// same attempt waits for it rather than dropping a good key.
func TestKeyDeliveryWaitsForGenerated(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r, _, err := e.q.Create(ctx, &keydesk.Request{
		State: keydesk.StateGenerating, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "sandbox-backend",
		Requester: requesterAddr, SourceKey: "wait\x00", SourceDate: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
		Attempt: &keydesk.Attempt{ID: "att-1", StartedAt: time.Now()},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.NotReadyDelay = 50 * time.Millisecond
	e.enqueue(keyDelivery(r, contactAddr))
	e.start(opts)
	testenv.Eventually(t, 20*time.Second, "the delivery to look at the request", func() bool {
		return strings.Contains(e.logs.String(), "still generating")
	})
	if n := len(e.mail.To(contactAddr)); n != 0 {
		t.Fatalf("%d messages sent before the key was recorded", n)
	}
	if _, err := e.q.Transition(ctx, r.ID, keydesk.StateGenerating, keydesk.StateGenerated, "batch", "", func(x *keydesk.Request) error {
		x.KeyID = "key_0123"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.waitState(r.ID, keydesk.StateDelivered)
	if n := len(e.mail.To(contactAddr)); n != 1 {
		t.Fatalf("%d key messages arrived, want exactly 1", n)
	}
}
