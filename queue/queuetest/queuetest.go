// Package queuetest starts a real embedded JetStream server for tests and
// returns a queue connection to it.
package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/queue"
)

// Open returns a queue on a fresh embedded server storing under a test
// directory; it is closed when the test ends.
func Open(t testing.TB) *queue.Conn {
	t.Helper()
	return OpenDir(t, t.TempDir())
}

// OpenDir is Open on a given data directory, for restart tests. The caller
// may Close it early; the cleanup's second Close is harmless.
func OpenDir(t testing.TB, dir string) *queue.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := queue.Open(ctx, queue.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
