package batch_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

func TestNextRun(t *testing.T) {
	// Friday 27 November 2026, 09:30 UTC.
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	tests := []struct {
		name, schedule string
		want           time.Time
		err            string
	}{
		{name: "default", schedule: "CRON_TZ=UTC 0 10,16 * * 1-5", want: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)},
		{name: "after the last run of a Friday comes Monday", schedule: "CRON_TZ=UTC 0 10,16 * * 1-5",
			want: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)},
		{name: "time zone", schedule: "CRON_TZ=Europe/London 0 10 * * *", want: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)},
		{name: "another time zone", schedule: "CRON_TZ=America/New_York 0 10 * * *", want: time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)},
		{name: "every", schedule: "@every 30m", want: now.Add(30 * time.Minute)},
		{name: "descriptor", schedule: "@daily", want: nextLocalMidnight(now)},
		{name: "empty", schedule: " ", err: "empty"},
		{name: "six fields", schedule: "0 0 10 * * *", err: "five fields"},
		{name: "bad zone", schedule: "CRON_TZ=Mars/Olympus 0 10 * * *", err: "Mars"},
		{name: "never fires", schedule: "0 0 30 2 *", err: "never fires"},
		{name: "too fast", schedule: "@every 10ms", err: "under one second"},
		{name: "zone alone (the cron parser panics on it)", schedule: "TZ=", err: "cannot be read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := now
			if strings.HasPrefix(tc.name, "after the last") {
				at = time.Date(2026, 11, 27, 16, 0, 0, 0, time.UTC)
			}
			got, err := batch.NextRun(tc.schedule, at)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("NextRun = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRunLoop drives the role with an injected clock: a scheduled batch
// runs when the clock reaches its time, and a batch asked for through the
// bucket (the review API's run-now) runs at once. Two instances share one
// schedule: each scheduled time makes one batch.
func TestRunLoop(t *testing.T) {
	h := newHarness(t)
	// The clock starts a minute before a scheduled time after today, so
	// that the contact key (made today) is not from the future.
	const schedule = "CRON_TZ=UTC 0 10,16 * * 1-5"
	first, err := batch.NextRun(schedule, time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	second, _ := batch.NextRun(schedule, first)
	start := first.Add(-time.Minute)
	clock := newFakeClock(start)
	mk := func(holder string) *batch.Runner {
		return h.runner(func(o *batch.Options) {
			o.Clock, o.Schedule, o.Holder = clock, schedule, holder
		})
	}
	r1, r2 := mk("instance-1"), mk("instance-2")
	if got := r1.NextRun(start); !got.Equal(first) {
		t.Fatalf("NextRun = %s", got)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 2)
	go func() { done <- r1.Run(ctx) }()
	go func() { done <- r2.Run(ctx) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != context.Canceled {
				t.Errorf("Run returned %v", err)
			}
		}
	}()
	testenv.Eventually(t, 30*time.Second, "both loops waiting", func() bool { return clock.Waiters() == 2 })
	req := h.request("backend", nil)
	clock.Advance(30 * time.Second)
	// Nothing runs before its time.
	testenv.Eventually(t, 30*time.Second, "both loops waiting again", func() bool { return clock.Waiters() == 2 })
	if bs, _ := h.q.ListBatches(h.ctx); len(bs) != 0 {
		t.Fatalf("a batch ran early: %s", dump(bs))
	}
	clock.Advance(30 * time.Second)
	id := "B-" + first.UTC().Format("20060102-150405") + "-SCHED"
	testenv.Eventually(t, 20*time.Second, "the scheduled batch done", func() bool {
		b, err := h.q.GetBatch(h.ctx, id)
		return err == nil && b.State == keydesk.BatchDone
	})
	if s := h.get(req.ID).State; s != keydesk.StateGenerated {
		t.Errorf("request is %s after the scheduled batch", s)
	}
	testenv.Eventually(t, 30*time.Second, "both loops waiting for the next time", func() bool { return clock.Waiters() == 2 })
	if bs, _ := h.q.ListBatches(h.ctx); len(bs) != 1 {
		t.Errorf("batches = %s, want exactly one for the scheduled time", dump(bs))
	}
	if got := r2.NextRun(clock.Now()); !got.Equal(second) {
		t.Errorf("next run %s", got)
	}

	// Run now, as the review API asks for it.
	req2 := h.request("frontend", nil)
	asked, err := h.q.RequestBatch(h.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the requested batch done", func() bool {
		b, err := h.q.GetBatch(h.ctx, asked.ID)
		return err == nil && (b.State == keydesk.BatchDone || b.State == keydesk.BatchFailed)
	})
	if b := h.batchRecord(asked.ID); b.State != keydesk.BatchDone || b.By != "alice" || b.Counts["generated"] != 1 {
		t.Errorf("requested batch = %s", dump(b))
	}
	if s := h.get(req2.ID).State; s != keydesk.StateGenerated {
		t.Errorf("request is %s after the requested batch", s)
	}

	// The next scheduled batch finds nothing to do and nothing waiting:
	// it is recorded, but support gets no mail about it.
	testenv.Eventually(t, 30*time.Second, "both loops waiting", func() bool { return clock.Waiters() == 2 })
	clock.Advance(second.Sub(clock.Now()))
	id2 := "B-" + second.UTC().Format("20060102-150405") + "-SCHED"
	testenv.Eventually(t, 20*time.Second, "the second scheduled batch done", func() bool {
		b, err := h.q.GetBatch(h.ctx, id2)
		return err == nil && b.State == keydesk.BatchDone
	})
	var reports []string
	for _, m := range kind(h.outbox(), keydesk.KindBatchReport) {
		reports = append(reports, m.ID)
	}
	if want := []string{id + ".report", asked.ID + ".report"}; !slices.Equal(reports, want) {
		t.Errorf("reports %v, want %v", reports, want)
	}
}

func nextLocalMidnight(t time.Time) time.Time {
	y, m, d := t.In(time.Local).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.Local)
}

