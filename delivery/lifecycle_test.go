package delivery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

func (e *env) outboxLen() uint64 {
	e.t.Helper()
	info, err := e.q.StreamInfo(context.Background(), queue.StreamOutbox)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.Msgs
}

// Two instances share the outbox: every message arrives exactly once.
func TestTwoInstancesSendEachOnce(t *testing.T) {
	e := newEnv(t)
	const n = 30
	for i := range n {
		e.enqueue(&keydesk.Outgoing{ID: fmt.Sprintf("KR-20261127-%04d.ack", i), Kind: keydesk.KindAcknowledgement,
			To: []string{fmt.Sprintf("r%d@acme.example", i)}, Subject: "Received", Text: "ok\n"})
	}
	e.start(e.opts)
	second := e.opts
	second.Holder = "test-2"
	e.start(second)
	testenv.Eventually(t, 30*time.Second, "all messages", func() bool { return e.mail.Count() >= n })
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return e.outboxLen() == 0 })
	seen := map[string]int{}
	for _, r := range e.mail.Messages() {
		seen[r.To[0]]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("r%d@acme.example", i)]; c != 1 {
			t.Errorf("r%d got %d messages", i, c)
		}
	}
}

// Stopping the role lets the message in hand finish: it is sent once and
// acknowledged, not left for a resend.
func TestStopFinishesMessageInHand(t *testing.T) {
	e := newEnv(t)
	inData := make(chan struct{})
	release := make(chan struct{})
	e.mail.SetReply(func(int, []string) error {
		close(inData)
		<-release
		return nil
	})
	e.enqueue(&keydesk.Outgoing{ID: "KR-20261127-EEEE.ack", Kind: keydesk.KindAcknowledgement, To: []string{requesterAddr}, Subject: "Received", Text: "ok\n"})
	stop := e.start(e.opts)
	select {
	case <-inData:
	case <-time.After(20 * time.Second):
		t.Fatal("the message never reached DATA")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned while a message was in hand")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after the message finished")
	}
	if n := len(e.mail.To(requesterAddr)); n != 1 {
		t.Fatalf("%d messages arrived, want 1", n)
	}
	rec, _, err := getRecord(context.Background(), records(e.q), recordKey("KR-20261127-EEEE.ack"))
	if err != nil || rec == nil || rec.State != stateSent {
		t.Fatalf("record %+v, %v: want sent", rec, err)
	}
	testenv.Eventually(t, 10*time.Second, "the ack", func() bool { return e.outboxLen() == 0 })
}

// A message that runs out of deliveries is a dead letter too (the original
// still in the outbox); Retry replaces it with a fresh copy.
func TestMaxDeliveriesDeadLetter(t *testing.T) {
	e := newEnv(t)
	e.mail.SetReply(func(int, []string) error { return tempFail() })
	e.opts.MaxDeliver = 4
	o := &keydesk.Outgoing{ID: "KR-20261127-FFFF.ack", Kind: keydesk.KindAcknowledgement, To: []string{requesterAddr}, Subject: "Received", Text: "ok\n"}
	e.enqueue(o)
	e.start(e.opts)
	ctx := context.Background()
	var dead []DeadLetter
	testenv.Eventually(t, 20*time.Second, "the max-deliveries dead letter", func() bool {
		dead, _ = DeadLetters(ctx, e.q)
		return len(dead) == 1
	})
	if d := dead[0]; !d.Found || d.ID != o.ID || d.Deliveries != 4 || d.Why != "no success in 4 deliveries" {
		t.Fatalf("dead letter %+v", d)
	}
	e.mail.SetReply(nil) // the cause is fixed
	if _, err := Retry(ctx, e.q, dead[0].Seq); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the retried message", func() bool { return len(e.mail.To(requesterAddr)) == 1 })
	testenv.Eventually(t, 10*time.Second, "an empty outbox", func() bool { return e.outboxLen() == 0 })
}
