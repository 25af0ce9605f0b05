package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamInfo is what a stream holds.
type StreamInfo struct {
	Replicas          int
	Msgs, Bytes       uint64
	FirstSeq, LastSeq uint64
}

// StreamInfo describes stream name (one of the Stream* constants, or
// "KV_"+bucket, "OBJ_"+object store).
func (c *Conn) StreamInfo(ctx context.Context, name string) (StreamInfo, error) {
	st, err := c.js.Stream(ctx, name)
	if err != nil {
		return StreamInfo{}, err
	}
	info := st.CachedInfo()
	return StreamInfo{
		Replicas: info.Config.Replicas, Msgs: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq,
	}, nil
}

// StreamMsg is one message of a stream, as stored.
type StreamMsg struct {
	Subject string
	Data    []byte
}

// StreamMsg returns message seq of stream; a message that is not there
// (never was, or was removed) is an error matching keydesk.ErrNotFound.
func (c *Conn) StreamMsg(ctx context.Context, stream string, seq uint64) (*StreamMsg, error) {
	st, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("queue: %s message %d: %w", stream, seq, keydesk.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &StreamMsg{Subject: m.Subject, Data: m.Data}, nil
}

// DeleteStreamMsg removes message seq of stream; one that is not there is
// an error matching keydesk.ErrNotFound.
func (c *Conn) DeleteStreamMsg(ctx context.Context, stream string, seq uint64) error {
	st, err := c.js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	err = st.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("queue: %s message %d: %w", stream, seq, keydesk.ErrNotFound)
	}
	return err
}

// eachMessage calls fn with every message of stream, oldest first.
func (c *Conn) eachMessage(ctx context.Context, stream string, fn func(m *jetstream.RawStreamMsg) error) error {
	st, err := c.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", stream, err)
	}
	info := st.CachedInfo()
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("queue: stream %s message %d: %w", stream, seq, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// EachStoredMessage calls fn with every message of every stream of the
// account (buckets, the object store and the streams alike), with its
// headers: a test that a secret is nowhere in the store reads all of it
// through this.
func (c *Conn) EachStoredMessage(ctx context.Context, fn func(stream string, seq uint64, data []byte, header map[string][]string) error) error {
	for name := range c.js.StreamNames(ctx).Name() {
		err := c.eachMessage(ctx, name, func(m *jetstream.RawStreamMsg) error {
			return fn(name, m.Sequence, m.Data, m.Header)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// LeaseHolder returns who holds lease name; a lease nobody holds is an
// error matching keydesk.ErrNotFound.
func (c *Conn) LeaseHolder(ctx context.Context, name string) (string, error) {
	e, err := c.locks.Get(ctx, name)
	if isNotFound(err) {
		return "", fmt.Errorf("queue: lease %s: %w", name, keydesk.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("queue: lease %s: %w", name, err)
	}
	return string(e.Value()), nil
}

// Raw returns the connection's NATS and JetStream handles. It exists for
// the tests of NATS itself (the deployment's permission and failover
// tests); keydesk's roles use the typed methods of this package, and a
// test of the import rules keeps nats.go out of them.
func (c *Conn) Raw() (*nats.Conn, jetstream.JetStream) { return c.nc, c.js }
