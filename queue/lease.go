package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseHeld: another holder has the lease.
var ErrLeaseHeld = errors.New("queue: lease is held")

// ErrLeaseLost: the lease expired or was taken before it was renewed.
var ErrLeaseLost = errors.New("queue: lease lost")

// LeaseHeldError names the current holder.
type LeaseHeldError struct {
	Name, Holder string
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("queue: %s is held by %s", e.Name, e.Holder)
}

func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// Lease is a time-limited claim on a singleton job (the poller of a
// mailbox, the running batch) across every instance sharing the cluster.
// It lives in a KV bucket with History 1, so the server honours short
// per-key TTLs; a holder that dies simply stops renewing, and the key
// expires.
type Lease struct {
	c      *Conn
	Name   string
	Holder string
	TTL    time.Duration
	rev    uint64
}

// Acquire takes the lease name for holder, or fails with a LeaseHeldError.
func (c *Conn) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (*Lease, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("queue: lease %s: ttl %s is under the 1s minimum", name, ttl)
	}
	rev, err := c.locks.Create(ctx, name, []byte(holder), jetstream.KeyTTL(ttl))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			if e, gerr := c.locks.Get(ctx, name); gerr == nil {
				return nil, &LeaseHeldError{Name: name, Holder: string(e.Value())}
			}
			return nil, &LeaseHeldError{Name: name, Holder: "another instance"}
		}
		return nil, fmt.Errorf("queue: acquire lease %s: %w", name, err)
	}
	return &Lease{c: c, Name: name, Holder: holder, TTL: ttl, rev: rev}, nil
}

// Renew extends the lease by its TTL, if it is still ours.
func (l *Lease) Renew(ctx context.Context) error {
	// KeyValue.Update cannot set a TTL, so publish to the key's subject
	// with the same compare-and-set header it would use.
	m := &nats.Msg{Subject: "$KV." + BucketLocks + "." + l.Name, Data: []byte(l.Holder), Header: nats.Header{}}
	ack, err := l.c.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(l.TTL))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return fmt.Errorf("%w: %s", ErrLeaseLost, l.Name)
		}
		return fmt.Errorf("queue: renew lease %s: %w", l.Name, err)
	}
	l.rev = ack.Sequence
	return nil
}

// Release gives the lease up, if it is still ours.
func (l *Lease) Release(ctx context.Context) error {
	err := l.c.locks.Delete(ctx, l.Name, jetstream.LastRevision(l.rev))
	if err != nil && !isNotFound(err) {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return nil // no longer ours: nothing to give up
		}
		return fmt.Errorf("queue: release lease %s: %w", l.Name, err)
	}
	return nil
}

// RunExclusive runs fn while holding the lease, renewing it at a third of
// its TTL. If a renewal fails, fn's context is cancelled and RunExclusive
// returns ErrLeaseLost (or fn's error). It fails at once with a
// LeaseHeldError when another holder has the lease.
func (c *Conn) RunExclusive(ctx context.Context, name, holder string, ttl time.Duration, fn func(ctx context.Context) error) error {
	l, err := c.Acquire(ctx, name, holder, ttl)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				rctx, rcancel := context.WithTimeout(runCtx, ttl/3)
				err := l.Renew(rctx)
				rcancel()
				if err != nil && runCtx.Err() == nil {
					c.log.Warn("lease renewal failed", "lease", name, "holder", holder, "err", err)
					if errors.Is(err, ErrLeaseLost) {
						cancel(ErrLeaseLost)
						return
					}
				}
			}
		}
	}()
	ferr := fn(runCtx)
	lost := errors.Is(context.Cause(runCtx), ErrLeaseLost)
	cancel(nil)
	<-done
	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer relCancel()
	if err := l.Release(relCtx); err != nil {
		c.log.Warn("lease release failed", "lease", name, "err", err)
	}
	if lost && (ferr == nil || errors.Is(ferr, context.Canceled)) {
		return fmt.Errorf("%w: %s", ErrLeaseLost, name)
	}
	return ferr
}

// Standby runs fn whenever this holder can take the lease, until ctx ends:
// while another instance holds it, Standby waits and tries again, so it
// takes over within about a TTL of the holder's death.
func (c *Conn) Standby(ctx context.Context, name, holder string, ttl time.Duration, fn func(ctx context.Context) error) error {
	logged := false
	for {
		err := c.RunExclusive(ctx, name, holder, ttl, fn)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrLeaseHeld):
			if !logged {
				c.log.Info("standing by: lease held elsewhere", "lease", name, "err", err)
				logged = true
			}
		case err != nil:
			c.log.Warn("lease holder stopped", "lease", name, "err", err, slog.String("holder", holder))
			logged = false
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(ttl / 3):
		}
	}
}
