package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/buildmarkets/keydesk"
)

// Attempts counts, durably, the attempts at items of work that began and
// did not end: the emails of one mailbox, by UID, within one UIDVALIDITY
// (the epoch). Work that kills the process doing it (a crash outside any
// recover, an out-of-memory kill) never ends its attempt, so after a
// restart an item's count says how many times it did so, and the worker
// can set it aside instead of dying on it again.
//
// The counts of a set are one record (the key attempts.<name> in the
// intake bucket) changed by compare-and-set: one write before a group of
// items is worked on and one after, whatever the group's size. It holds
// only the items in hand and those whose attempts did not end, so it
// stays small.
type Attempts struct {
	b    *Bucket[attemptsRecord]
	key  string
	name string
}

// attemptsRecord is the stored form of a set.
type attemptsRecord struct {
	Epoch  uint32         `json:"epoch"`
	Counts map[uint32]int `json:"counts,omitempty"`
}

// maxAttemptsCAS bounds the retries of a write that lost a race with
// another writer (one poller per mailbox holds a lease, so a race is rare:
// a poller taking over from one that is still ending its work).
const maxAttemptsCAS = 5

// Attempts returns the attempt counts named name: letters, digits, '-',
// '_' and '=' only, as KeyToken makes them (intake names a set after its
// mailbox).
func (c *Conn) Attempts(name string) *Attempts {
	return &Attempts{b: NewBucket[attemptsRecord](c, BucketIntake), key: "attempts." + name, name: name}
}

func (a *Attempts) check() error {
	if a.name == "" || a.name != KeyToken(a.name) {
		return fmt.Errorf("queue: attempts %q: the name must be letters, digits, '-', '_' or '='", a.name)
	}
	return nil
}

// Load returns the counts of epoch: none when the record is of another
// epoch (the UIDs it counted mean nothing now).
func (a *Attempts) Load(ctx context.Context, epoch uint32) (map[uint32]int, error) {
	rec, _, err := a.get(ctx, epoch)
	if err != nil {
		return nil, err
	}
	return rec.Counts, nil
}

// Begin counts one more attempt at each of ids and returns every count of
// epoch after it: an item's count less one is how many of its attempts
// did not end.
func (a *Attempts) Begin(ctx context.Context, epoch uint32, ids []uint32) (map[uint32]int, error) {
	return a.update(ctx, epoch, func(counts map[uint32]int) bool {
		for _, id := range ids {
			counts[id]++
		}
		return len(ids) > 0
	})
}

// End ends attempts: the items in done are forgotten (their work is over,
// or they are gone), and those in undo are counted one less (the attempt
// ended without finishing the work: the item is tried again, and it did
// not kill the process).
func (a *Attempts) End(ctx context.Context, epoch uint32, done, undo []uint32) error {
	_, err := a.update(ctx, epoch, func(counts map[uint32]int) bool {
		changed := false
		for _, id := range done {
			if _, ok := counts[id]; ok {
				delete(counts, id)
				changed = true
			}
		}
		for _, id := range undo {
			n, ok := counts[id]
			switch {
			case !ok:
				continue
			case n <= 1:
				delete(counts, id)
			default:
				counts[id] = n - 1
			}
			changed = true
		}
		return changed
	})
	return err
}

// get reads the record; a record of another epoch, or one that cannot be
// decoded, reads as empty (starting over costs at most a few attempts; a
// record that can never be read would stop the work for good).
func (a *Attempts) get(ctx context.Context, epoch uint32) (attemptsRecord, uint64, error) {
	rec := attemptsRecord{Epoch: epoch, Counts: map[uint32]int{}}
	if err := a.check(); err != nil {
		return rec, 0, err
	}
	old, rev, err := a.b.Get(ctx, a.key)
	var de *DecodeError
	switch {
	case errors.Is(err, keydesk.ErrNotFound):
		return rec, 0, nil
	case errors.As(err, &de):
		return rec, rev, nil // unreadable: counted afresh, written over
	case err != nil:
		return rec, 0, fmt.Errorf("queue: read attempts %s: %w", a.name, err)
	}
	if old.Epoch == epoch && old.Counts != nil {
		rec.Counts = old.Counts
	}
	return rec, rev, nil
}

// update applies change to the counts of epoch and writes them back with a
// compare-and-set, trying again when another writer came first. change
// reports whether it changed anything: nothing is written if not.
func (a *Attempts) update(ctx context.Context, epoch uint32, change func(map[uint32]int) bool) (map[uint32]int, error) {
	for try := 0; ; try++ {
		rec, rev, err := a.get(ctx, epoch)
		if err != nil {
			return nil, err
		}
		if !change(rec.Counts) {
			return rec.Counts, nil
		}
		if rev == 0 {
			_, err = a.b.Create(ctx, a.key, &rec)
		} else {
			_, err = a.b.Update(ctx, a.key, &rec, rev)
		}
		if err == nil {
			return rec.Counts, nil
		}
		if errors.Is(err, keydesk.ErrConflict) && try < maxAttemptsCAS {
			continue
		}
		return nil, fmt.Errorf("queue: write attempts %s: %w", a.name, err)
	}
}
