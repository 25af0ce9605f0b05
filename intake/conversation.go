package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// Threads is what the parse handler reads and keeps conversations
// through; *queue.Conn is one.
type Threads interface {
	Get(ctx context.Context, id string) (*keydesk.Request, error)
	Apply(ctx context.Context, id string, ch queue.Change) (*keydesk.Request, error)
	LookupMessage(ctx context.Context, messageID string) ([]string, error)
	IndexMessage(ctx context.Context, messageID string, requests ...string) error
	AppendThread(ctx context.Context, e keydesk.ThreadEntry) (bool, error)
	Thread(ctx context.Context, requestID string) ([]keydesk.ThreadEntry, error)
	queue.Buckets
}

var _ Threads = (*queue.Conn)(nil)

// StatusReplyEvery is how often at most one request gets an automatic
// status reply: a partner who asks fifty times in an hour hears once.
const StatusReplyEvery = time.Hour

// maxThreadRequests bounds the requests one email may join.
const maxThreadRequests = 20

// maxCAS bounds the compare-and-set retries of one change: each conflict
// means another writer moved the request, so the change is decided again
// on what it did.
const maxCAS = 8

// DuplicateIndex is the record, in the threads bucket under
// d.<digest of partner, environment and label>, of the request that
// holds that combination: a new request with the same three is a
// duplicate while that one is open. Checked against the request's state
// on each lookup, so a closed request frees the combination.
type DuplicateIndex struct {
	RequestID string `json:"request_id"`
}

const duplicatePrefix = "d."

func duplicateKey(r *keydesk.Request) string {
	sum := sha256.Sum256([]byte(strings.ToLower(r.Partner) + "\x00" + string(r.Environment) + "\x00" + strings.ToLower(strings.TrimSpace(r.Label))))
	return duplicatePrefix + hex.EncodeToString(sum[:16])
}

// open reports whether a request still waits for or is on its way to a
// key: a new one like it repeats it.
func open(s keydesk.State) bool {
	return !s.Done() && s != keydesk.StateDeliveryFailed
}

// tooLate reports whether a correction comes after the request's fields
// may be changed: the key is being made or the request is closed.
func tooLate(s keydesk.State) bool {
	switch s {
	case keydesk.StateReceived, keydesk.StatePendingReview, keydesk.StateApproved, keydesk.StateBlocked:
		return false
	}
	return true
}

// thread is what an email's threading resolved to: the requests of its
// own partner it joins, and the IDs it named that are not its partner's.
type thread struct {
	joined  []*keydesk.Request
	foreign []string
}

