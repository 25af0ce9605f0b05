package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

// TestRotationNotice: the delivery notice of a rotation's new key tells
// the requester which key it replaces and when that one stops working,
// as the record (and the encrypted email) fix it.
func TestRotationNotice(t *testing.T) {
	e := newEnv(t)
	r := e.generated("a\x00rot1", "att-1")
	due := time.Date(2026, 12, 4, 10, 1, 0, 0, time.UTC)
	if _, err := e.q.Apply(context.Background(), r.ID, queue.Change{Actor: "test", Action: "rotate", Mutate: func(x *keydesk.Request) error {
		x.Kind, x.ReplacesKeyID, x.Rotation = keydesk.KindRotate, "key_0007", &keydesk.Rotation{Due: due}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	e.enqueue(keyDelivery(r, contactAddr))
	e.opts.Now = func() time.Time { return time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC) }
	e.start(e.opts)
	e.waitState(r.ID, keydesk.StateDelivered)
	testenv.Eventually(t, 20*time.Second, "the delivery notice", func() bool { return len(e.mail.To(requesterAddr)) == 1 })
	n := parse(t, e.mail.To(requesterAddr)[0])
	text := strings.ReplaceAll(qpBody(t, e.mail.To(requesterAddr)[0]), "\r\n", "\n")
	flat := strings.Join(strings.Fields(text), " ")
	for _, want := range []string{"Replaces: key_0007", "The new key replaces key_0007", "until Fri 4 Dec 2026 10:01 UTC at the latest"} {
		if !strings.Contains(flat, want) {
			t.Errorf("the notice lacks %q:\n%s", want, text)
		}
	}
	golden(t, "delivery-notice-rotation", []byte("Subject: "+n.Header.Get("Subject")+"\n\n"+text))
	templatestest.Check(t, text)
}
