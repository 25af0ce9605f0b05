package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
	if _, err := c.JS.Publish(ctx, SubjectOutbox+"."+string(m.Kind), data, jetstream.WithMsgID(m.ID)); err != nil {
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
