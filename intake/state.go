package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/buildmarkets/keydesk/queue"
)

// Keys in the intake bucket (queue.BucketIntake):
//
//	mailbox.<name>  MailboxState: the UIDVALIDITY last seen
//	mail.<ref>      Record: what became of one email (ref = queue.MailRef)
//	attempts.<name> queue.Attempts: attempts at its emails that did not end
const (
	prefixMailbox = "mailbox."
	prefixMail    = "mail."
)

// MailboxState is what the poller remembers of a mailbox.
type MailboxState struct {
	Mailbox     string    `json:"mailbox"`
	UIDValidity uint32    `json:"uidvalidity"`
	SeenAt      time.Time `json:"seen_at"`
}

// Record is what became of one email: written before the email leaves the
// inbox, so that support can see why a message was set aside even when it
// made no request.
type Record struct {
	Ref         string    `json:"ref"` // queue.MailRef of its source key; the raw mail is stored under it
	Outcome     string    `json:"outcome"`
	Disposition string    `json:"disposition"`
	Reason      string    `json:"reason,omitempty"`
	Mailbox     string    `json:"mailbox"`
	UIDValidity uint32    `json:"uidvalidity"`
	UID         uint32    `json:"uid"`
	MessageID   string    `json:"message_id,omitempty"`
	From        string    `json:"from,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	Size        int64     `json:"size"`
	Stored      bool      `json:"stored"` // the raw mail is in the object store
	Requests    []string  `json:"requests,omitempty"`
	Reply       string    `json:"reply,omitempty"` // the outbox message ID
	At          time.Time `json:"at"`
}

// LeaseName is the lease one poller of mailbox holds across instances.
func LeaseName(mailbox string) string { return "intake." + queue.KeyToken(mailbox) }

func loadMailboxState(ctx context.Context, kv jetstream.KeyValue, mailbox string) (*MailboxState, error) {
	e, err := kv.Get(ctx, prefixMailbox+queue.KeyToken(mailbox))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil, nil
		}
		return nil, fmt.Errorf("intake: read state of %s: %w", mailbox, err)
	}
	var st MailboxState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("intake: decode state of %s: %w", mailbox, err)
	}
	return &st, nil
}

func saveMailboxState(ctx context.Context, kv jetstream.KeyValue, st *MailboxState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, prefixMailbox+queue.KeyToken(st.Mailbox), data); err != nil {
		return fmt.Errorf("intake: save state of %s: %w", st.Mailbox, err)
	}
	return nil
}

func saveRecord(ctx context.Context, kv jetstream.KeyValue, r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, prefixMail+r.Ref, data); err != nil {
		return fmt.Errorf("intake: save record of %s: %w", r.Ref, err)
	}
	return nil
}

// GetRecord returns the intake record of one email by its mail ref.
func GetRecord(ctx context.Context, kv jetstream.KeyValue, ref string) (*Record, error) {
	e, err := kv.Get(ctx, prefixMail+ref)
	if err != nil {
		return nil, fmt.Errorf("intake: record %s: %w", ref, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, fmt.Errorf("intake: decode record %s: %w", ref, err)
	}
	return &r, nil
}

// Records returns every intake record (for the review queue's "set aside"
// view and for tests), in no particular order.
func Records(ctx context.Context, kv jetstream.KeyValue) ([]*Record, error) {
	w, err := kv.Watch(ctx, prefixMail+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("intake: list records: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []*Record
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("intake: list records: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("intake: list records: watcher closed")
			}
			if e == nil {
				return out, nil
			}
			var r Record
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				return nil, fmt.Errorf("intake: decode record %s: %w", e.Key(), err)
			}
			out = append(out, &r)
		}
	}
}
