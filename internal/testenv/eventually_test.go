package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(10*time.Second, "the third call", func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, n)
	}
	err := Poll(0, "what never happens", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "what never happens") {
		t.Fatalf("Poll = %v, want an error naming what never happened", err)
	}
}
