package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/nats-io/nats.go/jetstream"
)

// Enqueue puts an email in the outbox. Its ID is the Nats-Msg-Id, so a
// producer that retries after a crash does not queue it twice within the
// window; delivery's record of sent IDs covers the rest.
func (c *Conn) Enqueue(ctx context.Context, m *keydesk.Outgoing) error {
	if m.ID == "" || m.Kind == "" || len(m.To) == 0 {
		return errors.New("queue: enqueue: an outgoing message needs an ID, a kind and a recipient")
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = c.Now().UTC()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("queue: encode outgoing %s: %w", m.ID, err)
	}
	if _, err := c.js.Publish(ctx, SubjectOutbox+"."+string(m.Kind), data, jetstream.WithMsgID(m.ID)); err != nil {
		return fmt.Errorf("queue: enqueue %s: %w", m.ID, err)
	}
	return nil
}

// DecodeOutgoing reads an outbox message.
func DecodeOutgoing(data []byte) (*keydesk.Outgoing, error) {
	var m keydesk.Outgoing
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("queue: decode outgoing: %w", err)
	}
	return &m, nil
}

// EnqueueRaw puts data on the outbox under subject (outbox.<kind>) with
// msgID, if set, as its deduplication ID: for a message kept as it was
// stored (a dead letter sent again), which Enqueue would encode anew.
func (c *Conn) EnqueueRaw(ctx context.Context, subject string, data []byte, msgID string) error {
	if !strings.HasPrefix(subject, SubjectOutbox+".") {
		return fmt.Errorf("queue: enqueue %s: subject %q is not in the outbox", msgID, subject)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := c.js.Publish(ctx, subject, data, opts...); err != nil {
		return fmt.Errorf("queue: enqueue %s: %w", msgID, err)
	}
	return nil
}

// Outbox returns the messages waiting in the outbox, oldest first.
func (c *Conn) Outbox(ctx context.Context) ([]*keydesk.Outgoing, error) {
	var out []*keydesk.Outgoing
	err := c.eachMessage(ctx, StreamOutbox, func(m *jetstream.RawStreamMsg) error {
		o, err := DecodeOutgoing(m.Data)
		if err != nil {
			return fmt.Errorf("queue: outbox message %d: %w", m.Sequence, err)
		}
		out = append(out, o)
		return nil
	})
	return out, err
}

// OutboxConsumerConfig configures the durable pull consumer of the outbox.
type OutboxConsumerConfig struct {
	// Durable names the consumer every instance of a role shares.
	Durable     string
	Description string
	// AckWait is how long a message may go without news before the queue
	// gives it to another instance.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message, after which it becomes
	// a dead letter.
	MaxDeliver int
	// MaxAckPending bounds the messages handed out and not yet answered.
	MaxAckPending int
}

// OutboxConsumer takes messages from the outbox, one at a time.
type OutboxConsumer struct {
	cons jetstream.Consumer
}

// OutboxConsumer creates or updates the durable outbox consumer. It has
// explicit acks and no BackOff: the server adds BackOff[n]-AckWait to every
// NakWithDelay (nats-server consumer.go processNak/checkPending), which
// would stretch the caller's own retry schedule.
func (c *Conn) OutboxConsumer(ctx context.Context, cfg OutboxConsumerConfig) (*OutboxConsumer, error) {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, StreamOutbox, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   cfg.Description,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
	})
	if err != nil {
		return nil, err
	}
	return &OutboxConsumer{cons: cons}, nil
}

// Fetch pulls one message, waiting for it until ctx ends. The pull's own
// failure is its error; what happened after it was made is the fetch's Err.
func (oc *OutboxConsumer) Fetch(ctx context.Context) (*OutboxFetch, error) {
	b, err := oc.cons.Fetch(1, jetstream.FetchContext(ctx))
	if err != nil {
		return nil, err
	}
	return &OutboxFetch{b: b}, nil
}

// OutboxFetch is one pull's messages.
type OutboxFetch struct {
	b jetstream.MessageBatch
}

// Messages yields the messages as they come, until the pull ends.
func (f *OutboxFetch) Messages() iter.Seq[*OutboxMsg] {
	return func(yield func(*OutboxMsg) bool) {
		for m := range f.b.Messages() {
			if !yield(&OutboxMsg{m: m}) {
				return
			}
		}
	}
}

// Err is what ended the pull after Messages, nil when it simply found
// no message.
func (f *OutboxFetch) Err() error {
	if err := f.b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return err
	}
	return nil
}

// OutboxMsg is one outbox message in hand: it must be answered with Ack,
// NakWithDelay or TermWithReason.
type OutboxMsg struct {
	m jetstream.Msg
}

// OutboxMeta is where an outbox message stands.
type OutboxMeta struct {
	// NumDelivered counts its deliveries, this one included.
	NumDelivered uint64
	// StreamSeq is its sequence in the outbox.
	StreamSeq uint64
	// Timestamp is when it entered the outbox.
	Timestamp time.Time
}

// Metadata returns where the message stands.
func (m *OutboxMsg) Metadata() (*OutboxMeta, error) {
	md, err := m.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &OutboxMeta{NumDelivered: md.NumDelivered, StreamSeq: md.Sequence.Stream, Timestamp: md.Timestamp}, nil
}

// Data is the message as stored.
func (m *OutboxMsg) Data() []byte { return m.m.Data() }

// Subject is the message's subject, outbox.<kind>.
func (m *OutboxMsg) Subject() string { return m.m.Subject() }

// InProgress tells the queue the message is still in hand, so that its
// ack wait starts again.
func (m *OutboxMsg) InProgress() error { return m.m.InProgress() }

// Ack confirms the message, waiting for the server's answer so that a lost
// ack is seen.
func (m *OutboxMsg) Ack(ctx context.Context) error { return m.m.DoubleAck(ctx) }

// NakWithDelay gives the message back, to be delivered again after d.
func (m *OutboxMsg) NakWithDelay(d time.Duration) error { return m.m.NakWithDelay(d) }

// Term ends the message's deliveries.
func (m *OutboxMsg) Term() error { return m.m.Term() }

// TermWithReason ends the message's deliveries with a reason, which puts
// an advisory in the DEADLETTER stream.
func (m *OutboxMsg) TermWithReason(reason string) error { return m.m.TermWithReason(reason) }
