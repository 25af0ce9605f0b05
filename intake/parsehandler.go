package intake

import (
	"context"
	"fmt"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
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
}

// NewParseHandler returns the Handler keydesk runs: the email parser and
// the reply builder.
func NewParseHandler(o ParseOptions) Handler {
	return &parseHandler{o: o}
}

type parseHandler struct{ o ParseOptions }

func (h *parseHandler) Handle(ctx context.Context, m *Message) (*Decision, error) {
	r, err := m.Open()
	if err != nil {
		return nil, fmt.Errorf("intake: open spooled email: %w: %w", ErrTemporary, err)
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
		return nil, fmt.Errorf("intake: %w: %w", ErrTemporary, err)
	}
	key := res.SourceKey
	if key == "" {
		// Some verdicts (ignore) may carry no key: derive the same one.
		key = strings.ToLower(strings.TrimSpace(res.From)) + "\x00sha256:" + m.Digest
		if res.MessageID != "" {
			key = keydesk.SourceKey(res.From, res.MessageID, nil)
		}
	}
	dec := &Decision{
		Outcome: string(res.Verdict), Disposition: Processed, SourceKey: key,
		MessageID: res.MessageID, From: res.From, Subject: res.Subject, Requests: res.Requests,
	}
	if res.Verdict == parse.Reject {
		dec.Disposition = Rejected
	}
	var why []string
	for _, rs := range res.Reasons {
		why = append(why, rs.Message)
	}
	dec.Reason = strings.Join(why, " ")
	if h.o.Reply != nil {
		dec.BuildReply = func(stored []*keydesk.Request) (*keydesk.Outgoing, error) {
			r := *res
			r.Requests = stored
			return h.o.Reply(&r)
		}
	}
	return dec, nil
}
