package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

type note struct {
	Text string `json:"text"`
}

// TestBucket holds the typed bucket's answers: a missing key is
// ErrNotFound, a lost compare-and-set ErrConflict, a value of another
// shape a *DecodeError, and Scan keeps to its prefix.
func TestBucket(t *testing.T) {
	q := queuetest.Open(t)
	ctx := context.Background()
	b := queue.NewBucket[note](q, queue.BucketIntake)
	raw := queue.NewBucket[json.RawMessage](q, queue.BucketIntake)

	rev1, err := b.Create(ctx, "t.a", &note{Text: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "t.bad", &json.RawMessage{'4', '2'}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "other.c", &note{Text: "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	rev2, err := b.Update(ctx, "t.a", &note{Text: "two"}, rev1)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"get a missing key", func() error { _, _, err := b.Get(ctx, "t.none"); return err }, keydesk.ErrNotFound},
		{"create a taken key", func() error { _, err := b.Create(ctx, "t.a", &note{}); return err }, keydesk.ErrConflict},
		{"update from a stale revision", func() error { _, err := b.Update(ctx, "t.a", &note{}, rev1); return err }, keydesk.ErrConflict},
		{"delete from a stale revision", func() error { return b.Delete(ctx, "t.a", rev1) }, keydesk.ErrConflict},
		{"get a value of another shape", func() error { _, _, err := b.Get(ctx, "t.bad"); return err }, &queue.DecodeError{}},
		{"get the latest value", func() error {
			v, rev, err := b.Get(ctx, "t.a")
			if err == nil && (v.Text != "two" || rev != rev2) {
				err = errors.New("got " + v.Text)
			}
			return err
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			var de *queue.DecodeError
			switch want := tt.want.(type) {
			case nil:
				if err != nil {
					t.Fatal(err)
				}
			case *queue.DecodeError:
				if !errors.As(err, &de) {
					t.Fatalf("got %v, want a decode error", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
		})
	}

	entries, err := b.Scan(ctx, "t.")
	if err != nil {
		t.Fatal(err)
	}
	var keys, bad []string
	for _, e := range entries {
		keys = append(keys, e.Key)
		if e.Err != nil {
			bad = append(bad, e.Key)
		}
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"t.a", "t.bad"}) || !slices.Equal(bad, []string{"t.bad"}) {
		t.Fatalf("scan of t.: keys %v, undecodable %v", keys, bad)
	}
}
