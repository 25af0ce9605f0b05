package intake

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/templates"
)

// ParseOptions configure NewParseHandler.
type ParseOptions struct {
	// Registry returns the partner registry in force (it is reloaded on
	// SIGHUP, so it is asked for each email).
	Registry func() *keydesk.Registry
	// Parse holds the sender policy and limits; Registry and ReceivedAt
	// are filled per email.
	Parse parse.Options
	// Reply builds the acknowledgement or rejection for a result (nil: no
	// reply due). Nil sends no replies at all.
	Reply func(res *parse.Result) (*keydesk.Outgoing, error)

	// Threads, if set, keeps conversations: an email that answers a
	// request of its own partner joins that request's thread instead of
	// making a new request (a correction, a status question), every email
	// that makes or joins a request is added to its thread, and new
	// requests that repeat an open one are flagged duplicate. Nil: every
	// email is a new one, as before conversations.
	Threads Threads
	// Keys reads the partners' key inventories, to resolve the keys an
	// email asks to revoke or rotate. Nil: Threads, when it reads them
	// too (*queue.Conn does); else every such request waits for a
	// person with NotListedWarning.
	Keys KeyInventory
	// Templates render the status replies, received notices, correction
	// acknowledgements and alerts of conversations; nil sends none.
	Templates *templates.Set
	// SupportAddress receives the alerts about replies a person must
	// handle (smtp.support_address); empty sends none.
	SupportAddress string
	// NextBatch says when the next batch runs (zero: not known), for the
	// status reply of an approved request.
	NextBatch func() time.Time
	// Now is the clock of status-reply limits and thread entries.
	// Default time.Now.
	Now func() time.Time
	// Actor names intake in audit events. Default "intake".
	Actor string
	// Log receives what conversations do. Default: discarded.
	Log *slog.Logger
}

// NewParseHandler returns the Handler keydesk runs: the email parser and
// the reply builder, and, with Threads, the conversations.
func NewParseHandler(o ParseOptions) Handler {
	return &parseHandler{o: o}
}

type parseHandler struct{ o ParseOptions }

func (h *parseHandler) now() time.Time {
	if h.o.Now != nil {
		return h.o.Now()
	}
	return time.Now()
}

func (h *parseHandler) actor() string {
	if h.o.Actor != "" {
		return h.o.Actor
	}
	return "intake"
}

