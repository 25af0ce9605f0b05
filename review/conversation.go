package review

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
	"github.com/buildmarkets/keydesk/templates"
)

// The staff side of a request's conversation: internal notes, a reply to
// the requester, who is on it, and the partner's proposed change.
const (
	// maxNote and maxReply bound what a person writes, in characters.
	maxNote  = 4000
	maxReply = 8000
	// maxReferences bounds a reply's References header: the first
	// Message-ID of the thread and the latest ones.
	maxReferences = 20
)

// errSecret refuses text that would carry a secret out in plain text.
var errSecret = &Error{Status: http.StatusBadRequest, Code: "secret",
	Msg: "the text holds what looks like a secret (a bm_secret_… API secret or a private key): keydesk never sends a secret in an email, and key pairs go only encrypted to the technical contact; remove it and send again"}

// staffAction checks that a.By may take part in a request's conversation
// (note, reply, assign, decide a proposal): approvers and admins; a
// viewer only reads.
func staffAction(a action) error {
	if !a.By.Role.Can(users.Approver) {
		return errForbidden(users.Approver)
	}
	return nil
}

// addNote adds an internal note to the request's thread. Notes are for
// staff: they never leave keydesk.
func (s *Server) addNote(ctx context.Context, a action, text string) (*result, error) {
	if err := staffAction(a); err != nil {
		return nil, err
	}
	text, err := cleanText(text, "the note", maxNote)
	if err != nil {
		return nil, err
	}
	if text == "" {
		return nil, errBadRequest("write the note's text")
	}
	if keydesk.HoldsSecret(text) {
		return nil, errSecret
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	e := keydesk.ThreadEntry{
		ID:        keydesk.EntryID("note", r.ID, a.By.Name, strconv.FormatInt(now.UnixNano(), 10), text),
		RequestID: r.ID, At: now, Kind: keydesk.ThreadNote, From: a.By.Name, Text: text,
	}
	if _, err := s.o.Queue.AppendThread(ctx, e); err != nil {
		return nil, asError(r.ID, err)
	}
	s.audit(ctx, a.By, "note", r.ID, s.note(a, "note added: "+clip(keydesk.SafeLine(text, 0), 200)))
	s.actions.Inc("note")
	s.log.Info("review: note", "request", r.ID, "by", a.By.Name)
	return &result{Request: r, Message: "Note added."}, nil
}

// sendReply queues an email to the request's requester (never another
// address: the To is the request's, never the caller's), from the
// staff-reply template with the request's facts, threaded under the
// partner's email. Text that holds a secret is refused.
func (s *Server) sendReply(ctx context.Context, a action, text string) (*result, error) {
	if err := staffAction(a); err != nil {
		return nil, err
	}
	text, err := cleanText(text, "the reply", maxReply)
	if err != nil {
		return nil, err
	}
	if text == "" {
		return nil, errBadRequest("write the reply's text")
	}
	if keydesk.HoldsSecret(text) {
		return nil, errSecret
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	if err := s.replyable(r); err != nil {
		return nil, err
	}
	m, err := s.o.Templates.RenderPartnerMail("staff-reply", templates.StaffReply{
		Subject: reply.Subject(r.Subject), Text: text, Request: templates.FactsOf(r),
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	now := s.now().UTC()
	out := &keydesk.Outgoing{
		// One reply, one ID: a retry of this enqueue cannot send it twice.
		ID:   r.ID + ".staff-reply." + keydesk.EntryID(a.By.Name, strconv.FormatInt(now.UnixNano(), 10), text),
		Kind: keydesk.KindStaffReply, RequestID: r.ID, Partner: r.Partner,
		To: []string{r.Requester}, Subject: m.Subject, Text: m.Body,
		InReplyTo: r.SourceMessageID, References: s.references(ctx, r), CreatedAt: now,
	}
	if err := s.o.Queue.Enqueue(ctx, out); err != nil {
		return nil, asError(r.ID, err)
	}
	s.audit(ctx, a.By, "reply", r.ID, s.note(a, fmt.Sprintf("reply to %s queued (%s)", r.Requester, out.ID)))
	s.actions.Inc("reply")
	s.log.Info("review: reply", "request", r.ID, "by", a.By.Name, "outbox", out.ID)
	return &result{Request: r, Message: "Reply to " + r.Requester + " queued: it is sent within a minute and then shows in the thread."}, nil
}

// replyable refuses a reply keydesk must not send: to an unknown sender
// (no backscatter), or to an address that is no longer one of its
// partner's requesters.
func (s *Server) replyable(r *keydesk.Request) error {
	if staffMade(r) {
		return errConflict("staff_request", "request %s was asked by staff (%s), not by email: there is no requester to write to", r.ID, r.Requester)
	}
	if r.Partner == "" || r.Requester == "" || r.HasFlag(keydesk.FlagUnknownSender) {
		return errConflict("unknown_sender", "request %s comes from a sender of no registered partner: keydesk writes only to a partner's requesters", r.ID)
	}
	p, ok := s.o.Partners().Partner(r.Partner)
	if !ok || !p.MatchesRequester(r.Requester) {
		return errConflict("unknown_sender", "%s is no longer a requester of partner %s in partners.yaml: keydesk writes only to a partner's requesters", r.Requester, r.Partner)
	}
	return nil
}

// references is the References of an email about r: its source email's
// Message-ID, then those of its thread's emails, oldest first, each once
// (compared as keydesk.NormalizeMessageID does); past
// maxReferences the first and the latest are kept.
func (s *Server) references(ctx context.Context, r *keydesk.Request) []string {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		n := keydesk.NormalizeMessageID(id)
		// A Message-ID from an email that is not one header token would
		// make delivery refuse the whole reply: leave it out.
		if n == "" || seen[n] || len(n) > 240 || strings.ContainsAny(n, " \t\r\n") || !keydesk.Inert(n) {
			return
		}
		seen[n] = true
		// As it was written: mail clients match Message-IDs as strings.
		ids = append(ids, "<"+strings.Trim(strings.TrimSpace(id), "<> \t")+">")
	}
	add(r.SourceMessageID)
	th, err := s.o.Queue.Thread(ctx, r.ID)
	if err != nil {
		s.log.Warn("review: thread for references", "request", r.ID, "err", err)
	}
	for _, e := range th {
		if e.Kind == keydesk.ThreadEmailIn || e.Kind == keydesk.ThreadEmailOut {
			add(e.MessageID)
		}
	}
	if len(ids) > maxReferences {
		ids = append(ids[:1], ids[len(ids)-maxReferences+1:]...)
	}
	return ids
}

// assign sets who is on the request; "" unassigns. The user must be a
// staff member of users.yaml.
func (s *Server) assign(ctx context.Context, a action, user string) (*result, error) {
	if err := staffAction(a); err != nil {
		return nil, err
	}
	user = strings.TrimSpace(user)
	if user != "" {
		if _, ok := s.o.Users().Lookup(user); !ok {
			return nil, errBadRequest("%q is no staff member in users.yaml: assign the request to one of its users, or \"\" to nobody", clip(user, 64))
		}
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	if r.Assignee == user {
		msg := "Already assigned to " + user + "."
		if user == "" {
			msg = "Already assigned to nobody."
		}
		return &result{Request: r, Message: msg}, nil
	}
	note, msg := "assigned to "+user, "Assigned to "+user+"."
	switch {
	case user == "":
		note, msg = "unassigned (was "+r.Assignee+")", "Unassigned."
	case r.Assignee != "":
		note += " (was " + r.Assignee + ")"
	}
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "assign", Revision: r.Revision, Note: s.note(a, note),
		Mutate: func(x *keydesk.Request) error { x.Assignee = user; return nil },
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("assign")
	s.log.Info("review: assign", "request", r.ID, "by", a.By.Name, "assignee", user)
	return &result{Request: out, Message: msg}, nil
}

// proposalOf loads the request and its proposed change, which only a
// request awaiting review can have decided.
func (s *Server) proposalOf(ctx context.Context, a action) (*keydesk.Request, *keydesk.Proposal, error) {
	if err := staffAction(a); err != nil {
		return nil, nil, err
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, nil, err
	}
	if r.Proposal == nil {
		return nil, nil, errConflict("no_proposal", "request %s has no proposed change (someone may have decided it already): reload it", r.ID)
	}
	if r.State != keydesk.StatePendingReview {
		return nil, nil, errConflict("invalid_state", "request %s is %s: a proposed change is decided while the request awaits review", r.ID, r.State)
	}
	return r, r.Proposal, nil
}

// acceptProposal makes the partner's proposed change: the fields become
// the proposal's as a correction by a.By would make them (approvals
// cleared, a widening marked as a.By's), and the request stays pending
// review for approval. The partner is told.
func (s *Server) acceptProposal(ctx context.Context, a action) (*result, error) {
	r, p, err := s.proposalOf(ctx, a)
	if err != nil {
		return nil, err
	}
	diff := p.Diff(r)
	var parts []string
	for _, c := range diff {
		parts = append(parts, fmt.Sprintf("%s: %s → %s", c.Field, orNone(c.From), orNone(c.To)))
	}
	note := "accepted the change proposed by " + p.From
	if len(parts) > 0 {
		note += ": " + strings.Join(parts, "; ")
	} else {
		note += " (it changes nothing)"
	}
	mutate := func(x *keydesk.Request) {
		p.Apply(x)
		x.Proposal = nil
		x.Flags = slices.DeleteFunc(x.Flags, func(f keydesk.Flag) bool { return f == keydesk.FlagProposedChange })
	}
	out, note, widen, err := s.rewrite(ctx, a, r, "accept-proposal", note, mutate, answeredBy(p))
	if err != nil {
		return nil, err
	}
	s.actions.Inc("accept-proposal")
	s.log.Info("review: proposal accepted", "request", r.ID, "by", a.By.Name, "proposal", p.ID, "widens", widen.Any())
	told, sent := s.tellOutcome(ctx, out, p, true, diff)
	res := &result{Request: out, Message: "Change accepted: " + note + ". The request waits for approval; " + told, Unsent: !sent}
	if widen.Any() {
		res.Warning = "Accepting this change widens access (" + widen.String() + "). You accepted it, so you cannot approve this request: another approver must."
	}
	return res, nil
}

// answeredBy lists the reasons a proposal answers: those of each field
// it states validly.
func answeredBy(p *keydesk.Proposal) []keydesk.ReasonCode {
	var drop []keydesk.ReasonCode
	if p.Environment.Valid() {
		drop = append(drop, keydesk.ReasonMissingEnvironment, keydesk.ReasonInvalidEnvironment)
	}
	if len(p.Scopes) > 0 {
		drop = append(drop, keydesk.ReasonMissingScopes, keydesk.ReasonUnknownScope)
	}
	if p.Label != "" {
		drop = append(drop, keydesk.ReasonMissingLabel, keydesk.ReasonInvalidLabel)
	}
	return drop
}

// refuseProposal drops the partner's proposed change and keeps the
// fields; the request stays pending review. The partner is told.
func (s *Server) refuseProposal(ctx context.Context, a action) (*result, error) {
	r, p, err := s.proposalOf(ctx, a)
	if err != nil {
		return nil, err
	}
	diff := p.Diff(r)
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "refuse-proposal", From: r.State, Revision: r.Revision,
		Note: s.note(a, "refused the change proposed by "+p.From+": the fields are kept"),
		Mutate: func(x *keydesk.Request) error {
			x.Proposal = nil
			x.Flags = slices.DeleteFunc(x.Flags, func(f keydesk.Flag) bool { return f == keydesk.FlagProposedChange })
			return nil
		},
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("refuse-proposal")
	s.log.Info("review: proposal refused", "request", r.ID, "by", a.By.Name, "proposal", p.ID)
	told, sent := s.tellOutcome(ctx, out, p, false, diff)
	return &result{Request: out, Message: "Change refused: the fields are kept and the request waits for approval; " + told, Unsent: !sent}, nil
}

// tellOutcome queues the proposal-outcome email to the requester,
// threaded under the reply that proposed the change, and says in words
// what happened to it; sent is false when an email owed could not be
// queued.
func (s *Server) tellOutcome(ctx context.Context, r *keydesk.Request, p *keydesk.Proposal, accepted bool, diff []keydesk.FieldChange) (told string, sent bool) {
	if err := s.replyable(r); err != nil {
		return "the sender is not a partner's requester, so no email is sent.", true
	}
	m, err := s.o.Templates.RenderPartnerMail("proposal-outcome", templates.ProposalOutcome{
		Subject: reply.Subject(r.Subject), Accepted: accepted, Asked: templates.AskedOf(diff), Request: templates.FactsOf(r),
	})
	if err == nil {
		inReplyTo := p.MessageID
		if inReplyTo == "" {
			inReplyTo = r.SourceMessageID
		}
		err = s.o.Queue.Enqueue(ctx, &keydesk.Outgoing{
			// One proposal, one outcome: a second decision cannot send two.
			ID:   r.ID + ".proposal-outcome." + p.ID,
			Kind: keydesk.KindProposalOutcome, RequestID: r.ID, Partner: r.Partner,
			To: []string{r.Requester}, Subject: m.Subject, Text: m.Body,
			InReplyTo: inReplyTo, References: s.references(ctx, r), CreatedAt: s.now().UTC(),
		})
	}
	if err != nil {
		s.log.Error("review: queue proposal outcome", "request", r.ID, "proposal", p.ID, "err", err)
		return "but the email to the requester could not be queued (the log has the cause): tell them yourself.", false
	}
	return "the requester is told.", true
}

// thread is a request's conversation, oldest first, each text made inert
// again (it is shown as text wherever it goes).
func (s *Server) thread(ctx context.Context, id string) ([]keydesk.ThreadEntry, error) {
	th, err := s.o.Queue.Thread(ctx, id)
	if err != nil {
		return nil, err
	}
	for i := range th {
		th[i].Text = keydesk.SafeText(th[i].Text)
		th[i].Subject = keydesk.SafeLine(th[i].Subject, 0)
		th[i].From = keydesk.SafeLine(th[i].From, 0)
		th[i].To = keydesk.SafeLine(th[i].To, 0)
	}
	return th, nil
}

// search selects requests beyond queue.Filter: by kind, by assignee, and
// by a text that a KR-ID, label, sender address or partner contains.
type search struct {
	kind     keydesk.RequestKind
	assignee string
	q        string // lower-cased
}

// parseSearch reads kind, assignee ("me" is the caller) and q.
func parseSearch(v interface{ Get(string) string }, st *staff) (search, error) {
	var f search
	switch k := keydesk.RequestKind(v.Get("kind")); k {
	case "":
	case keydesk.KindIssue, keydesk.KindRevoke, keydesk.KindRotate:
		f.kind = k
	default:
		return f, errBadRequest("kind %q: use issue, revoke or rotate", clip(string(k), 40))
	}
	f.assignee = strings.TrimSpace(v.Get("assignee"))
	if f.assignee == "me" {
		f.assignee = st.Name
	}
	if len(f.assignee) > 64 {
		return f, errBadRequest("assignee: a staff name is at most 64 characters")
	}
	q := strings.TrimSpace(v.Get("q"))
	if n := len([]rune(q)); n > maxSearch {
		return f, errBadRequest("q is %d characters long: search for at most %d", n, maxSearch)
	}
	f.q = strings.ToLower(q)
	return f, nil
}

// match reports whether r is one f finds; the partner is found by its ID
// or its name in reg.
func (f search) match(r *keydesk.Request, reg *keydesk.Registry) bool {
	if f.kind != "" && r.KindOf() != f.kind {
		return false
	}
	if f.assignee != "" && r.Assignee != f.assignee {
		return false
	}
	if f.q == "" {
		return true
	}
	_, ok := searchMatch(r, reg, f.q)
	return ok
}
