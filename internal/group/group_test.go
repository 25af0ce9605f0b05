package group

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRun: the first to return stops the others, and its error is the
// one returned; the parent's end stops all with no error of their own.
func TestRun(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(context.Background(),
		func(ctx context.Context) error { <-ctx.Done(); close(stopped); return ctx.Err() },
		func(context.Context) error { return boom },
	)
	if !errors.Is(err, boom) {
		t.Errorf("Run = %v, want the first error, boom", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("the other function was not stopped")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }, func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err != nil {
		t.Errorf("Run after the parent ended = %v, want nil", err)
	}
}