func (h *parseHandler) log() *slog.Logger {
	if h.o.Log != nil {
		return h.o.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (h *parseHandler) Handle(ctx context.Context, m *Message) (*Decision, error) {
	res, key, err := h.read(m)
	if err != nil {
		return nil, err
	}
	var t thread
	// Auto-replies, bounces and keydesk's own mail (Ignore) join nothing
	// and get nothing.
	if h.o.Threads != nil && res.Verdict != parse.Ignore {
		var dec *Decision
		if dec, t, err = h.converse(ctx, res, key); dec != nil || err != nil {
			return dec, err
		}
	}
	if err := h.resolveKeys(ctx, res); err != nil {
		return nil, err
	}
	if h.o.Threads != nil && res.Verdict != parse.Ignore {
		if err := h.markDuplicates(ctx, res.Requests); err != nil {
			return nil, fmt.Errorf("intake: duplicates: %w: %w", ErrTemporary, err)
		}
	}
	return h.decide(res, key, t), nil
}

// read parses the spooled email and returns what it says with the source
// key its requests derive from.
func (h *parseHandler) read(m *Message) (*parse.Result, string, error) {
	r, err := m.Open()
	if err != nil {
		return nil, "", fmt.Errorf("intake: open spooled email: %w: %w", ErrTemporary, err)
	}
	defer r.Close()
	po := h.o.Parse
	if h.o.Registry != nil {
		po.Registry = h.o.Registry()
	}
	po.ReceivedAt = m.InternalDate
	res, err := parse.Parse(r, po)
	if err != nil {
		// Parse fails only when reading fails, and this is a local file.
		return nil, "", fmt.Errorf("intake: %w: %w", ErrTemporary, err)
	}
	key := res.SourceKey
	if key == "" {
		// Some verdicts (ignore) may carry no key: derive the same one.
		key = strings.ToLower(strings.TrimSpace(res.From)) + "\x00sha256:" + m.Digest
		if res.MessageID != "" {
			key = keydesk.SourceKey(res.From, res.MessageID, nil)
		}
	}
	return res, key, nil
}

// converse places the email in the conversation: a rotation's
// confirmation or a reply that joins its thread is decided here (dec);
// otherwise it says which threads the email names (t) and leaves the
// email to be decided as new.
func (h *parseHandler) converse(ctx context.Context, res *parse.Result, key string) (dec *Decision, t thread, err error) {
	if res.Confirms {
		rs, err := h.rotations(ctx, res)
		if err != nil {
			return nil, t, fmt.Errorf("intake: rotation: %w: %w", ErrTemporary, err)
		}
		if len(rs) > 0 {
			return h.confirm(res, key, rs), t, nil
		}
	}
	if t, err = h.resolve(ctx, res); err != nil {
		return nil, t, fmt.Errorf("intake: thread: %w: %w", ErrTemporary, err)
	}
	// A reply that asks to revoke or rotate keys makes requests of its
	// own: joining the thread would lose the ask.
	if len(t.joined) > 0 && len(res.KeyAsks) == 0 {
		dec := h.reply(res, key, t.joined)
		describeSender(dec, res)
		return dec, t, nil
	}
	if len(t.foreign) > 0 {
		// Named requests that are not the sender's: a new email from its
		// sender, and nothing of those requests in what it gets.
		for _, q := range res.Requests {
			q.Warnings = append(q.Warnings, "the email names request "+strings.Join(t.foreign, ", ")+", which is not its sender's partner's: it was treated as a new email")
		}
	}
	return nil, t, nil
}

// decide is the decision on a new email: its requests, the reply it
// gets and, in a conversation, the threads it starts.
func (h *parseHandler) decide(res *parse.Result, key string, t thread) *Decision {
	dec := &Decision{
		Outcome: string(res.Verdict), Disposition: Processed, SourceKey: key,
		MessageID: res.MessageID, From: res.From, Subject: res.Subject, Requests: res.Requests,
	}
	if res.Verdict == parse.Reject {
		dec.Disposition = Rejected
	}
	describeSender(dec, res)
	var why []string
	for _, rs := range res.Reasons {
		why = append(why, rs.Message)
	}
	dec.Reason = strings.Join(why, " ")
	answered := *res
	answered.Subject = scrub(res.Subject, t.foreign)
	if h.o.Reply != nil {
		dec.BuildReply = func(stored []*keydesk.Request) (*keydesk.Outgoing, error) {
			r := answered
			r.Requests = stored
			return h.o.Reply(&r)
		}
	}
	if h.o.Threads != nil && res.Verdict != parse.Ignore {
		dec.Converse = func(ctx context.Context, stored []*keydesk.Request, mailRef string) ([]*keydesk.Outgoing, error) {
			return h.newEmail(ctx, &answered, key, stored, mailRef, len(t.foreign) > 0)
		}
	}
	return dec
}

// newEmail starts the threads of the requests a new email made: its
// Message-ID indexed to them, the email as their first entry, each held
// as the open request of its partner, environment and label. An
// authenticated partner whose email waits for a person hears that it
// was received, unless it named another partner's request.
func (h *parseHandler) newEmail(ctx context.Context, res *parse.Result, key string, stored []*keydesk.Request, mailRef string, foreign bool) ([]*keydesk.Outgoing, error) {
	if len(stored) == 0 {
		return nil, nil
	}
	var ids []string
	for _, r := range stored {
		ids = append(ids, r.ID)
	}
	q := h.o.Threads
	if err := q.IndexMessage(ctx, res.MessageID, ids...); err != nil {
		return nil, err
	}
	for _, id := range ids {
		e := keydesk.ThreadEntry{ID: keydesk.EntryID(key), RequestID: id, At: res.Date.UTC(), Kind: keydesk.ThreadEmailIn,
			From: res.From, Subject: res.Subject, MessageID: res.MessageID, Text: res.Text, MailRef: mailRef}
		if _, err := q.AppendThread(ctx, e); err != nil {
			return nil, err
		}
	}
	if err := h.claimDuplicates(ctx, stored); err != nil {
		return nil, err
	}
	if res.Verdict != parse.Review || !res.Authenticated || foreign || h.o.Templates == nil {
		return nil, nil
	}
	out, err := reply.Received(res, stored, h.o.Templates)
	if err != nil {
		return nil, err
	}
	return []*keydesk.Outgoing{out}, nil
}

// scrub takes the request IDs that are not the sender's out of a subject
// that goes back to them: a reply echoes nothing of another partner's
// request, not even its ID.
func scrub(subject string, foreign []string) string {
	if len(foreign) == 0 {
		return subject
	}
	return requestIDRE.ReplaceAllStringFunc(subject, func(id string) string {
		if slices.Contains(foreign, strings.ToUpper(id)) {
			return "(request)"
		}
		return id
	})
}

var requestIDRE = regexp.MustCompile(`(?i)\bKR-[0-9]{8}-[0-9A-Z]{4}\b`)
