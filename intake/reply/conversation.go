package reply

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/templates"
)

// valueWidth is the longest value that fits after its field name on a
// 72-column line; a longer one goes on a line of its own.
const valueWidth = 72 - len("  Environment: ")

// StatusLine is one request as the status reply shows it.
type StatusLine struct {
	ID, Environment, Scopes, Label string
	LongScopes, LongLabel          bool
	// State is where it stands, in words; Next what happens next, one
	// paragraph wrapped at 70 columns.
	State, Next string
	// NextBatch is when the next batch runs, for an approved request
	// only: for any other it is not when its key is made.
	NextBatch time.Time
}

// StatusData is what templates/mail/status-reply.tmpl gets.
type StatusData struct {
	Subject  string
	Requests []StatusLine
	Plural   bool
}

// ReceivedData is what templates/mail/received.tmpl gets.
type ReceivedData struct {
	Subject string
	IDs     []string
	Plural  bool
}

// CorrectionData is what templates/mail/correction-received.tmpl gets.
type CorrectionData struct {
	Subject     string
	ID          string
	Changes     []keydesk.FieldChange
	WasApproved bool
}

// answer is the outgoing skeleton of an email that answers r's email
// about requests: to its authenticated sender, in its thread.
func answer(r *parse.Result, id string, kind keydesk.MessageKind, requests []string) (*keydesk.Outgoing, error) {
	if r == nil || !r.Authenticated || r.From == "" || r.Partner == nil {
		return nil, errors.New("reply: no authenticated sender to answer")
	}
	out := &keydesk.Outgoing{
		ID: id, Kind: kind, Partner: r.Partner.ID, To: []string{r.From},
		InReplyTo: r.MessageID, References: threadRefs(r),
	}
	if len(requests) > 0 {
		out.RequestID = requests[0]
	}
	if len(requests) > 1 {
		out.Thread = slices.Clone(requests)
	}
	return out, nil
}

// threadRefs is the thread before the email answered: its References
// and In-Reply-To, as parse bounded them.
func threadRefs(r *parse.Result) []string {
	refs := slices.Clone(r.References)
	for _, id := range r.InReplyTo {
		if !slices.Contains(refs, id) {
			refs = append(refs, id)
		}
	}
	return refs
}

// Status returns the automatic answer to a partner who asked where reqs
// stand. id must be stable for the question answered (the outbox sends
// one message per ID). nextBatch is named only for an approved request.
func Status(r *parse.Result, reqs []*keydesk.Request, t *templates.Set, nextBatch time.Time, id string) (*keydesk.Outgoing, error) {
	if len(reqs) == 0 || t == nil {
		return nil, errors.New("reply: status: no request or no templates")
	}
	var ids []string
	d := StatusData{Subject: Subject(r.Subject), Plural: len(reqs) > 1}
	for _, q := range reqs {
		ids = append(ids, q.ID)
		state, next := StateInWords(q, nextBatch)
		scopes := keydesk.JoinScopes(q.Scopes)
		long := utf8.RuneCountInString(scopes) > valueWidth
		d.Requests = append(d.Requests, StatusLine{
			ID: q.ID, Environment: orNone(string(q.Environment)), Scopes: orNone(scopes), Label: orNone(q.Label),
			LongScopes: long, LongLabel: utf8.RuneCountInString(q.Label) > valueWidth,
			State: state, Next: next,
		})
		if q.State == keydesk.StateApproved && q.Proposal == nil {
			d.Requests[len(d.Requests)-1].NextBatch = nextBatch
		}
	}
	out, err := answer(r, id, keydesk.KindStatusReply, ids)
	if err != nil {
		return nil, err
	}
	return renderInto(out, t, "status-reply", d)
}

// Received returns the notice to an authenticated partner whose email
// went to review: it was received and a person is looking at it. stored
// are the requests the email made.
func Received(r *parse.Result, stored []*keydesk.Request, t *templates.Set) (*keydesk.Outgoing, error) {
	if t == nil {
		return nil, errors.New("reply: received: no templates")
	}
	var ids []string
	for _, q := range stored {
		ids = append(ids, q.ID)
	}
	out, err := answer(r, baseID(&parse.Result{Requests: stored, SourceKey: r.SourceKey})+".received", keydesk.KindReceived, ids)
	if err != nil {
		return nil, err
	}
	return renderInto(out, t, "received", ReceivedData{Subject: Subject(r.Subject), IDs: ids, Plural: len(ids) > 1})
}

