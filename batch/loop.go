package batch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
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
	r.sweepLogged(ctx)
	l := &loop{r: r, requested: make(chan *keydesk.Batch, 16), waiting: map[string]bool{}}
	go r.watchRequested(ctx, l.requested, func(trigger string) bool { return !lifeTrigger(trigger) })
	// The key's life has its own loop, so that a revocation never waits
	// for a batch to end.
	life := &loop{r: r, requested: make(chan *keydesk.Batch, 16), waiting: map[string]bool{}}
	go r.watchRequested(ctx, life.requested, lifeTrigger)
	go life.runLife(ctx)
	go r.inventoryLoop(ctx)
	l.arm()
	if !l.next.IsZero() {
		r.log.Info("batch schedule", "schedule", r.o.Schedule, "next", l.next)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-l.requested:
			l.runRequested(ctx, b)
		case <-l.recheck:
			l.recheckWaiting(ctx)
			// The schedule's timer stays armed: a scheduled time that passed
			// during this run fires at once (its channel holds the tick), so
			// requests approved meanwhile are not kept waiting a whole
			// period. Arming again would leave a second timer pending.
		case <-l.due:
			l.runDue(ctx)
		}
	}
}

// loop is what Run's phases share.
type loop struct {
	r         *Runner
	requested chan *keydesk.Batch
	// waiting holds requested batches that found the lease held elsewhere:
	// they are looked at again when recheck fires, in case the holder
	// died before it took them.
	waiting map[string]bool
	recheck <-chan time.Time
	// due fires at next, the next scheduled run, or after maxWait (a
	// rotation sweep).
	due  <-chan time.Time
	next time.Time
}

// arm sets due for the next scheduled run, or the next rotation sweep,
// whichever comes first: the loop wakes at least every SweepInterval.
func (l *loop) arm() {
	now := l.r.clock.Now()
	if l.next.IsZero() && l.r.o.Schedule != "" {
		l.next = l.r.NextRun(now)
	}
	wait := min(maxWait, SweepInterval)
	if !l.next.IsZero() {
		wait = min(max(l.next.Sub(now), 0), wait)
	}
	l.due = l.r.clock.After(wait)
}

// runRequested runs batch b asked for through the bucket; one that finds
// the lease held waits for the recheck.
func (l *loop) runRequested(ctx context.Context, b *keydesk.Batch) {
	err := l.r.runRequested(ctx, b)
	switch {
	case errors.Is(err, queue.ErrLeaseHeld):
		l.waiting[b.ID] = true
		if l.recheck == nil {
			// The lease lives in the server's clock, not the injected one.
			l.recheck = time.After(l.r.o.LeaseTTL)
		}
	case err != nil && ctx.Err() == nil:
		l.r.log.Error("requested batch failed", "batch", b.ID, "err", err)
	}
}

// recheckWaiting hands the waiting batches that are still requested back
// to the loop, and keeps rechecking while any is left.
func (l *loop) recheckWaiting(ctx context.Context) {
	l.recheck = nil
	for id := range l.waiting {
		delete(l.waiting, id)
		b, err := l.r.q.GetBatch(ctx, id)
		if err != nil {
			if !errors.Is(err, keydesk.ErrNotFound) {
				l.waiting[id] = true // the store did not answer: look again
			}
			continue
		}
		if b.State == keydesk.BatchRequested {
			select {
			case l.requested <- b:
			default:
				l.waiting[id] = true // the queue is full: look again
			}
		}
	}
	if len(l.waiting) > 0 {
		l.recheck = time.After(l.r.o.LeaseTTL)
	}
}

// runDue runs the scheduled batch once its time has come, and arms the
// next.
func (l *loop) runDue(ctx context.Context) {
	now := l.r.clock.Now()
	if l.next.IsZero() || now.Before(l.next) {
		l.r.sweepLogged(ctx)
		l.arm() // a capped wait ended early
		return
	}
	at := l.next
	if _, err := l.r.runScheduled(ctx, at); err != nil && !errors.Is(err, queue.ErrLeaseHeld) && ctx.Err() == nil {
		l.r.log.Error("scheduled batch failed", "at", at, "err", err)
	}
	l.next = l.r.NextRun(l.r.clock.Now())
	l.r.log.Info("next scheduled batch", "next", l.next)
	l.arm()
}

// watchRequested sends each batch record in state requested, now and as
// they come, until ctx ends. A watch that breaks (the connection was lost,
// the cluster elected a new leader) is started again after a pause; it
// sends the current requested records anew, and runRequested ignores
// one that was taken meanwhile.
func (r *Runner) watchRequested(ctx context.Context, out chan<- *keydesk.Batch, want func(trigger string) bool) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.watchRequestedOnce(ctx, out, want)
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

func (r *Runner) watchRequestedOnce(ctx context.Context, out chan<- *keydesk.Batch, want func(trigger string) bool) error {
	err := r.q.WatchRequested(ctx, func(b *keydesk.Batch) error {
		if !want(b.Trigger) {
			return nil
		}
		select {
		case out <- b:
		case <-ctx.Done():
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("batch: watch of batch requests: %w", err)
	}
	return nil
}

// runLife is the loop of the key's life, beside the batch loop: it
// sweeps revocations at once and every SweepInterval, and runs the revoke
// and inventory records asked for, as they come. Its timer is the wall
// clock's: it paces work, it decides nothing a test checks.
func (l *loop) runLife(ctx context.Context) {
	r := l.r
	sweep := time.NewTimer(0)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-l.requested:
			l.runRequested(ctx, b)
		case <-l.recheck:
			l.recheckWaiting(ctx)
		case <-sweep.C:
			if _, err := r.SweepRevocations(ctx); err != nil && ctx.Err() == nil {
				r.log.Error("revocation sweep failed; the next one tries again", "err", err)
			}
			sweep.Reset(r.o.SweepInterval)
		}
	}
}

// inventoryLoop lists every account's keys when the role starts and
// every InventoryInterval, one instance at a time (the inventory lease);
// on its own, so that an API slow to list delays neither revocations nor
// batches.
func (r *Runner) inventoryLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.q.RunExclusive(ctx, LeaseInventory, r.o.Holder, r.o.LeaseTTL, func(ctx context.Context) error {
			return r.inventoryRun(ctx, newRun(r, &keydesk.Batch{ID: "inventory-" + r.o.Holder}))
		})
		if err != nil && !errors.Is(err, queue.ErrLeaseHeld) && ctx.Err() == nil {
			r.log.Warn("scheduled inventory incomplete", "err", err)
		}
		t.Reset(r.o.InventoryInterval)
	}
}
