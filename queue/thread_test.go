package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

// TestThread: entries come back oldest first, once each however often
// they are stored, and past the caps they are still recorded, their text
// left out and marked.
func TestThread(t *testing.T) {
	q := queuetest.Open(t)
	ctx := context.Background()
	const id = "KR-20261130-AB12"
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	in := keydesk.ThreadEntry{ID: "in1", RequestID: id, At: t0.Add(time.Minute), Kind: keydesk.ThreadEmailIn, Text: "only accounts:read please"}
	out := keydesk.ThreadEntry{ID: "out1", RequestID: id, At: t0, Kind: keydesk.ThreadEmailOut, Text: "We received your request"}
	for _, e := range []keydesk.ThreadEntry{in, out, in} {
		if _, err := q.AppendThread(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	added, err := q.AppendThread(ctx, in)
	if err != nil || added {
		t.Fatalf("storing an entry again: added %v, %v", added, err)
	}
	got, err := q.Thread(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"out1", "in1"}) {
		t.Fatalf("thread %v, want [out1 in1]", ids)
	}
	if other, err := q.Thread(ctx, "KR-20261130-ZZZZ"); err != nil || len(other) != 0 {
		t.Fatalf("another request's thread: %v, %v", other, err)
	}

	// The byte cap: a huge entry is cut, and once the thread is full the
	// text is left out but the entry kept.
	big := strings.Repeat("x", keydesk.MaxThreadEntryText+10)
	for i := 0; i < keydesk.MaxThreadBytes/keydesk.MaxThreadEntryText+2; i++ {
		if _, err := q.AppendThread(ctx, keydesk.ThreadEntry{ID: fmt.Sprint("big", i), RequestID: id, Kind: keydesk.ThreadEmailIn, Text: big, MailRef: "m1"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err = q.Thread(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	total, empty := 0, 0
	for _, e := range got {
		total += len(e.Text)
		if len(e.Text) > keydesk.MaxThreadEntryText {
			t.Errorf("entry %s holds %d bytes", e.ID, len(e.Text))
		}
		if strings.HasPrefix(e.ID, "big") {
			if !e.Truncated || e.MailRef != "m1" {
				t.Errorf("entry %s over the cap: truncated %v, mail ref %q", e.ID, e.Truncated, e.MailRef)
			}
			if e.Text == "" {
				empty++
			}
		}
	}
	if total > keydesk.MaxThreadBytes || empty == 0 {
		t.Errorf("thread holds %d bytes (cap %d), %d entries without text", total, keydesk.MaxThreadBytes, empty)
	}
}

// TestMessageIndex: a Message-ID maps to every request it was indexed
// for, in any spelling of the ID, and an unknown one is ErrNotFound.
func TestMessageIndex(t *testing.T) {
	q := queuetest.Open(t)
	ctx := context.Background()
	if err := q.IndexMessage(ctx, "<KR-20261130-AB12.ack@buildmarkets.ai>", "KR-20261130-AB12", "KR-20261130-CD34"); err != nil {
		t.Fatal(err)
	}
	if err := q.IndexMessage(ctx, "kr-20261130-ab12.ack@BUILDMARKETS.AI", "KR-20261130-CD34", "KR-20261130-EF56"); err != nil {
		t.Fatal(err)
	}
	got, err := q.LookupMessage(ctx, " <KR-20261130-AB12.ack@buildmarkets.ai> ")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"KR-20261130-AB12", "KR-20261130-CD34", "KR-20261130-EF56"}; !slices.Equal(got, want) {
		t.Fatalf("lookup %v, want %v", got, want)
	}
	if _, err := q.LookupMessage(ctx, "<other@example.com>"); !errors.Is(err, keydesk.ErrNotFound) {
		t.Fatalf("unknown Message-ID: %v, want ErrNotFound", err)
	}
}
