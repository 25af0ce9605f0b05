package queue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// TestAuditStreamLimits: the AUDIT stream has a size limit (the default,
// or nats.audit_max_bytes) and still denies purge and delete.
func TestAuditStreamLimits(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		max  int64
		want int64
	}{
		{"default", 0, queue.DefaultAuditMaxBytes},
		{"configured", 5 << 20, 5 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), AuditMaxBytes: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := rawJS(c).Stream(ctx, queue.StreamAudit)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			if cfg.MaxBytes != tt.want || cfg.Discard != jetstream.DiscardOld || !cfg.DenyPurge || !cfg.DenyDelete {
				t.Errorf("AUDIT: max_bytes %d discard %v deny_purge %v deny_delete %v; want %d, old, true, true",
					cfg.MaxBytes, cfg.Discard, cfg.DenyPurge, cfg.DenyDelete, tt.want)
			}
		})
	}
	if _, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), AuditMaxBytes: -1}); err == nil {
		t.Error("a negative audit size was accepted")
	}
}

// TestAuditStreamFull: past its limit the stream drops its oldest events
// and keeps taking new ones; AuditUsage tells how full it is.
func TestAuditStreamFull(t *testing.T) {
	ctx := context.Background()
	const max = 64 << 10
	c, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), AuditMaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.AuditUsage(ctx)
	if err != nil || u.MaxBytes != max || u.Msgs != 0 || u.Full() != 0 {
		t.Fatalf("empty stream: %+v %v", u, err)
	}
	pad := strings.Repeat("x", 200)
	const n = 1000 // about 300 KB of events into 64 KiB
	for i := range n {
		ev := keydesk.Event{Ref: "alice", Actor: "alice", Action: "login", Change: fmt.Sprintf("%04d %s", i, pad)}
		if err := c.Record(ctx, "staff", ev); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	u, err = c.AuditUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Bytes > max || u.Msgs >= n || u.Full() < 0.8 || u.Full() > 1 {
		t.Fatalf("after %d events: %+v (%.2f full), want at most %d bytes, the oldest dropped", n, u, u.Full(), max)
	}
	got, err := c.Audit(ctx, queue.AuditQuery{Kind: "staff"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !strings.HasPrefix(got[len(got)-1].Change, fmt.Sprintf("%04d ", n-1)) || strings.HasPrefix(got[0].Change, "0000 ") {
		t.Fatalf("the stream holds %d events from %q to %q: want the newest kept, the oldest dropped", len(got), clip(got[0].Change), clip(got[len(got)-1].Change))
	}
	s, _ := rawJS(c).Stream(ctx, queue.StreamAudit)
	if err := s.Purge(ctx); err == nil {
		t.Error("the audit stream could be purged")
	}
	// Request revisions still arrive through the source.
	r, _, err := c.Create(ctx, newRequest("dev@acme.example\x00full", 0, keydesk.StatePendingReview), "intake")
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.History(ctx, r.ID, 5*time.Second)
	if err != nil || len(h) != 1 {
		t.Fatalf("history of a request made after the stream filled: %d events, %v", len(h), err)
	}
}

func clip(s string) string { return s[:min(len(s), 12)] }
