package testenv

import (
	"fmt"
	"testing"
	"time"
)

// Eventually polls cond until it holds, or fails the test once timeout
// has passed, naming what never happened. Tests wait with it instead of
// sleeping (no sleep is long enough on a loaded machine, and every sleep
// is too long on an idle one).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Poll(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// Poll is Eventually returning an error instead of failing the test, for
// callbacks that report through their caller rather than through t.
func Poll(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
