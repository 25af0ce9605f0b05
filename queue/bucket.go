package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is one KV bucket holding JSON values of type T: the one read and
// compare-and-set write path of every record keydesk keeps (requests,
// batches, sent-message records, intake records, sessions). A bucket may
// hold several kinds of record under different key prefixes; each kind
// gets its own Bucket over the same name.
//
// Its answers are typed: a missing key is an error matching
// keydesk.ErrNotFound, a create or update that lost its compare-and-set
// one matching keydesk.ErrConflict, a value that is not T's JSON a
// *DecodeError. Any other error is the store's, returned as it is for the
// caller to wrap with what it was doing; Unavailable tells whether time
// cures it.
type Bucket[T any] struct {
	kv   jetstream.KeyValue
	name string
	// retry makes every call try again while the cluster cannot answer
	// (see Retry); a write whose answer was lost is recognised by reading
	// it back.
	retry bool
}

// Buckets is what a Bucket is opened on: a *Conn. Its one method is
// unexported, so that only this package reaches JetStream.
type Buckets interface {
	kvBucket(name string) jetstream.KeyValue
}

var _ Buckets = (*Conn)(nil)

// NewBucket returns the bucket name (one of the Bucket* constants) of c,
// holding values of type T. It panics on a name that is not a bucket.
func NewBucket[T any](c Buckets, name string) *Bucket[T] {
	return &Bucket[T]{kv: c.kvBucket(name), name: name}
}

// retrying is b with every call tried again while the cluster cannot
// answer.
func (b *Bucket[T]) retrying() *Bucket[T] {
	r := *b
	r.retry = true
	return &r
}

// DecodeError is a stored value that is not the JSON of its bucket's type.
type DecodeError struct {
	Key string
	Err error
}

func (e *DecodeError) Error() string { return "queue: decode " + e.Key + ": " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Entry is one value of a bucket with its revision.
type Entry[T any] struct {
	Key      string
	Revision uint64
	// Value is nil when Err is set.
	Value *T
	// Err is a *DecodeError when the stored value is not T's JSON.
	Err error
}

func entryOf[T any](e jetstream.KeyValueEntry) Entry[T] {
	out := Entry[T]{Key: e.Key(), Revision: e.Revision()}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		out.Err = &DecodeError{Key: e.Key(), Err: err}
	} else {
		out.Value = &v
	}
	return out
}

// do runs one read or write once, or under RetryEach for a retrying bucket.
func (b *Bucket[T]) do(ctx context.Context, fn func(ctx context.Context) error) error {
	if b.retry {
		return RetryEach(ctx, fn)
	}
	return fn(ctx)
}

func (b *Bucket[T]) notFound(key string) error {
	return fmt.Errorf("queue: %s %s: %w", b.name, key, keydesk.ErrNotFound)
}

func (b *Bucket[T]) conflict(key string, err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("queue: %s %s: %w", b.name, key, keydesk.ErrConflict)
	}
	return err
}

// Get returns the value of key with its revision. A value that cannot be
// decoded comes back as a *DecodeError with its revision, so that the
// caller may replace or remove it.
func (b *Bucket[T]) Get(ctx context.Context, key string) (*T, uint64, error) {
	var e jetstream.KeyValueEntry
	err := b.do(ctx, func(ctx context.Context) (err error) {
		e, err = b.kv.Get(ctx, key)
		return err
	})
	if err != nil {
		if isNotFound(err) || errors.Is(err, jetstream.ErrInvalidKey) {
			return nil, 0, b.notFound(key)
		}
		return nil, 0, err
	}
	en := entryOf[T](e)
	return en.Value, en.Revision, en.Err
}

// Create stores v under key, which must not hold a value yet.
func (b *Bucket[T]) Create(ctx context.Context, key string, v *T) (uint64, error) {
	data, err := b.encode(key, v)
	if err != nil {
		return 0, err
	}
	rev, err := b.write(ctx, key, data, jetstream.ErrKeyExists, func(ctx context.Context) (uint64, error) {
		return b.kv.Create(ctx, key, data)
	})
	return rev, b.conflict(key, err)
}

