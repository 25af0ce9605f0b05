package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/nats-io/nats.go/jetstream"
)

// maxDeadListed bounds DeadLetters: the newest ones are listed.
const maxDeadListed = 1000

// DeadLetter is an outbox message that will not be sent without help: it
// was refused for good, ran out of time, or ran out of deliveries.
type DeadLetter struct {
	// Seq is its DEADLETTER sequence: what `keydesk outbox retry` takes.
	Seq        uint64    `json:"seq"`
	At         time.Time `json:"at"`
	Why        string    `json:"why"`
	StreamSeq  uint64    `json:"outbox_seq"`
	Deliveries uint64    `json:"deliveries"`
	// From the original message, when it is still kept.
	ID        string              `json:"id,omitempty"`
	Kind      keydesk.MessageKind `json:"kind,omitempty"`
	RequestID string              `json:"request_id,omitempty"`
	To        []string            `json:"to,omitempty"`
	Subject   string              `json:"subject,omitempty"`
	Found     bool                `json:"found"`
}

// advisory is the part of JetStream's MAX_DELIVERIES and MSG_TERMINATED
// advisories that matters here.
type advisory struct {
	Type       string    `json:"type"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"`
}

// DeadLetters lists the dead letters, oldest first (at most the newest 1000).
func DeadLetters(ctx context.Context, q *queue.Conn) ([]DeadLetter, error) {
	st, err := q.JS.Stream(ctx, queue.StreamDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("delivery: dead letters: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("delivery: dead letters: %w", err)
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	first := info.State.FirstSeq
	if info.State.LastSeq >= maxDeadListed && info.State.LastSeq-maxDeadListed+1 > first {
		first = info.State.LastSeq - maxDeadListed + 1
	}
	for seq := first; seq <= info.State.LastSeq; seq++ {
		dl, err := deadLetter(ctx, q, st, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // retried, or removed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, dl.DeadLetter)
	}
	return out, nil
}

// deadEntry is a dead letter with what Retry needs.
type deadEntry struct {
	DeadLetter
	subject string
	data    []byte
	inQueue bool // the original is still in OUTBOX (ran out of deliveries)
}

func deadLetter(ctx context.Context, q *queue.Conn, st jetstream.Stream, seq uint64) (*deadEntry, error) {
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, err
	}
	var a advisory
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return nil, fmt.Errorf("delivery: dead letter %d: %w", seq, err)
	}
	e := &deadEntry{DeadLetter: DeadLetter{Seq: seq, At: a.Time, StreamSeq: a.StreamSeq, Deliveries: a.Deliveries}}
	if a.Reason != "" {
		e.Why = a.Reason
	} else {
		e.Why = "no success in " + strconv.FormatUint(a.Deliveries, 10) + " deliveries"
	}
	kv := q.KV(queue.BucketDeliveries)
	if ent, err := kv.Get(ctx, deadKey(a.StreamSeq)); err == nil {
		var dr deadRecord
		if json.Unmarshal(ent.Value(), &dr) == nil {
			e.subject, e.data = dr.Subject, dr.Data
			if dr.Reason != "" {
				e.Why = dr.Reason // the whole reason; the advisory's is cut short
			}
		}
	} else if ob, err := q.JS.Stream(ctx, queue.StreamOutbox); err == nil {
		if om, err := ob.GetMsg(ctx, a.StreamSeq); err == nil {
			e.subject, e.data, e.inQueue = om.Subject, om.Data, true
		}
	}
	if e.data != nil {
		if o, err := queue.DecodeOutgoing(e.data); err == nil && o.ID != "" {
			e.Found = true
			e.ID, e.Kind, e.RequestID, e.To, e.Subject = o.ID, o.Kind, o.RequestID, o.To, o.Subject
		}
	}
	return e, nil
}

// Retry puts dead letter seq back in the outbox, with a fresh
// delivery.retry_for period, and removes it from the dead letters. A key
// delivery whose request has moved on (delivery_failed, revoked) will be
// dropped as stale: retry the request instead, so a new key is made.
func Retry(ctx context.Context, q *queue.Conn, seq uint64) (*keydesk.Outgoing, error) {
	st, err := q.JS.Stream(ctx, queue.StreamDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("delivery: dead letters: %w", err)
	}
	e, err := deadLetter(ctx, q, st, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("delivery: no dead letter %d ('keydesk outbox dead' lists them)", seq)
	}
	if err != nil {
		return nil, err
	}
	if !e.Found {
		return nil, fmt.Errorf("delivery: dead letter %d: its original message is not kept or cannot be read; it cannot be retried", seq)
	}
	o, err := queue.DecodeOutgoing(e.data)
	if err != nil {
		return nil, err
	}
	kv := q.KV(queue.BucketDeliveries)
	rec, _, err := getRecord(ctx, kv, recordKey(o.ID))
	if err != nil {
		return nil, err
	}
	if rec != nil && rec.State == stateSent {
		return nil, fmt.Errorf("delivery: %s was sent already (%s): not sending it twice", o.ID, rec.At.Format(time.RFC3339))
	}
	if rec != nil {
		if err := kv.Delete(ctx, recordKey(o.ID)); err != nil {
			return nil, fmt.Errorf("delivery: reset %s: %w", o.ID, err)
		}
	}
	o.CreatedAt = q.Now().UTC()
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	subject := e.subject
	if subject == "" {
		subject = queue.SubjectOutbox + "." + string(o.Kind)
	}
	// Its own message ID, so the outbox's deduplication of the original ID
	// does not swallow it, and a repeated Retry does.
	if _, err := q.JS.Publish(ctx, subject, data, jetstream.WithMsgID(o.ID+".retry."+strconv.FormatUint(seq, 10))); err != nil {
		return nil, fmt.Errorf("delivery: re-enqueue %s: %w", o.ID, err)
	}
	if e.inQueue {
		ob, err := q.JS.Stream(ctx, queue.StreamOutbox)
		if err == nil {
			err = ob.DeleteMsg(ctx, e.StreamSeq)
		}
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("delivery: remove the exhausted original %d: %w", e.StreamSeq, err)
		}
	}
	if err := kv.Delete(ctx, deadKey(e.StreamSeq)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("delivery: remove dead letter %d: %w", seq, err)
	}
	return o, nil
}
