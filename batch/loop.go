package batch

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/nats-io/nats.go/jetstream"
)

// maxWait bounds one wait of the schedule loop, so that a wall clock that
// jumps (a suspended VM, an NTP step) is noticed within it.
const maxWait = time.Minute

// Run is the batch role: it reconciles once, then runs a batch at every
// time of the schedule and every batch asked for through the batches
// bucket (the review API's run-now), until ctx ends. Runs never overlap
// within an instance; across instances the lease lets one run at a time,
// and a batch that finds the lease held waits for it.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Reconcile(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Not fatal: every batch reconciles first.
		r.log.Error("startup reconciliation failed; the next batch tries again", "err", err)
	}
	requested := make(chan *keydesk.Batch, 16)
	go r.watchRequested(ctx, requested)
	// waiting holds requested batches that found the lease held elsewhere:
	// they are looked at again when recheck fires, in case the holder
	// died before it took them.
	waiting := map[string]bool{}
	var recheck <-chan time.Time

	var due <-chan time.Time
	var next time.Time
	arm := func() {
		due = nil
		if r.o.Schedule == "" {
			return
		}
		now := r.clock.Now()
		if next.IsZero() {
			next = r.NextRun(now)
		}
		if next.IsZero() {
			return
		}
		due = r.clock.After(min(max(next.Sub(now), 0), maxWait))
	}
	arm()
	if !next.IsZero() {
		r.log.Info("batch schedule", "schedule", r.o.Schedule, "next", next)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-requested:
			err := r.runRequested(ctx, b)
			switch {
			case errors.Is(err, queue.ErrLeaseHeld):
				waiting[b.ID] = true
				if recheck == nil {
					// The lease lives in the server's clock, not the injected one.
					recheck = time.After(r.o.LeaseTTL)
				}
			case err != nil && ctx.Err() == nil:
				r.log.Error("requested batch failed", "batch", b.ID, "err", err)
			}
		case <-recheck:
			recheck = nil
			for id := range waiting {
				delete(waiting, id)
				b, err := r.q.GetBatch(ctx, id)
				if err != nil {
					if !errors.Is(err, keydesk.ErrNotFound) {
						waiting[id] = true // the store did not answer: look again
					}
					continue
				}
				if b.State == keydesk.BatchRequested {
					select {
					case requested <- b:
					default:
						waiting[id] = true // the queue is full: look again
					}
				}
			}
			if len(waiting) > 0 {
				recheck = time.After(r.o.LeaseTTL)
			}
			// The schedule's timer stays armed: a scheduled time that passed
			// during this run fires at once (its channel holds the tick), so
			// requests approved meanwhile are not kept waiting a whole
			// period. Arming again would leave a second timer pending.
		case <-due:
			now := r.clock.Now()
			if now.Before(next) {
				arm() // a capped wait ended early
				continue
			}
			at := next
			if _, err := r.runScheduled(ctx, at); err != nil && !errors.Is(err, queue.ErrLeaseHeld) && ctx.Err() == nil {
				r.log.Error("scheduled batch failed", "at", at, "err", err)
			}
			next = r.NextRun(r.clock.Now())
			r.log.Info("next scheduled batch", "next", next)
			arm()
		}
	}
}

// watchRequested sends each batch record in state requested, now and as
// they come, until ctx ends. A watch that breaks (the connection was lost,
// the cluster elected a new leader) is started again after a pause; it
// sends the current requested records anew, and runRequested ignores
// one that was taken meanwhile.
func (r *Runner) watchRequested(ctx context.Context, out chan<- *keydesk.Batch) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.watchRequestedOnce(ctx, out)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("watch of batch requests broke; starting it again", "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (r *Runner) watchRequestedOnce(ctx context.Context, out chan<- *keydesk.Batch) error {
	w, err := r.q.KV(queue.BucketBatches).WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("batch: watch of batch requests closed")
			}
			if e == nil {
				continue
			}
			var b keydesk.Batch
			if err := json.Unmarshal(e.Value(), &b); err != nil || b.State != keydesk.BatchRequested {
				continue
			}
			b.Revision = e.Revision()
			select {
			case out <- &b:
			case <-ctx.Done():
				return nil
			}
		}
	}
}
