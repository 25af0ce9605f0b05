package intake

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/buildmarkets/keydesk"
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
	Ref         string   `json:"ref"` // queue.MailRef of its source key; the raw mail is stored under it
	Outcome     string   `json:"outcome"`
	Disposition string   `json:"disposition"`
	Reason      string   `json:"reason,omitempty"`
	Mailbox     string   `json:"mailbox"`
	UIDValidity uint32   `json:"uidvalidity"`
	UID         uint32   `json:"uid"`
	MessageID   string   `json:"message_id,omitempty"`
	From        string   `json:"from,omitempty"`
	Subject     string   `json:"subject,omitempty"`
	Size        int64    `json:"size"`
	Stored      bool     `json:"stored"` // the raw mail is in the object store
	Requests    []string `json:"requests,omitempty"`
	Reply       string   `json:"reply,omitempty"` // the outbox message ID
	// Conversation are the outbox IDs of what the email got as part of a
	// conversation: a status reply, a received notice, an alert to support.
	Conversation []string  `json:"conversation,omitempty"`
	At           time.Time `json:"at"`
}

// LeaseName is the lease one poller of mailbox holds across instances.
func LeaseName(mailbox string) string { return "intake." + queue.KeyToken(mailbox) }

// mailboxes and records are the intake bucket's mailbox.* and mail.* keys.
func mailboxes(q queue.Buckets) *queue.Bucket[MailboxState] {
	return queue.NewBucket[MailboxState](q, queue.BucketIntake)
}

func records(q queue.Buckets) *queue.Bucket[Record] {
	return queue.NewBucket[Record](q, queue.BucketIntake)
}

func loadMailboxState(ctx context.Context, b *queue.Bucket[MailboxState], mailbox string) (*MailboxState, error) {
	st, _, err := b.Get(ctx, prefixMailbox+queue.KeyToken(mailbox))
	var de *queue.DecodeError
	switch {
	case errors.Is(err, keydesk.ErrNotFound):
		return nil, nil
	case errors.As(err, &de):
		return nil, fmt.Errorf("intake: decode state of %s: %w", mailbox, de.Err)
	case err != nil:
		return nil, fmt.Errorf("intake: read state of %s: %w", mailbox, err)
	}
	return st, nil
}

func saveMailboxState(ctx context.Context, b *queue.Bucket[MailboxState], st *MailboxState) error {
	if _, err := b.Put(ctx, prefixMailbox+queue.KeyToken(st.Mailbox), st); err != nil {
		return fmt.Errorf("intake: save state of %s: %w", st.Mailbox, err)
	}
	return nil
}

func saveRecord(ctx context.Context, b *queue.Bucket[Record], r *Record) error {
	if _, err := b.Put(ctx, prefixMail+r.Ref, r); err != nil {
		return fmt.Errorf("intake: save record of %s: %w", r.Ref, err)
	}
	return nil
}

// GetRecord returns the intake record of one email by its mail ref.
func GetRecord(ctx context.Context, q queue.Buckets, ref string) (*Record, error) {
	r, _, err := records(q).Get(ctx, prefixMail+ref)
	var de *queue.DecodeError
	if errors.As(err, &de) {
		return nil, fmt.Errorf("intake: decode record %s: %w", ref, de.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("intake: record %s: %w", ref, err)
	}
	return r, nil
}

// Records returns every intake record (for the review queue's "set aside"
// view and for tests), in no particular order.
func Records(ctx context.Context, q queue.Buckets) ([]*Record, error) {
	entries, err := records(q).Scan(ctx, prefixMail)
	if err != nil {
		return nil, fmt.Errorf("intake: list records: %w", err)
	}
	out := make([]*Record, 0, len(entries))
	for _, e := range entries {
		if e.Err != nil {
			return nil, fmt.Errorf("intake: decode record %s: %w", e.Key, errors.Unwrap(e.Err))
		}
		out = append(out, e.Value)
	}
	return out, nil
}