// CorrectionReceived returns the acknowledgement of a correction that
// waits for a person: what it changes on req. id must be stable for the
// correction (one per proposal).
func CorrectionReceived(r *parse.Result, req *keydesk.Request, p *keydesk.Proposal, t *templates.Set, id string) (*keydesk.Outgoing, error) {
	if t == nil || req == nil || p == nil {
		return nil, errors.New("reply: correction: no request, proposal or templates")
	}
	// A person looks at it: the kind of the received notice.
	out, err := answer(r, id, keydesk.KindReceived, []string{req.ID})
	if err != nil {
		return nil, err
	}
	changes := p.Diff(req)
	for i := range changes {
		changes[i].From, changes[i].To = orNone(changes[i].From), orNone(changes[i].To)
	}
	return renderInto(out, t, "correction-received", CorrectionData{Subject: Subject(r.Subject), ID: req.ID, Changes: changes, WasApproved: p.WasApproved})
}

// CorrectionRejected returns the rejection of a correction that does not
// pass the parser's checks (a scope that does not exist): the same words
// as the rejection of a new request, under an ID of its own (id).
func CorrectionRejected(r *parse.Result, req *keydesk.Request, reasons []keydesk.Reason, t *templates.Set, id string) (*keydesk.Outgoing, error) {
	rr := *r
	rr.Verdict, rr.Reasons, rr.Requests, rr.ReplyTo = parse.Reject, reasons, []*keydesk.Request{req}, r.From
	out, err := Build(&rr, t, time.Time{})
	if err != nil || out == nil {
		return out, err
	}
	out.ID, out.References = id, threadRefs(r)
	return out, nil
}

func renderInto(out *keydesk.Outgoing, t *templates.Set, name string, data any) (*keydesk.Outgoing, error) {
	m, err := t.RenderPartnerMail(name, data)
	if err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	out.Subject, out.Text = m.Subject, m.Body
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// StateInWords says where a request stands and what happens next, as a
// partner reads it. The next batch is named only when the request is
// approved: for any other state it is not true that the batch makes it.
func StateInWords(r *keydesk.Request, nextBatch time.Time) (state, next string) {
	if r.Proposal != nil {
		return "on hold: your correction waits for our support team",
			"A person in our support team checks the change you asked for; we will tell you when it is accepted. No key is created until then."
	}
	switch r.State {
	case keydesk.StateReceived, keydesk.StatePendingReview:
		return "waiting for review by our support team",
			"A person in our support team reviews it. Once it is approved, the key is created in the next batch and sent to your technical contact."
	case keydesk.StateApproved:
		if nextBatch.IsZero() {
			return "approved", "The key is created in our next regular batch and sent to your technical contact."
		}
		return "approved", "The key is created in the next batch and sent to your technical contact."
	case keydesk.StateGenerating, keydesk.StateGenerated:
		return "the key is being created and sent", "It reaches your technical contact shortly, encrypted to their registered key."
	case keydesk.StateDelivered:
		return "done: the key was sent", "The key pair was sent to your technical contact, encrypted to their registered key. If it did not arrive, reply to this email."
	case keydesk.StateDeliveryFailed, keydesk.StateRevoked:
		return "not delivered: the key was revoked", "The key could not be delivered and was revoked, so it cannot be used. Our support team will contact you about a new one."
	case keydesk.StateBlocked:
		return "on hold: your technical contact's key cannot be used", "Your technical contact's OpenPGP key cannot be used to encrypt the key. Please send their current public key to your Relationship Manager; the request goes on once it is registered."
	case keydesk.StateFailed:
		return "on hold: a problem on our side", "Our support team is working on it and will retry the request; there is nothing you need to do."
	case keydesk.StateRejected:
		return "not accepted", "The request could not be accepted as written; our earlier email says why. Please send a new request as it explains."
	case keydesk.StateCancelled:
		return "cancelled", "The request was cancelled by our support team and no key is created from it. Reply to this email if that is not what you expected."
	}
	return string(r.State), "Our support team will get back to you."
}

// ExposedKey is one key whose secret a partner's email exposed.
type ExposedKey struct {
	KeyID, Environment, Label string
	// RequestID is the revoke request keydesk proposed for it.
	RequestID string
}

// SecretExposedData is what templates/mail/secret-exposed.tmpl gets: the
// email that held the secrets (its date and subject, as redacted) and
// the keys they belong to. Never a secret.
type SecretExposedData struct {
	Date    time.Time
	Subject string
	Keys    []ExposedKey
}
