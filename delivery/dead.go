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
	info, err := q.StreamInfo(ctx, queue.StreamDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("delivery: dead letters: %w", err)
	}
	var out []DeadLetter
	if info.Msgs == 0 {
		return out, nil
	}
	first := info.FirstSeq
	if info.LastSeq >= maxDeadListed && info.LastSeq-maxDeadListed+1 > first {
		first = info.LastSeq - maxDeadListed + 1
	}
	for seq := first; seq <= info.LastSeq; seq++ {
		dl, err := deadLetter(ctx, q, seq)
		if errors.Is(err, keydesk.ErrNotFound) {
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

func deadLetter(ctx context.Context, q *queue.Conn, seq uint64) (*deadEntry, error) {
	m, err := q.StreamMsg(ctx, queue.StreamDeadLetter, seq)
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
	dr, _, err := deadRecords(q).Get(ctx, deadKey(a.StreamSeq))
	var de *queue.DecodeError
	switch {
	case err == nil:
		e.subject, e.data = dr.Subject, dr.Data
		if dr.Reason != "" {
			e.Why = dr.Reason // the whole reason; the advisory's is cut short
		}
	case errors.As(err, &de):
		// Kept, but unreadable: neither it nor the outbox has the original.
	default:
		if om, err := q.StreamMsg(ctx, queue.StreamOutbox, a.StreamSeq); err == nil {
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
	e, err := deadLetter(ctx, q, seq)
	if errors.Is(err, keydesk.ErrNotFound) {
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
	recs := records(q)
	rec, _, err := getRecord(ctx, recs, recordKey(o.ID))
	if err != nil {
		return nil, err
	}
	if rec != nil && rec.State == stateSent {
		return nil, fmt.Errorf("delivery: %s was sent already (%s): not sending it twice", o.ID, rec.At.Format(time.RFC3339))
	}
	if rec != nil {
		if err := recs.Delete(ctx, recordKey(o.ID), 0); err != nil {
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
	if err := q.EnqueueRaw(ctx, subject, data, o.ID+".retry."+strconv.FormatUint(seq, 10)); err != nil {
		return nil, fmt.Errorf("delivery: re-enqueue %s: %w", o.ID, err)
	}
	if e.inQueue {
		if err := q.DeleteStreamMsg(ctx, queue.StreamOutbox, e.StreamSeq); err != nil && !errors.Is(err, keydesk.ErrNotFound) {
			return nil, fmt.Errorf("delivery: remove the exhausted original %d: %w", e.StreamSeq, err)
		}
	}
	if err := deadRecords(q).Delete(ctx, deadKey(e.StreamSeq), 0); err != nil && !errors.Is(err, keydesk.ErrNotFound) {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	if err := q.DeleteStreamMsg(ctx, queue.StreamDeadLetter, seq); err != nil && !errors.Is(err, keydesk.ErrNotFound) {
		return nil, fmt.Errorf("delivery: remove dead letter %d: %w", seq, err)
	}
	return o, nil
}
