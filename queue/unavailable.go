package queue

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable marks a failure that time cures: the NATS cluster has no
// leader for a stream while it elects one, a node is down, or the
// connection is re-established. Callers retry, or tell a person to try
// again in a few seconds; they never treat it as the record's answer.
var ErrUnavailable = errors.New("queue: the NATS cluster cannot answer now")

// Unavailable reports whether err is a condition that time cures (see
// ErrUnavailable), as opposed to an answer (not found, conflict) or a
// mistake (permissions, bad input).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{
		ErrUnavailable, jetstream.ErrNoStreamResponse, jetstream.ErrServerShutdown,
		nats.ErrNoResponders, nats.ErrTimeout, nats.ErrConnectionReconnecting,
		nats.ErrDisconnected, nats.ErrNoServers, nats.ErrReconnectBufExceeded,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	// The server answers 503 while a stream or the meta layer has no
	// leader ("JetStream system temporarily unavailable").
	var ae *jetstream.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusServiceUnavailable {
		return true
	}
	var je jetstream.JetStreamError
	if errors.As(err, &je) && je.APIError() != nil && je.APIError().Code == http.StatusServiceUnavailable {
		return true
	}
	return false
}

// Retry runs fn until it succeeds, fails with something other than an
// unavailable cluster, or ctx ends; between tries it waits a little
// longer each time (100 ms up to 2 s). A failure still unavailable when
// ctx ends is returned wrapped in ErrUnavailable. fn must be safe to run
// again: a compare-and-set or a create whose second try reports the first.
func Retry(ctx context.Context, fn func(ctx context.Context) error) error {
	return retry(ctx, 0, fn)
}

// tryTimeout bounds one try of a single read or write under RetryEach: a
// request sent to a stream leader that has just died gets no answer, and
// must not use up the caller's whole deadline while a new leader is
// elected within seconds.
const tryTimeout = 3 * time.Second

// RetryEach is Retry with each try bounded by tryTimeout, for single
// reads and writes (not for scans, whose length grows with the data).
func RetryEach(ctx context.Context, fn func(ctx context.Context) error) error {
	return retry(ctx, tryTimeout, fn)
}

func retry(ctx context.Context, perTry time.Duration, fn func(ctx context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		var err error
		if perTry > 0 {
			tctx, cancel := context.WithTimeout(ctx, perTry)
			err = fn(tctx)
			cancel()
		} else {
			err = fn(ctx)
		}
		if err == nil || !Unavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(err, ErrUnavailable) {
				return err
			}
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}
