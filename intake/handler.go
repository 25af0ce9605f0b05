package intake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/buildmarkets/keydesk"
)

// Handler decides what one email becomes. It reads the message, makes no
// change anywhere: the poller stores what it returns and only then moves
// the email out of the inbox. Handle is called for several emails at once.
type Handler interface {
	Handle(ctx context.Context, m *Message) (*Decision, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) (*Decision, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) (*Decision, error) { return f(ctx, m) }

// Message is one email as the poller hands it to the Handler: spooled to a
// private file, so that it can be read as often as needed without holding
// it in memory.
type Message struct {
	// Mailbox, UIDValidity and UID say where it was read.
	Mailbox     string
	UIDValidity uint32
	UID         uint32
	// Size is its size in bytes; InternalDate when the server received it.
	Size         int64
	InternalDate time.Time
	// Digest is the hex SHA-256 of the raw message.
	Digest string

	open func() (io.ReadCloser, error)
}

// Open returns a new reader of the raw message; the caller closes it.
func (m *Message) Open() (io.ReadCloser, error) { return m.open() }

// Disposition is where an email goes once its records are stored.
type Disposition string

const (
	// Processed: its requests are queued (or it needs nothing): moved to
	// processed_mailbox.
	Processed Disposition = "processed"
	// Rejected: it was set aside (rejected, malformed, too large): moved
	// to rejected_mailbox.
	Rejected Disposition = "rejected"
)

// Decision is what the Handler made of an email.
type Decision struct {
	// Outcome names it for metrics and the intake record: accept, reject,
	// review, ignore, malformed, too-large, poison, reply (it joined a
	// request's conversation and made no request).
	Outcome string
	// Disposition says which mailbox it goes to.
	Disposition Disposition
	// SourceKey identifies the email (keydesk.SourceKey); it names the
	// stored raw mail and the intake record, so it must be stable.
	SourceKey string
	// MessageID, From and Subject describe it in the intake record.
	MessageID, From, Subject string
	// Requests are created in the queue (idempotently, by source). Their
	// IDs are derived by the queue from SourceDate, SourceKey and Index; an
	// ID set here is dropped.
	Requests []*keydesk.Request
	// Reply, if not nil, is put in the outbox; its ID must be stable.
	Reply *keydesk.Outgoing
	// BuildReply, if set, is used instead of Reply: it is called with the
	// requests as stored, so the reply quotes the IDs they were given (the
	// queue salts an ID that collides with another email's). A failure is
	// recorded and sends nothing: the requests are stored already.
	BuildReply func(stored []*keydesk.Request) (*keydesk.Outgoing, error)
	// Converse, if set, runs after the requests are created and the raw
	// mail stored (mailRef: its queue.MailRef, "" when it was not
	// stored), with the requests as stored: it adds the email to the
	// conversations it belongs to and returns the emails to queue. It
	// must be idempotent (the same email read again after a crash changes
	// nothing twice; each email it returns has a stable ID). An error
	// leaves the email in the inbox, to be tried again.
	Converse func(ctx context.Context, stored []*keydesk.Request, mailRef string) ([]*keydesk.Outgoing, error)
	// Reason says, for a person, why it was set aside or ignored.
	Reason string
	// Partner is the partner the email comes from when its sender is an
	// authenticated requester of it or a Relationship Manager forwarded
	// it: where a key ID the email names is looked up. Empty: unknown.
	Partner string
	// Requester is the authenticated sender, who is told when the email
	// exposed a secret; empty: nobody is told but support.
	Requester string
	// Date is when the email was written (its Date header); zero: unknown.
	Date time.Time
}

// ErrTemporary marks a Handler error as passing: the email stays in the
// inbox and is tried again. Any other Handler error (and a panic) marks the
// email as one that cannot be read: it is set aside with the reason.
var ErrTemporary = errors.New("intake: temporary failure")

// PanicError is a Handler panic, recovered.
type PanicError struct {
	Value any
}

func (e *PanicError) Error() string { return fmt.Sprintf("intake: handler panicked: %v", e.Value) }