// FuzzNextRun: no schedule string makes NextRun panic, and a run it
// returns is in the future.
func FuzzNextRun(f *testing.F) {
	for _, s := range []string{"CRON_TZ=UTC 0 10,16 * * 1-5", "@every 1h", "@daily", "TZ=Europe/Paris */5 * * * *", "0 0 30 2 *", "@every 0s", "CRON_TZ= 1 2 3 4 5", "60 24 32 13 8", "*/0 * * * *", "@every -1h", "1-0 * * * *"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		next, err := batch.NextRun(s, now)
		if err == nil && !next.After(now) {
			t.Errorf("NextRun(%q) = %s, not after %s", s, next, now)
		}
	})
}

// TestRequestedBatchWaitsForLease: a batch a person asked for while
// another instance holds the batch lease is not failed: it stays
// requested, and runs once the lease is free — here because the other
// instance died and its lease expired.
func TestRequestedBatchWaitsForLease(t *testing.T) {
	h := newHarness(t)
	req := h.request("backend", nil)
	if _, err := h.q.Acquire(h.ctx, batch.LeaseName, "dead-instance", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	r := h.runner(func(o *batch.Options) { o.LeaseWait = 200 * time.Millisecond })
	h.run(r)
	asked, err := h.q.RequestBatch(h.ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var seen []keydesk.BatchState
	testenv.Eventually(t, 30*time.Second, "the requested batch done", func() bool {
		b, err := h.q.GetBatch(h.ctx, asked.ID)
		if err != nil {
			return false
		}
		if len(seen) == 0 || seen[len(seen)-1] != b.State {
			seen = append(seen, b.State)
		}
		return b.State == keydesk.BatchDone || b.State == keydesk.BatchFailed
	})
	if b := h.batchRecord(asked.ID); b.State != keydesk.BatchDone || b.By != "alice" || b.Counts["generated"] != 1 {
		t.Fatalf("requested batch = %s (states seen %v): a lease held elsewhere must not fail it", dump(b), seen)
	}
	if s := h.get(req.ID).State; s != keydesk.StateGenerated {
		t.Errorf("request is %s after the requested batch", s)
	}
}
