package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats.go/jetstream"
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
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	rev, err := c.create(ctx, c.KV(BucketBatches), b.ID, data)
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
	err := Retry(ctx, func(ctx context.Context) error {
		return c.KV(BucketBatches).Delete(ctx, b.ID, jetstream.LastRevision(b.Revision))
	})
	if err != nil {
		return fmt.Errorf("queue: withdraw batch %s: %w", b.ID, err)
	}
	return nil
}

// create is a KV create that tries again while the cluster cannot answer.
// A try whose answer was lost may have been written: when a later try
// then finds the key taken, the value is read back, and if it is exactly
// what this create wrote, the create succeeded.
func (c *Conn) create(ctx context.Context, kv jetstream.KeyValue, key string, data []byte) (uint64, error) {
	var rev uint64
	unsure := false
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		rev, err = kv.Create(ctx, key, data)
		if err != nil && unsure && errors.Is(err, jetstream.ErrKeyExists) {
			if e, gerr := kv.Get(ctx, key); gerr == nil && bytes.Equal(e.Value(), data) {
				rev = e.Revision()
				return nil
			}
		}
		unsure = unsure || Unavailable(err)
		return err
	})
	return rev, err
}

// PutBatch writes a batch record. With b.Revision set it is a
// compare-and-set (ErrConflict if the record changed); without, a create.
func (c *Conn) PutBatch(ctx context.Context, b *keydesk.Batch) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	kv := c.KV(BucketBatches)
	var rev uint64
	if b.Revision == 0 {
		rev, err = c.create(ctx, kv, b.ID, data)
	} else {
		rev, err = c.update(ctx, kv, b.ID, data, b.Revision)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("batch %s: %w", b.ID, keydesk.ErrConflict)
		}
		return fmt.Errorf("queue: put batch %s: %w", b.ID, err)
	}
	b.Revision = rev
	return nil
}

// GetBatch reads one batch record.
func (c *Conn) GetBatch(ctx context.Context, id string) (*keydesk.Batch, error) {
	e, err := c.KV(BucketBatches).Get(ctx, id)
	if err != nil {
		if isNotFound(err) || errors.Is(err, jetstream.ErrInvalidKey) {
			return nil, fmt.Errorf("batch %s: %w", id, keydesk.ErrNotFound)
		}
		return nil, fmt.Errorf("queue: get batch %s: %w", id, err)
	}
	var b keydesk.Batch
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		return nil, fmt.Errorf("queue: decode batch %s: %w", id, err)
	}
	b.Revision = e.Revision()
	return &b, nil
}

// ListBatches returns every batch record, newest first.
func (c *Conn) ListBatches(ctx context.Context) ([]*keydesk.Batch, error) {
	w, err := c.KV(BucketBatches).WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("queue: list batches: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []*keydesk.Batch
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("queue: list batches: watcher closed")
			}
			if e == nil {
				slices.SortFunc(out, func(a, b *keydesk.Batch) int { return -strings.Compare(a.ID, b.ID) })
				return out, nil
			}
			var b keydesk.Batch
			if err := json.Unmarshal(e.Value(), &b); err != nil {
				continue
			}
			b.Revision = e.Revision()
			out = append(out, &b)
		}
	}
}