// answered are the requests an email answers by its headers: the
// Message-IDs of its In-Reply-To and References (keydesk's own emails, as
// delivery indexed them), else the request IDs of its subject.
func (h *parseHandler) answered(ctx context.Context, res *parse.Result) ([]string, error) {
	var ids []string
	for _, mid := range append(slices.Clone(res.InReplyTo), res.References...) {
		got, err := h.o.Threads.LookupMessage(ctx, mid)
		if errors.Is(err, keydesk.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, id := range got {
			if !slices.Contains(ids, id) && len(ids) < maxThreadRequests {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		ids = res.SubjectIDs
	}
	return ids, nil
}

// resolve finds the requests an email answers: the Message-IDs of its
// In-Reply-To and References (keydesk's own emails, as delivery indexed
// them), else the request IDs of its subject, else, for a question that
// states no fields, those of its own text. Never the quoted history. A
// request joins only when the email's sender is an authenticated
// requester of the request's partner.
func (h *parseHandler) resolve(ctx context.Context, res *parse.Result) (thread, error) {
	var t thread
	q := h.o.Threads
	ids, err := h.answered(ctx, res)
	if err != nil {
		return t, err
	}
	if len(ids) == 0 && res.Question && !statesFields(res) {
		ids = res.TextIDs
	}
	for _, id := range ids {
		r, err := q.Get(ctx, id)
		if errors.Is(err, keydesk.ErrNotFound) {
			continue
		}
		if err != nil {
			return t, err
		}
		if res.Authenticated && res.Partner != nil && r.Partner == res.Partner.ID {
			t.joined = append(t.joined, r)
		} else {
			t.foreign = append(t.foreign, r.ID)
		}
	}
	// A reply to a rejection is what the rejection asked for: the
	// request again, as a new one.
	if len(t.joined) > 0 && !slices.ContainsFunc(t.joined, func(r *keydesk.Request) bool { return r.State != keydesk.StateRejected }) && statesFields(res) {
		t.joined = nil
	}
	return t, nil
}

func statesFields(res *parse.Result) bool {
	return slices.ContainsFunc(res.Stated, func(s parse.Stated) bool { return s.Any() || len(s.Reasons) > 0 })
}

// reply is the decision for an email that joins requests: it makes none.
func (h *parseHandler) reply(res *parse.Result, key string, joined []*keydesk.Request) *Decision {
	return h.joining(res, key, joined, "reply", "a reply about ", (*conversation).run)
}

// joining is the decision for an email that acts on existing requests
// (outcome, reason followed by their IDs) and makes none: when it is
// stored, act runs its conversation.
func (h *parseHandler) joining(res *parse.Result, key string, rs []*keydesk.Request, outcome, reason string,
	act func(c *conversation, ctx context.Context) ([]*keydesk.Outgoing, error)) *Decision {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	c := &conversation{h: h, res: res, key: key, ref: keydesk.EntryID(key), requests: ids}
	return &Decision{
		Outcome: outcome, Disposition: Processed, SourceKey: key,
		MessageID: res.MessageID, From: res.From, Subject: res.Subject,
		Reason: reason + strings.Join(ids, ", "),
		Converse: func(ctx context.Context, _ []*keydesk.Request, mailRef string) ([]*keydesk.Outgoing, error) {
			c.mailRef = mailRef
			return act(c, ctx)
		},
	}
}

// conversation is one joining email's effect on its requests.
type conversation struct {
	h        *parseHandler
	res      *parse.Result
	key      string // the email's source key
	ref      string // keydesk.EntryID(key): names what the email did
	mailRef  string
	requests []string
}

func (c *conversation) run(ctx context.Context) ([]*keydesk.Outgoing, error) {
	q := c.h.o.Threads
	// Read again after a crash, the email does each thing once: its
	// proposal, status claim, alerts and entries carry IDs derived from
	// it, and what it queues is queued again under the same IDs (the
	// outbox keeps one), since the crash may have come before the queue.
	seen, err := c.inThread(ctx, c.requests[0])
	if err != nil {
		return nil, err
	}
	var outs []*keydesk.Outgoing
	switch {
	case statesFields(c.res):
		outs, err = c.correct(ctx, seen)
	case c.res.Question:
		outs, err = c.status(ctx, c.named())
	}
	if err != nil {
		return nil, err
	}
	if err := q.IndexMessage(ctx, c.res.MessageID, c.requests...); err != nil {
		return nil, err
	}
	for _, id := range c.requests {
		if err := c.entry(ctx, id, keydesk.ThreadEmailIn, c.ref, c.res.Text); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// inThread reports whether this email is in request id's thread already.
func (c *conversation) inThread(ctx context.Context, id string) (bool, error) {
	entries, err := c.h.o.Threads.Thread(ctx, id)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(entries, func(e keydesk.ThreadEntry) bool { return e.ID == c.ref }), nil
}

// entry adds one entry about this email to request id's thread.
func (c *conversation) entry(ctx context.Context, id string, kind keydesk.ThreadKind, entryID, text string) error {
	e := keydesk.ThreadEntry{ID: entryID, RequestID: id, At: c.h.now().UTC(), Kind: kind, Text: text}
	if kind == keydesk.ThreadEmailIn {
		e.From, e.Subject, e.MessageID, e.MailRef = c.res.From, c.res.Subject, c.res.MessageID, c.mailRef
		if !c.res.Date.IsZero() {
			e.At = c.res.Date.UTC()
		}
	}
	_, err := c.h.o.Threads.AppendThread(ctx, e)
	return err
}

// named are the requests of the thread the email names by ID (subject
// or own text); all of them when it names none.
func (c *conversation) named() []string {
	var out []string
	for _, id := range c.requests {
		if slices.Contains(c.res.SubjectIDs, id) || slices.Contains(c.res.TextIDs, id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return c.requests
	}
	return out
}

// correct handles a reply that states fields. seen says the email is in
// the thread already: everything it did was stored, and a proposal of its
// that the request no longer holds was accepted or refused since.
func (c *conversation) correct(ctx context.Context, seen bool) ([]*keydesk.Outgoing, error) {
	target := c.named()
	var stated []parse.Stated
	for _, s := range c.res.Stated {
		if s.Any() || len(s.Reasons) > 0 {
			stated = append(stated, s)
		}
	}
	if len(target) != 1 || len(stated) != 1 {
		// Several requests share the thread and the reply does not say
		// which one, or it states several blocks: guessing could change
		// the wrong key. A person decides.
		return c.tell(ctx, c.requests, "ambiguous",
			"The partner's reply states new fields but does not say which request they are for, so nothing was changed.",
			"read the reply in the thread and correct the right request, or ask the partner to name its request ID.")
	}
	id, s := target[0], stated[0]
	r, err := c.h.o.Threads.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(s.Reasons) > 0 {
		// The same checks and the same words as for a new request; the
		// request stays as it is.
		out, err := reply.CorrectionRejected(c.res, r, s.Reasons, c.h.o.Templates, id+".correction-rejected."+c.ref)
		if err != nil {
			return nil, err
		}
		return []*keydesk.Outgoing{out}, nil
	}
	for range maxCAS {
		if r.Proposal != nil && r.Proposal.ID == c.ref {
			return c.correctionAck(r)
		}
		if seen {
			return nil, nil
		}
		p := c.proposal(r, s)
		if len(p.Diff(r)) == 0 {
			return nil, nil // it restates what the request holds
		}
		if tooLate(r.State) {
			return c.tell(ctx, []string{id}, "late",
				fmt.Sprintf("The partner asked to change %s after it was %s: the change came too late and was not applied.", describe(p.Diff(r)), r.State),
				"read the reply in the thread and answer the partner; if the key must change, revoke it and have a new one requested.")
		}
		p.WasApproved = r.State == keydesk.StateApproved
		next, err := c.h.o.Threads.Apply(ctx, id, queue.Change{
			Actor: c.h.actor(), Action: "propose", Revision: r.Revision, To: keydesk.StatePendingReview,
			Note: "the partner asked to change " + describe(p.Diff(r)) + ": held for review",
			Mutate: func(x *keydesk.Request) error {
				x.Proposal = p
				x.Approvals = nil
				x.AddFlag(keydesk.FlagProposedChange)
				return nil
			},
		})
		if errors.Is(err, keydesk.ErrConflict) {
			if r, err = c.h.o.Threads.Get(ctx, id); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return c.correctionAck(next)
	}
	return nil, fmt.Errorf("intake: correction of %s: the request kept changing: %w", id, keydesk.ErrConflict)
}

// proposal is r's fields with what s states instead.
func (c *conversation) proposal(r *keydesk.Request, s parse.Stated) *keydesk.Proposal {
	p := &keydesk.Proposal{ID: c.ref, From: c.res.From, MessageID: c.res.MessageID, At: c.h.now().UTC(),
		Environment: r.Environment, Scopes: slices.Clone(r.Scopes), Label: r.Label}
	if s.HasEnvironment {
		p.Environment = s.Environment
	}
	if s.HasScopes {
		p.Scopes = slices.Clone(s.Scopes)
	}
	if s.HasLabel {
		p.Label = s.Label
	}
	return p
}

func (c *conversation) correctionAck(r *keydesk.Request) ([]*keydesk.Outgoing, error) {
	if c.h.o.Templates == nil {
		return nil, nil
	}
	out, err := reply.CorrectionReceived(c.res, r, r.Proposal, c.h.o.Templates, r.ID+".correction."+c.ref)
	if err != nil {
		return nil, err
	}
	return []*keydesk.Outgoing{out}, nil
}

func describe(ch []keydesk.FieldChange) string {
	var fs []string
	for _, f := range ch {
		fs = append(fs, f.Field)
	}
	return strings.Join(fs, " and ")
}

// tell records on each request's thread what keydesk did not do, and
// alerts support: nothing about a request changes silently.
func (c *conversation) tell(ctx context.Context, ids []string, what, text, action string) ([]*keydesk.Outgoing, error) {
	for _, id := range ids {
		if err := c.entry(ctx, id, keydesk.ThreadSystem, keydesk.EntryID(c.key, what), text); err != nil {
			return nil, err
		}
	}
	t, to := c.h.o.Templates, c.h.o.SupportAddress
	if t == nil || to == "" {
		c.h.log().Warn("no alert sent about a partner's reply: smtp.support_address or the templates are not set", "requests", ids)
		return nil, nil
	}
	out, err := t.AlertMail("intake.reply."+what+"."+c.ref, to, templates.Alert{
		Title: "A partner's reply needs a person: " + strings.Join(ids, ", "),
		Text: text + "\n\n  From:       " + keydesk.SafeLine(c.res.From, 200) + "\n  Subject:    " + keydesk.SafeLine(c.res.Subject, 200) +
			"\n  Message-ID: " + keydesk.SafeLine(c.res.MessageID, 250) + "\n  Requests:   " + strings.Join(ids, ", "),
		Action: action,
	})
	if err != nil {
		return nil, err
	}
	out.RequestID = ids[0]
	if len(ids) > 1 {
		out.Thread = slices.Clone(ids)
	}
	return []*keydesk.Outgoing{out}, nil
}

// status answers a question about ids: at most one status reply per
// request every StatusReplyEvery. Each request's StatusReplyAt and
// StatusReplyRef are set by compare-and-set before the reply is queued,
// and the reply's ID derives from the ref: read again after a crash
// between the two, the email finds its own ref and queues the same ID,
// which the outbox keeps once.
func (c *conversation) status(ctx context.Context, ids []string) ([]*keydesk.Outgoing, error) {
	if c.h.o.Templates == nil {
		return nil, nil
	}
	now := c.h.now().UTC()
	var got []*keydesk.Request
	for _, id := range ids {
		r, err := c.claimStatus(ctx, id, now)
		if err != nil {
			return nil, err
		}
		if r != nil {
			got = append(got, r)
		}
	}
	if len(got) == 0 {
		c.h.log().Info("status question not answered: one was answered within the hour", "requests", ids, "message_id", c.res.MessageID)
		return nil, nil
	}
	next := time.Time{}
	if c.h.o.NextBatch != nil {
		next = c.h.o.NextBatch()
	}
	out, err := reply.Status(c.res, got, c.h.o.Templates, next, got[0].ID+".status."+c.ref)
	if err != nil {
		return nil, err
	}
	return []*keydesk.Outgoing{out}, nil
}

// claimStatus takes request id's status reply for this email, or returns
// nil when one was sent within StatusReplyEvery.
func (c *conversation) claimStatus(ctx context.Context, id string, now time.Time) (*keydesk.Request, error) {
	for range maxCAS {
		r, err := c.h.o.Threads.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		switch {
		case r.StatusReplyRef == c.ref:
			return r, nil
		case !r.StatusReplyAt.IsZero() && now.Sub(r.StatusReplyAt) < StatusReplyEvery:
			return nil, nil
		}
		next, err := c.h.o.Threads.Apply(ctx, id, queue.Change{
			Actor: c.h.actor(), Action: "status-reply", Revision: r.Revision,
			Note: "the partner asked where the request stands: answered",
			Mutate: func(x *keydesk.Request) error {
				x.StatusReplyAt, x.StatusReplyRef = now, c.ref
				return nil
			},
		})
		if errors.Is(err, keydesk.ErrConflict) {
			continue
		}
		return next, err
	}
	return nil, fmt.Errorf("intake: status reply for %s: the request kept changing: %w", id, keydesk.ErrConflict)
}

// markDuplicates flags each new request that repeats an open one of the
// same partner, environment and label, before it is created: a duplicate
// is never auto-approved. It only reads; claimDuplicates records the new
// requests once they are stored.
func (h *parseHandler) markDuplicates(ctx context.Context, reqs []*keydesk.Request) error {
	idx := queue.NewBucket[DuplicateIndex](h.o.Threads, queue.BucketThreads)
	for _, r := range reqs {
		if r.State == keydesk.StateRejected || r.Partner == "" || r.Environment == "" || r.Label == "" || r.KindOf() == keydesk.KindRevoke {
			continue
		}
		cur, _, err := idx.Get(ctx, duplicateKey(r))
		if errors.Is(err, keydesk.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		other, err := h.o.Threads.Get(ctx, cur.RequestID)
		if errors.Is(err, keydesk.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if other.SourceKey == r.SourceKey && other.Index == r.Index || !open(other.State) {
			continue
		}
		markDuplicate(r, other.ID)
	}
	return nil
}

func markDuplicate(r *keydesk.Request, of string) {
	r.AddFlag(keydesk.FlagDuplicate)
	r.DuplicateOf = of
	if r.State == keydesk.StateApproved {
		r.State = keydesk.StatePendingReview
	}
}

// claimDuplicates records each stored request as the holder of its
// partner, environment and label, unless an open request holds them; a
// request that lost that race to one stored at the same time is flagged
// now, by compare-and-set.
func (h *parseHandler) claimDuplicates(ctx context.Context, stored []*keydesk.Request) error {
	idx := queue.NewBucket[DuplicateIndex](h.o.Threads, queue.BucketThreads)
	for _, r := range stored {
		if r.State == keydesk.StateRejected || r.Partner == "" || r.Environment == "" || r.Label == "" || r.KindOf() == keydesk.KindRevoke {
			continue
		}
		key := duplicateKey(r)
		for i := 0; ; i++ {
			if i == maxCAS {
				return fmt.Errorf("intake: duplicate index of %s: %w", r.ID, keydesk.ErrConflict)
			}
			cur, rev, err := idx.Get(ctx, key)
			if errors.Is(err, keydesk.ErrNotFound) {
				if _, err = idx.Create(ctx, key, &DuplicateIndex{RequestID: r.ID}); errors.Is(err, keydesk.ErrConflict) {
					continue
				}
				if err != nil {
					return err
				}
				break
			}
			if err != nil {
				return err
			}
			if cur.RequestID == r.ID || r.DuplicateOf == cur.RequestID {
				break
			}
			other, err := h.o.Threads.Get(ctx, cur.RequestID)
			if err != nil && !errors.Is(err, keydesk.ErrNotFound) {
				return err
			}
			if err == nil && open(other.State) {
				if err := h.flagDuplicate(ctx, r.ID, other.ID); err != nil {
					return err
				}
				break
			}
			if _, err = idx.Update(ctx, key, &DuplicateIndex{RequestID: r.ID}, rev); errors.Is(err, keydesk.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// flagDuplicate flags a stored request as repeating of, holding it for
// review if it was approved.
func (h *parseHandler) flagDuplicate(ctx context.Context, id, of string) error {
	for range maxCAS {
		r, err := h.o.Threads.Get(ctx, id)
		if err != nil {
			return err
		}
		if r.HasFlag(keydesk.FlagDuplicate) || (r.State != keydesk.StateApproved && r.State != keydesk.StatePendingReview) {
			return nil
		}
		_, err = h.o.Threads.Apply(ctx, id, queue.Change{
			Actor: h.actor(), Action: "flag", Revision: r.Revision, To: keydesk.StatePendingReview,
			Note:   "repeats the open request " + of,
			Mutate: func(x *keydesk.Request) error { markDuplicate(x, of); return nil },
		})
		if !errors.Is(err, keydesk.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("intake: flag %s as duplicate: %w", id, keydesk.ErrConflict)
}
