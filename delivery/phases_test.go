package delivery

import (
	"testing"
	"time"
)

// TestRetryWaits holds the two retry schedules handle's phases use: the
// configured delays after a temporary failure (the last repeats), and the
// growing wait for a key delivery whose request is still generating.
func TestRetryWaits(t *testing.T) {
	s := &Service{o: Options{
		RetryDelays:   []time.Duration{30 * time.Second, time.Minute, 5 * time.Minute},
		NotReadyDelay: 500 * time.Millisecond,
	}}
	tests := []struct {
		name      string
		delivered uint64
		retry     time.Duration
		notReady  time.Duration
	}{
		{"no delivery counted yet", 0, 30 * time.Second, 500 * time.Millisecond},
		{"first delivery", 1, 30 * time.Second, 500 * time.Millisecond},
		{"second delivery", 2, time.Minute, time.Second},
		{"third delivery", 3, 5 * time.Minute, 1500 * time.Millisecond},
		{"past the schedule", 50, 5 * time.Minute, 25 * time.Second},
		{"not ready for long", 500, 5 * time.Minute, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.delay(tt.delivered); got != tt.retry {
				t.Errorf("delay(%d) = %s, want %s", tt.delivered, got, tt.retry)
			}
			if got := s.notReadyDelay(tt.delivered); got != tt.notReady {
				t.Errorf("notReadyDelay(%d) = %s, want %s", tt.delivered, got, tt.notReady)
			}
		})
	}
}