// Update replaces the value of key with v if its revision is still last:
// a compare-and-set.
func (b *Bucket[T]) Update(ctx context.Context, key string, v *T, last uint64) (uint64, error) {
	data, err := b.encode(key, v)
	if err != nil {
		return 0, err
	}
	rev, err := b.write(ctx, key, data, jetstream.ErrKeyRevisionMismatch, func(ctx context.Context) (uint64, error) {
		return b.kv.Update(ctx, key, data, last)
	})
	return rev, b.conflict(key, err)
}

// Put stores v under key whatever it held.
func (b *Bucket[T]) Put(ctx context.Context, key string, v *T) (uint64, error) {
	data, err := b.encode(key, v)
	if err != nil {
		return 0, err
	}
	var rev uint64
	err = b.do(ctx, func(ctx context.Context) (err error) {
		rev, err = b.kv.Put(ctx, key, data)
		return err
	})
	return rev, err
}

// Delete marks key deleted; with last set, only if its revision is still
// last (ErrConflict otherwise).
func (b *Bucket[T]) Delete(ctx context.Context, key string, last uint64) error {
	var opts []jetstream.KVDeleteOpt
	if last != 0 {
		opts = append(opts, jetstream.LastRevision(last))
	}
	err := b.do(ctx, func(ctx context.Context) error { return b.kv.Delete(ctx, key, opts...) })
	if isNotFound(err) {
		return b.notFound(key)
	}
	return b.conflict(key, err)
}

// Purge removes key and its history.
func (b *Bucket[T]) Purge(ctx context.Context, key string) error {
	return b.do(ctx, func(ctx context.Context) error { return b.kv.Purge(ctx, key) })
}

func (b *Bucket[T]) encode(key string, v *T) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("queue: encode %s: %w", key, err)
	}
	return data, nil
}

// write runs a create or compare-and-set. On a retrying bucket a try
// whose answer was lost may have been written: when a later try then
// fails with taken (the key exists, the revision moved on), the value is
// read back, and if it holds exactly data, the write succeeded.
func (b *Bucket[T]) write(ctx context.Context, key string, data []byte, taken error, fn func(ctx context.Context) (uint64, error)) (uint64, error) {
	var rev uint64
	unsure := false
	err := b.do(ctx, func(ctx context.Context) error {
		var err error
		rev, err = fn(ctx)
		if err != nil && unsure && errors.Is(err, taken) {
			if e, gerr := b.kv.Get(ctx, key); gerr == nil && bytes.Equal(e.Value(), data) {
				rev = e.Revision()
				return nil
			}
		}
		unsure = unsure || Unavailable(err)
		return err
	})
	return rev, err
}

// Scan returns every current value whose key starts with prefix ("" for
// all), through one watcher rather than a Get per key, in the bucket's
// order. A value that cannot be decoded is returned with its Err set: the
// caller decides whether that fails the scan.
func (b *Bucket[T]) Scan(ctx context.Context, prefix string) ([]Entry[T], error) {
	var out []Entry[T]
	scan := func(ctx context.Context) error {
		out = nil
		done := errors.New("done")
		err := b.Watch(ctx, prefix, func(e *Entry[T]) error {
			if e == nil {
				return done
			}
			out = append(out, *e)
			return nil
		})
		switch {
		case errors.Is(err, done):
			return nil
		case err == nil: // ctx ended
			return fmt.Errorf("queue: scan %s: %w", b.name, ctx.Err())
		}
		return err
	}
	var err error
	if b.retry {
		err = Retry(ctx, scan) // a scan's length grows with the data: no per-try bound
	} else {
		err = scan(ctx)
	}
	return out, err
}

// Watch calls fn with every current value whose key starts with prefix
// ("" for all), then with nil once they have all been seen, then with
// every new value as it is written, until ctx ends (it returns nil), fn
// returns an error (it returns that) or the watch breaks (an error
// matching ErrUnavailable: the connection was lost, the cluster elected a
// new leader). Deletions are not shown.
func (b *Bucket[T]) Watch(ctx context.Context, prefix string, fn func(e *Entry[T]) error) error {
	var w jetstream.KeyWatcher
	var err error
	if prefix == "" {
		w, err = b.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	} else {
		w, err = b.kv.Watch(ctx, prefix+">", jetstream.IgnoreDeletes())
	}
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("queue: watch of %s: %w: the watcher closed", b.name, ErrUnavailable)
			}
			var en *Entry[T]
			if e != nil {
				v := entryOf[T](e)
				en = &v
			}
			if err := fn(en); err != nil {
				return err
			}
		}
	}
}
