package queue_test

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/buildmarkets/keydesk/queue/queuetest"
)

// TestAttempts: attempts are counted before the work and ended after it;
// what a crash leaves is counted, survives a restart of the store, and a
// new epoch starts from nothing.
func TestAttempts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q := queuetest.OpenDir(t, dir)
	a := q.Attempts("INBOX")
	steps := []struct {
		name        string
		epoch       uint32
		begin       []uint32
		done, undo  []uint32
		want        map[uint32]int // after the step
		wantAtBegin map[uint32]int // what Begin returns (nil: Begin not called)
	}{
		{"a group begins", 7, []uint32{1, 2, 3}, nil, nil, map[uint32]int{1: 1, 2: 1, 3: 1}, map[uint32]int{1: 1, 2: 1, 3: 1}},
		// The process dies here: nothing ends the attempts.
		{"one alone, filed", 7, []uint32{1}, []uint32{1}, nil, map[uint32]int{2: 1, 3: 1}, map[uint32]int{1: 2, 2: 1, 3: 1}},
		{"one alone, tried again later", 7, []uint32{3}, nil, []uint32{3}, map[uint32]int{2: 1, 3: 1}, map[uint32]int{2: 1, 3: 2}},
		{"one alone, dies again", 7, []uint32{2}, nil, nil, map[uint32]int{2: 2, 3: 1}, map[uint32]int{2: 2, 3: 1}},
		{"a gone item forgotten", 7, nil, []uint32{3, 99}, nil, map[uint32]int{2: 2}, nil},
		{"another epoch", 8, nil, nil, nil, map[uint32]int{}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.wantAtBegin != nil {
				got, err := a.Begin(ctx, st.epoch, st.begin)
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, st.wantAtBegin) {
					t.Errorf("Begin returned %v, want %v", got, st.wantAtBegin)
				}
			}
			if st.done != nil || st.undo != nil {
				if err := a.End(ctx, st.epoch, st.done, st.undo); err != nil {
					t.Fatal(err)
				}
			}
			got, err := a.Load(ctx, st.epoch)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, st.want) {
				t.Errorf("counts %v, want %v", got, st.want)
			}
		})
	}

	// The counts are on disk: a restarted store still has them.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = queuetest.OpenDir(t, dir)
	got, err := q.Attempts("INBOX").Load(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, map[uint32]int{2: 2}) {
		t.Errorf("after a restart: counts %v, want map[2:2]", got)
	}
	if _, err := q.Attempts("bad.name").Load(ctx, 7); err == nil {
		t.Error("a name with a dot was accepted")
	}
}

// TestAttemptsConcurrent: writers racing on one set lose no count.
func TestAttemptsConcurrent(t *testing.T) {
	ctx := context.Background()
	q := queuetest.Open(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := q.Attempts("INBOX").Begin(ctx, 1, []uint32{uint32(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := q.Attempts("INBOX").Load(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, map[uint32]int{0: 1, 1: 1, 2: 1, 3: 1}) {
		t.Errorf("counts %v, want one for each of 0..3", got)
	}
}
