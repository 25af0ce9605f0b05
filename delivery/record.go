package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// state is where a message stands in the deliveries bucket.
type state string

const (
	stateSending  state = "sending"  // claimed; the SMTP dialogue may have reached the server
	stateSent     state = "sent"     // the server accepted it
	stateRetrying state = "retrying" // a temporary failure; the queue redelivers it later
	stateFailed   state = "failed"   // refused for good, or out of time; in the dead letters
	stateDropped  state = "dropped"  // a stale key delivery, never sent
)

// record is one outbox message's sending history.
type record struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	State     state     `json:"state"`
	MessageID string    `json:"message_id,omitempty"`
	Delivery  uint64    `json:"delivery"` // the queue's delivery count when written
	Holder    string    `json:"holder,omitempty"`
	At        time.Time `json:"at"`
	Reply     string    `json:"reply,omitempty"`
}

// recordKey is the deliveries key of an outbox ID.
func recordKey(id string) string { return "msg." + safeID(id) }

// deadKey is the deliveries key of a dead letter's original, by the OUTBOX
// sequence it had (a terminated message leaves the work queue).
func deadKey(streamSeq uint64) string { return fmt.Sprintf("dead.%d", streamSeq) }

// deadRecord keeps a terminated outbox message, so it can be listed and
// sent again.
type deadRecord struct {
	StreamSeq uint64          `json:"stream_seq"`
	Subject   string          `json:"subject"`
	Reason    string          `json:"reason"`
	At        time.Time       `json:"at"`
	Data      json.RawMessage `json:"data"`
}

var errClaimed = errors.New("delivery: another instance is handling this message")

// records is the deliveries bucket's msg.* keys; deadRecords its dead.* keys.
func records(q queue.Buckets) *queue.Bucket[record] {
	return queue.NewBucket[record](q, queue.BucketDeliveries)
}

func deadRecords(q queue.Buckets) *queue.Bucket[deadRecord] {
	return queue.NewBucket[deadRecord](q, queue.BucketDeliveries)
}

func getRecord(ctx context.Context, b *queue.Bucket[record], key string) (*record, uint64, error) {
	r, rev, err := b.Get(ctx, key)
	var de *queue.DecodeError
	switch {
	case errors.Is(err, keydesk.ErrNotFound):
		return nil, 0, nil
	case errors.As(err, &de):
		return nil, 0, fmt.Errorf("delivery: decode record %s: %w", key, de.Err)
	case err != nil:
		return nil, 0, fmt.Errorf("delivery: read record %s: %w", key, err)
	}
	return r, rev, nil
}

// putRecord creates (rev 0) or updates the record with a compare-and-set.
func putRecord(ctx context.Context, b *queue.Bucket[record], key string, r *record, rev uint64) (uint64, error) {
	var nrev uint64
	var err error
	if rev == 0 {
		nrev, err = b.Create(ctx, key, r)
	} else {
		nrev, err = b.Update(ctx, key, r, rev)
	}
	if errors.Is(err, keydesk.ErrConflict) {
		return 0, errClaimed
	}
	if err != nil {
		return 0, fmt.Errorf("delivery: write record %s: %w", key, err)
	}
	return nrev, nil
}
