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
// within an instance; across instances the lease refuses the second.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Reconcile(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Not fatal: every batch reconciles first.
		r.log.Error("startup reconciliation failed; the next batch tries again", "err", err)
	}
	requested := make(chan *keydesk.Batch, 16)
	watchErr := make(chan error, 1)
	go func() { watchErr <- r.watchRequested(ctx, requested) }()

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
		case err := <-watchErr:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		case b := <-requested:
			if err := r.runRequested(ctx, b); err != nil && !errors.Is(err, queue.ErrLeaseHeld) && ctx.Err() == nil {
				r.log.Error("requested batch failed", "batch", b.ID, "err", err)
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
// they come, until ctx ends.
func (r *Runner) watchRequested(ctx context.Context, out chan<- *keydesk.Batch) error {
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
				if ctx.Err() != nil {
					return nil
				}
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
