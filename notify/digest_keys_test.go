package notify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/notify"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

// TestDigestKeysDue: with rotation.max_age set, the digest lists the live
// keys older than max_age − remind_before, oldest first, each by its
// partner, environment and key ID; a digest goes even when no request
// waits, and without a policy none goes for keys alone.
func TestDigestKeysDue(t *testing.T) {
	const day = 24 * time.Hour
	tick := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	q := queuetest.Open(t)
	for _, inv := range []struct {
		env  keydesk.Environment
		keys []keydesk.InventoryKey
	}{
		{keydesk.Sandbox, []keydesk.InventoryKey{
			{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "sandbox-backend", CreatedAt: tick.Add(-400 * day), MadeBy: keydesk.MadeByKeydesk, RequestID: "KR-20251025-AAAA"},
			{KeyRef: keydesk.KeyRef{ID: "key-002"}, Label: "young", CreatedAt: tick.Add(-30 * day), MadeBy: keydesk.MadeByKeydesk},
			{KeyRef: keydesk.KeyRef{ID: "key-003"}, Label: "revoked", CreatedAt: tick.Add(-500 * day), RevokedAt: tick.Add(-day), MadeBy: keydesk.MadeByPartner},
		}},
		{keydesk.Production, []keydesk.InventoryKey{
			{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "prod-reporting", CreatedAt: tick.Add(-340 * day), MadeBy: keydesk.MadeByPartner},
		}},
	} {
		if _, err := q.UpdateInventory(context.Background(), "acme", inv.env, func(x *keydesk.Inventory) error {
			x.ListedAt, x.Keys = tick, inv.keys
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// No policy: nothing waits, so no digest.
	o := options(q, "keydesk-1")
	o.Digest = everyMinute{}
	n, err := notify.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.SendDigest(context.Background(), tick); err != nil {
		t.Fatal(err)
	}
	if ds := digests(t, q); len(ds) != 0 {
		t.Fatalf("%d digests without a policy and nothing waiting", len(ds))
	}

	o.RotationMaxAge, o.RotationRemindBefore = 365*day, 30*day
	if n, err = notify.New(o); err != nil {
		t.Fatal(err)
	}
	if err := n.SendDigest(context.Background(), tick.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ds := digests(t, q)
	if len(ds) != 1 {
		t.Fatalf("%d digests with two keys due", len(ds))
	}
	if ds[0].Subject != "[keydesk] 2 keys due for rotation" {
		t.Errorf("subject %q", ds[0].Subject)
	}
	checkColumns(t, ds[0].Text)
	golden(t, "digest-keys.golden", []byte("Subject: "+ds[0].Subject+"\n\n"+ds[0].Text))
	for _, not := range []string{"key-002", "key-003"} {
		if strings.Contains(ds[0].Text, not) {
			t.Errorf("the digest lists %s:\n%s", not, ds[0].Text)
		}
	}

	// With a request waiting too: both, in the subject and the body.
	r := newRequest(0, keydesk.StatePendingReview)
	r.CreatedAt = tick
	data := notify.Digest([]*keydesk.Request{r}, "", tick.Add(2*time.Hour))
	invs, err := q.Inventories(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data.WithDueKeys(notify.RotationDue(invs, 365*day, 30*day, "", tick), 365*day)
	m, err := templates.MustLoadEmbedded().RenderMail("digest", data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(m.Subject, "; 2 keys due for rotation") || !strings.Contains(m.Body, "1 request waits") || !strings.Contains(m.Body, "acme, production  key-001  340 days old") {
		t.Errorf("digest with both:\n%s\n\n%s", m.Subject, m.Body)
	}
	checkColumns(t, m.Body)
}
