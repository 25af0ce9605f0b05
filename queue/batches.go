package queue

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// NewBatchID returns a sortable, readable batch ID: B-20261127-101500-7QX4.
func (c *Conn) NewBatchID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("B-%s-%X", c.Now().UTC().Format("20060102-150405"), b)
}

// RequestBatch records a request to run a batch now. A batch role watching
// the bucket takes it; the web face needs no link to the batch code.
func (c *Conn) RequestBatch(ctx context.Context, by string) (*keydesk.Batch, error) {
	b := &keydesk.Batch{ID: c.NewBatchID(), Trigger: "manual", By: by, State: keydesk.BatchRequested, Requested: c.Now().UTC()}
	rev, err := c.batches.retrying().Create(ctx, b.ID, b)
	if err != nil {
		return nil, fmt.Errorf("queue: request batch: %w", err)
	}
	b.Revision = rev
	return b, nil
}

// WithdrawBatch deletes a batch request that is still as RequestBatch
// wrote it (nobody took it): the undo of a request whose audit event
// could not be written.
func (c *Conn) WithdrawBatch(ctx context.Context, b *keydesk.Batch) error {
	if err := c.batches.retrying().Delete(ctx, b.ID, b.Revision); err != nil {
		return fmt.Errorf("queue: withdraw batch %s: %w", b.ID, err)
	}
	return nil
}

// PutBatch writes a batch record. With b.Revision set it is a
// compare-and-set (ErrConflict if the record changed); without, a create.
func (c *Conn) PutBatch(ctx context.Context, b *keydesk.Batch) error {
	var rev uint64
	var err error
	if b.Revision == 0 {
		rev, err = c.batches.retrying().Create(ctx, b.ID, b)
	} else {
		rev, err = c.batches.retrying().Update(ctx, b.ID, b, b.Revision)
	}
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			return fmt.Errorf("batch %s: %w", b.ID, keydesk.ErrConflict)
		}
		return fmt.Errorf("queue: put batch %s: %w", b.ID, err)
	}
	b.Revision = rev
	return nil
}

// GetBatch reads one batch record.
func (c *Conn) GetBatch(ctx context.Context, id string) (*keydesk.Batch, error) {
	b, rev, err := c.batches.Get(ctx, id)
	if err != nil {
		if errors.Is(err, keydesk.ErrNotFound) {
			return nil, fmt.Errorf("batch %s: %w", id, keydesk.ErrNotFound)
		}
		var de *DecodeError
		if errors.As(err, &de) {
			return nil, fmt.Errorf("queue: decode batch %s: %w", id, de.Err)
		}
		return nil, fmt.Errorf("queue: get batch %s: %w", id, err)
	}
	b.Revision = rev
	return b, nil
}

// ListBatches returns every batch record, newest first; one that cannot
// be read is left out.
func (c *Conn) ListBatches(ctx context.Context) ([]*keydesk.Batch, error) {
	entries, err := c.batches.Scan(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("queue: list batches: %w", err)
	}
	var out []*keydesk.Batch
	for _, e := range entries {
		if e.Err != nil {
			continue
		}
		e.Value.Revision = e.Revision
		out = append(out, e.Value)
	}
	slices.SortFunc(out, func(a, b *keydesk.Batch) int { return -strings.Compare(a.ID, b.ID) })
	return out, nil
}

// WatchRequested calls fn with each batch record in state requested, now
// and as they are written, until ctx ends (nil), fn fails (its error) or
// the watch breaks (an error matching ErrUnavailable).
func (c *Conn) WatchRequested(ctx context.Context, fn func(b *keydesk.Batch) error) error {
	return c.batches.Watch(ctx, "", func(e *Entry[keydesk.Batch]) error {
		if e == nil || e.Err != nil || e.Value.State != keydesk.BatchRequested {
			return nil
		}
		e.Value.Revision = e.Revision
		return fn(e.Value)
	})
}
