package review

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
)

// Error is what a person is told when an action fails: a status, a
// stable code for scripts and a sentence saying what to do. Err, the
// cause, is logged and never shown.
type Error struct {
	Status int
	Code   string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errBadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Msg: fmt.Sprintf(format, args...)}
}

func errConflict(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func errForbidden(need users.Role) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden",
		Msg: fmt.Sprintf("this needs the %s role; ask an admin to change yours in users.yaml", need)}
}

// retryAfter is what a 503 tells the client to wait: a NATS leader
// election takes a few seconds.
const retryAfter = 5 * time.Second

// errUnavailable: the store did not answer within the request's deadline.
// Nothing was changed (a change is one compare-and-set), so the same
// action may simply be sent again.
func errUnavailable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Msg: fmt.Sprintf("keydesk's store (the NATS cluster) is not answering, most likely while it elects a leader; nothing was changed: try again in %d seconds", int(retryAfter.Seconds())), Err: err}
}

// asError turns a queue error into one a person can act on.
func asError(id string, err error) *Error {
	var e *Error
	var te *keydesk.TransitionError
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, keydesk.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: fmt.Sprintf("no request %s", id)}
	case errors.As(err, &te) && te.Actual != "" && te.Actual != te.From:
		return errConflict("conflict", "request %s is now %s (someone acted on it first): reload it and decide again", id, te.Actual)
	case errors.Is(err, keydesk.ErrConflict):
		return errConflict("conflict", "request %s was changed by someone else since you read it: reload it and decide again", id)
	case errors.As(err, &te):
		return errConflict("invalid_state", "request %s is %s: it cannot move to %s", id, te.From, te.To)
	case queue.Unavailable(err):
		return errUnavailable(err)
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "something went wrong on the server; the log has the details", Err: err}
}

// action is one staff action on one request.
type action struct {
	By       staff
	ID       string
	Revision uint64 // the revision the person saw; 0: the current one
	Reason   string
	// Correct: the field and its new value.
	Field, Value string
	Via          string // "web" or "api", for the audit note
}

// result is what an action did, in words for the person who took it.
type result struct {
	Request *keydesk.Request
	Message string
	// Warning is set when the action widened access (a correction that
	// adds a scope or keys:manage, or moves to production).
	Warning string
	// Unsent: the email the action owes the requester could not be
	// queued; the person is told to write themselves.
	Unsent bool
}

const maxReason = 1000

// cleanReason checks a free-text reason: one paragraph of printable text.
func cleanReason(s string, required bool) (string, error) {
	if strings.TrimSpace(s) == "" && required {
		return "", errBadRequest("give a reason: the requester is told it")
	}
	return cleanText(s, "the reason", maxReason)
}

// cleanText checks free text a person wrote (a reason, a note, a reply):
// valid UTF-8, at most max characters, no control character but line
// ends and tabs. what names it in the error.
func cleanText(s, what string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !utf8.ValidString(s) {
		return "", errBadRequest("%s is not valid UTF-8 text", what)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", errBadRequest("%s is %d characters long: keep it under %d", what, n, max)
	}
	for _, r := range s {
		if r != '\n' && r != '\r' && r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			return "", errBadRequest("%s contains the control character %U", what, r)
		}
	}
	return strings.ReplaceAll(s, "\r\n", "\n"), nil
}

// load reads the request and checks the revision the person saw.
func (s *Server) load(ctx context.Context, a action) (*keydesk.Request, error) {
	if !keydesk.ValidRequestID(a.ID) {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no request " + clip(a.ID, 40) + ": request IDs look like KR-20261127-7QX4"}
	}
	r, err := s.o.Queue.Get(ctx, a.ID)
	if err != nil {
		return nil, asError(a.ID, err)
	}
	if a.Revision != 0 && a.Revision != r.Revision {
		return nil, errConflict("conflict", "request %s was changed by someone else since you opened it (it is now %s): reload it and decide again", r.ID, r.State)
	}
	return r, nil
}

func (s *Server) note(a action, text string) string {
	// An account tied to a person (users.yaml person:) says whom it acts for.
	var forWhom string
	if a.By.Subject == "" && a.By.Person != "" && a.By.Person != a.By.Name {
		forWhom = "for " + a.By.Person
	}
	switch {
	case a.Via == "api" && forWhom != "":
		return text + " (via API, " + forWhom + ")"
	case a.Via == "api":
		return text + " (via API)"
	case forWhom != "":
		return text + " (" + forWhom + ")"
	}
	return text
}

// approve adds the staff member's approval; the last approval needed
// moves the request to approved. Under four eyes the same person cannot
// count twice.
func (s *Server) approve(ctx context.Context, a action) (*result, error) {
	if !a.By.Role.Can(users.Approver) {
		return nil, errForbidden(users.Approver)
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	if rf := s.approveRefusal(r, a.By); rf != nil {
		return nil, rf.Err
	}
	need := s.approvalsNeeded(r)
	after := approvedWords(r)
	// Four eyes counts people: the names shown are the first of each.
	var others, seen []string
	for _, ap := range r.Approvals {
		if !slices.Contains(seen, ap.PersonKey()) {
			seen = append(seen, ap.PersonKey())
			others = append(others, ap.By)
		}
	}
	n := len(others) + 1
	to := keydesk.StatePendingReview
	var msg, note string
	switch {
	case n >= need && need == 2:
		to = keydesk.StateApproved
		note = fmt.Sprintf("approval %d of %d (after %s): approved", n, need, strings.Join(others, ", "))
		msg = fmt.Sprintf("Approved: second approval after %s. %s", strings.Join(others, ", "), after)
	case n >= need:
		to = keydesk.StateApproved
		note = "approved"
		msg = "Approved. " + after
	default:
		note = fmt.Sprintf("approval %d of %d", n, need)
		msg = fmt.Sprintf("Approval %d of %d recorded: four eyes needs a second approver.", n, need)
	}
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "approve", From: keydesk.StatePendingReview, To: to,
		Revision: r.Revision, Note: s.note(a, note),
		Mutate: func(x *keydesk.Request) error {
			x.Approvals = append(x.Approvals, keydesk.Approval{By: a.By.Name, Person: a.By.person(), At: s.now().UTC()})
			return nil
		},
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("approve")
	s.log.Info("review: approve", "request", r.ID, "by", a.By.Name, "state", out.State, "approvals", len(out.Approvals))
	res := &result{Request: out, Message: msg}
	if out.State == keydesk.StateApproved && out.KindOf() == keydesk.KindRevoke {
		// Revocation is the safe direction: it never waits for the
		// schedule. The batch role, which alone holds API credentials,
		// takes this record at once.
		if _, err := s.requestRun(ctx, a.By, keydesk.TriggerRevoke, "revoke "+out.KeyRef().String()+" ("+out.ID+") now"); err != nil {
			s.log.Error("review: revoke run not requested", "request", out.ID, "err", err)
			res.Message += " But the immediate run could not be requested (the log has the cause): the next batch revokes it, or ask for a run now on the Batches page."
			res.Unsent = true
		}
	}
	return res, nil
}

// approvedWords says what happens to a request once approved, by kind.
func approvedWords(r *keydesk.Request) string {
	switch r.KindOf() {
	case keydesk.KindRevoke:
		return "The batch role revokes key " + r.KeyID + " now."
	case keydesk.KindRotate:
		return "The next batch makes the new key; the old key " + r.ReplacesKeyID + " is revoked when the contact confirms, or at the end of the grace."
	}
	return "The next batch creates the key."
}

// refusal is why a person cannot approve a request: Short is shown in
// place of the Approve button (queue rows, request page), Err is what the
// action answers.
type refusal struct {
	Short string
	Err   *Error
}

// approveRefusal decides whether by may approve r as it is now; nil: the
// button is offered and the action goes through (unless someone acts
// first). approve asks it too, so that the page never offers an action
// the server refuses, nor hides one it would take.
func (s *Server) approveRefusal(r *keydesk.Request, by staff) *refusal {
	if !by.Role.Can(users.Approver) {
		return &refusal{"approving needs the approver role", errForbidden(users.Approver)}
	}
	if r.State != keydesk.StatePendingReview {
		return &refusal{"only a request pending review can be approved",
			errConflict("invalid_state", "request %s is %s: only a request pending review can be approved", r.ID, r.State)}
	}
	// A batch could not act on these.
	kind := r.KindOf()
	if kind != keydesk.KindIssue && len(r.KeyCandidates) > 0 {
		return &refusal{"several keys match: pick one first",
			errConflict("key_not_picked", "request %s matches several keys (%s): pick the one meant first", r.ID, strings.Join(r.KeyCandidates, ", "))}
	}
	var missing []string
	if !r.Environment.Valid() {
		missing = append(missing, "environment")
	}
	switch {
	case kind == keydesk.KindRevoke && r.KeyID == "":
		missing = append(missing, "key")
	case kind == keydesk.KindRotate && r.ReplacesKeyID == "":
		missing = append(missing, "key to replace")
	}
	if kind != keydesk.KindRevoke {
		if len(r.Scopes) == 0 {
			missing = append(missing, "scopes")
		}
		if r.Label == "" {
			missing = append(missing, "label")
		}
	}
	if len(missing) > 0 {
		if kind != keydesk.KindIssue {
			// Its fields are the key's, which a correction cannot change.
			return &refusal{"no " + strings.Join(missing, ", ") + ": reject or cancel it",
				errConflict("incomplete", "request %s has no %s: reject or cancel it, and ask again for the key meant", r.ID, strings.Join(missing, ", "))}
		}
		return &refusal{"no " + strings.Join(missing, ", ") + ": correct it first",
			errConflict("incomplete", "request %s has no %s: correct it first, or reject it", r.ID, strings.Join(missing, ", "))}
	}
	if r.Partner == "" {
		return &refusal{"unknown sender: reject or cancel it",
			errConflict("unknown_partner", "request %s comes from a sender of no registered partner: reject or cancel it (add the partner to partners.yaml first if the sender is legitimate)", r.ID)}
	}
	if _, ok := s.o.Partners().Partner(r.Partner); !ok {
		return &refusal{"partner " + r.Partner + " is not in partners.yaml",
			errConflict("unknown_partner", "partner %q of request %s is not in partners.yaml any more", r.Partner, r.ID)}
	}
	if r.Proposal != nil {
		return &refusal{"a proposed change waits for a decision",
			errConflict("proposal_pending", "request %s has a change proposed by the partner waiting for a decision: accept or refuse it first", r.ID)}
	}
	if s.widenedBy(r, by) {
		return &refusal{"you widened it: another approver must approve",
			&Error{Status: http.StatusForbidden, Code: "own_widening",
				Msg: fmt.Sprintf("you widened request %s with a correction (a scope, keys:manage or production added), so you cannot approve it: another approver must", r.ID)}}
	}
	if r.ApprovedByPerson(by.person()) {
		return &refusal{"you approved it: four eyes needs someone else",
			errConflict("already_approved", "you have already approved %s (as %s): four eyes needs a second approval from someone else", r.ID, approverName(r, by.person()))}
	}
	if s.needsReauth(by) {
		return &refusal{"your sign-in is older than " + s.rp.o.ReauthAfter.String() + ": sign in again to approve",
			&Error{Status: http.StatusForbidden, Code: "reauth_required",
				Msg: fmt.Sprintf("you signed in at the identity provider more than %s ago: approving needs a fresh sign-in. Sign in again (the link on the request page) and approve %s then; nothing was changed", s.rp.o.ReauthAfter, r.ID)}}
	}
	return nil
}

// approverName is the name under which person approved r.
func approverName(r *keydesk.Request, person string) string {
	for _, ap := range r.Approvals {
		if ap.PersonKey() == person {
			return ap.By
		}
	}
	return person
}

// widenedBy reports whether the person of by widened r by a correction.
// WidenedBy holds names: each is taken as its users.yaml account's person
// (a token tied to someone), or else as itself (a single sign-on email).
func (s *Server) widenedBy(r *keydesk.Request, by staff) bool {
	for _, name := range r.WidenedBy {
		if name == by.Name || s.personOf(name) == by.person() {
			return true
		}
	}
	return false
}

// personOf is the person key of the staff member named name.
func (s *Server) personOf(name string) string {
	if u, ok := s.o.Users().Lookup(name); ok {
		return u.PersonKey()
	}
	return strings.ToLower(name)
}

// begin starts an approver's action: it checks the role, cleans the
// reason (required or not) and loads the request the action is about.
func (s *Server) begin(ctx context.Context, a action, reasonRequired bool) (*keydesk.Request, string, error) {
	if !a.By.Role.Can(users.Approver) {
		return nil, "", errForbidden(users.Approver)
	}
	reason, err := cleanReason(a.Reason, reasonRequired)
	if err != nil {
		return nil, "", err
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, "", err
	}
	return r, reason, nil
}

// reject moves the request to rejected with a reason the requester is
// told, unless the sender is unknown (no backscatter).
func (s *Server) reject(ctx context.Context, a action) (*result, error) {
	r, reason, err := s.begin(ctx, a, true)
	if err != nil {
		return nil, err
	}
	if r.State != keydesk.StatePendingReview && r.State != keydesk.StateReceived {
		return nil, errConflict("invalid_state", "request %s is %s: only a request awaiting review can be rejected (cancel it instead)", r.ID, r.State)
	}
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "reject", From: r.State, To: keydesk.StateRejected,
		Revision: r.Revision, Note: s.note(a, "rejected: "+reason),
		Mutate: func(x *keydesk.Request) error { x.Problem = reason; return nil },
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("reject")
	s.log.Info("review: reject", "request", r.ID, "by", a.By.Name)
	msg := "Rejected. The requester is told why."
	if staffMade(out) {
		msg = "Rejected. Staff asked for it, so no email is sent."
	} else if out.HasFlag(keydesk.FlagUnknownSender) || out.Partner == "" || out.Requester == "" {
		msg = "Rejected. The sender is unknown, so no reply is sent."
	} else if err := s.tellRejection(ctx, out); err != nil {
		s.log.Error("review: queue rejection email", "request", r.ID, "err", err)
		msg = "Rejected, but the email to the requester could not be queued (the log has the cause): tell them yourself."
	}
	return &result{Request: out, Message: msg}, nil
}

// rejectionData is what templates/mail/review-rejection.tmpl sees.
type rejectionData struct {
	ID, Subject, Label, Reason string
	Environment                keydesk.Environment
	Scopes                     []string
}

func (s *Server) tellRejection(ctx context.Context, r *keydesk.Request) error {
	var scopes []string
	for _, sc := range r.Scopes {
		scopes = append(scopes, string(sc))
	}
	m, err := s.o.Templates.RenderPartnerMail("review-rejection", rejectionData{
		ID: r.ID, Subject: keydesk.SafeLine(r.Subject, 120), Label: r.Label, Reason: r.Problem,
		Environment: r.Environment, Scopes: scopes,
	})
	if err != nil {
		return err
	}
	return s.o.Queue.Enqueue(ctx, &keydesk.Outgoing{
		ID: r.ID + ".rejection", Kind: keydesk.KindRejection, RequestID: r.ID, Partner: r.Partner,
		To: []string{r.Requester}, Subject: m.Subject, InReplyTo: r.SourceMessageID, Text: m.Body,
	})
}

// cancelStates are the states support may cancel from.
var cancelStates = []keydesk.State{keydesk.StatePendingReview, keydesk.StateApproved, keydesk.StateBlocked, keydesk.StateFailed}

// cancel stops a request before its key is made.
func (s *Server) cancel(ctx context.Context, a action) (*result, error) {
	r, reason, err := s.begin(ctx, a, false)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(cancelStates, r.State) {
		return nil, errConflict("invalid_state", "request %s is %s: only a request not yet being generated can be cancelled", r.ID, r.State)
	}
	note := "cancelled"
	if reason != "" {
		note += ": " + reason
	}
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "cancel", From: r.State, To: keydesk.StateCancelled,
		Revision: r.Revision, Note: s.note(a, note),
		Mutate: func(x *keydesk.Request) error {
			if reason != "" {
				x.Problem = reason
			}
			return nil
		},
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("cancel")
	s.log.Info("review: cancel", "request", r.ID, "by", a.By.Name)
	return &result{Request: out, Message: "Cancelled."}, nil
}

// retry puts a blocked or failed request back to approved once the cause
// (a contact key, API credentials) is fixed.
func (s *Server) retry(ctx context.Context, a action) (*result, error) {
	r, reason, err := s.begin(ctx, a, false)
	if err != nil {
		return nil, err
	}
	if r.State != keydesk.StateBlocked && r.State != keydesk.StateFailed {
		return nil, errConflict("invalid_state", "request %s is %s: only a blocked or failed request can be retried", r.ID, r.State)
	}
	note := "retry after " + string(r.State)
	if reason != "" {
		note += ": " + reason
	}
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "retry", From: r.State, To: keydesk.StateApproved,
		Revision: r.Revision, Note: s.note(a, note),
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("retry")
	return &result{Request: out, Message: "Back to approved: the next batch tries again."}, nil
}

// correct changes one field of what was understood. It is allowed only
// before approval; earlier approvals were for other content, so they are
// cleared. The audit note records the old and new value.
func (s *Server) correct(ctx context.Context, a action) (*result, error) {
	if !a.By.Role.Can(users.Approver) {
		return nil, errForbidden(users.Approver)
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	if r.State != keydesk.StatePendingReview && r.State != keydesk.StateReceived {
		return nil, errConflict("invalid_state", "request %s is %s: only a request awaiting review can be corrected", r.ID, r.State)
	}
	if k := r.KindOf(); k != keydesk.KindIssue {
		// Its fields are the key's: another key is another request.
		return nil, errConflict("not_correctable", "request %s is a %s request: its fields are those of the key; cancel it and ask again for another key", r.ID, k)
	}
	c, err := correction(r, a.Field, a.Value)
	if err != nil {
		return nil, err
	}
	out, note, widen, err := s.rewrite(ctx, a, r, "correct", c.note, c.mutate, c.drop)
	if err != nil {
		return nil, err
	}
	s.actions.Inc("correct")
	s.log.Info("review: correct", "request", r.ID, "by", a.By.Name, "field", a.Field, "widens", widen.Any())
	res := &result{Request: out, Message: "Corrected: " + note + "."}
	if widen.Any() {
		res.Warning = widenWarning(widen)
	}
	return res, nil
}

// rewrite changes what was understood of r (a correction, an accepted
// proposal) as one compare-and-set: earlier approvals were for other
// content, so they are cleared; a change that widens access is marked
// as a.By's, who then cannot approve it; the reasons the change answers
// (drop) go, and the flags that follow from the content are computed
// anew. It returns the stored request and the audit note written.
func (s *Server) rewrite(ctx context.Context, a action, r *keydesk.Request, act, note string, mutate func(*keydesk.Request), drop []keydesk.ReasonCode) (*keydesk.Request, string, keydesk.Widening, error) {
	after := r.Clone()
	mutate(after)
	widen := keydesk.WideningOf(r, after)
	if widen.Any() {
		note += " — widens access (" + widen.String() + "): " + a.By.Name + " cannot approve it"
	}
	if len(r.Approvals) > 0 {
		note += " (earlier approvals cleared)"
	}
	reg := s.o.Partners()
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: act, From: r.State, Revision: r.Revision, Note: s.note(a, note),
		Mutate: func(x *keydesk.Request) error {
			mutate(x)
			x.Approvals = nil
			if widen.Any() && !slices.Contains(x.WidenedBy, a.By.Name) {
				x.WidenedBy = append(x.WidenedBy, a.By.Name)
			}
			x.Reasons = slices.DeleteFunc(x.Reasons, func(re keydesk.Reason) bool { return slices.Contains(drop, re.Code) })
			refreshFlags(x, reg)
			return nil
		},
	})
	if err != nil {
		return nil, "", widen, asError(r.ID, err)
	}
	return out, note, widen, nil
}

// fieldCorrection is one corrected field: the audit note, the change, and
// the reasons it answers, which go with it.
type fieldCorrection struct {
	note   string
	mutate func(*keydesk.Request)
	drop   []keydesk.ReasonCode
}

// correction reads the new value of one field of r. A value that cannot be
// read, or that changes nothing, is a bad request.
func correction(r *keydesk.Request, field, value string) (fieldCorrection, error) {
	switch field {
	case "environment":
		env, err := keydesk.ParseEnvironment(value)
		if err != nil {
			return fieldCorrection{}, errBadRequest("%v", err)
		}
		if env == r.Environment {
			return fieldCorrection{}, errBadRequest("the environment is already %s", env)
		}
		return fieldCorrection{
			note:   fmt.Sprintf("environment: %s → %s", orNone(string(r.Environment)), env),
			mutate: func(x *keydesk.Request) { x.Environment = env },
			drop:   []keydesk.ReasonCode{keydesk.ReasonMissingEnvironment, keydesk.ReasonInvalidEnvironment},
		}, nil
	case "scopes":
		words := strings.FieldsFunc(value, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(words) > 2*len(keydesk.Scopes) {
			return fieldCorrection{}, errBadRequest("%d scopes: there are only %d", len(words), len(keydesk.Scopes))
		}
		scopes, errs := keydesk.ParseScopes(words)
		if len(errs) > 0 {
			return fieldCorrection{}, errBadRequest("%v", errors.Join(errs...))
		}
		if len(scopes) == 0 {
			return fieldCorrection{}, errBadRequest("name at least one scope, separated by commas or spaces")
		}
		if slices.Equal(scopes, r.Scopes) {
			return fieldCorrection{}, errBadRequest("the scopes are already %s", scopeList(scopes))
		}
		return fieldCorrection{
			note:   fmt.Sprintf("scopes: %s → %s", orNone(scopeList(r.Scopes)), scopeList(scopes)),
			mutate: func(x *keydesk.Request) { x.Scopes = scopes },
			drop:   []keydesk.ReasonCode{keydesk.ReasonMissingScopes, keydesk.ReasonUnknownScope},
		}, nil
	case "label":
		l, err := keydesk.ParseLabel(value)
		if err != nil {
			return fieldCorrection{}, errBadRequest("%v", err)
		}
		if l == r.Label {
			return fieldCorrection{}, errBadRequest("the label is already %q", l)
		}
		return fieldCorrection{
			note:   fmt.Sprintf("label: %q → %q", r.Label, l),
			mutate: func(x *keydesk.Request) { x.Label = l },
			drop:   []keydesk.ReasonCode{keydesk.ReasonMissingLabel, keydesk.ReasonInvalidLabel},
		}, nil
	}
	return fieldCorrection{}, errBadRequest("cannot correct %q: the fields are environment, scopes and label", clip(field, 40))
}

// widenWarning tells the author of a correction that widens access what
// follows from it.
func widenWarning(w keydesk.Widening) string {
	msg := "This correction widens access (" + w.String() + ")"
	if w.KeysManage() {
		msg += "; keys:manage lets the key create and revoke other keys"
	}
	return msg + ". You made it, so you cannot approve this request: another approver must."
}

// refreshFlags recomputes the flags that follow from the content.
func refreshFlags(r *keydesk.Request, reg *keydesk.Registry) {
	content := []keydesk.Flag{keydesk.FlagProduction, keydesk.FlagKeysManage, keydesk.FlagScopeNotAllowed}
	r.Flags = slices.DeleteFunc(r.Flags, func(f keydesk.Flag) bool { return slices.Contains(content, f) })
	if r.Environment == keydesk.Production {
		r.AddFlag(keydesk.FlagProduction)
	}
	if slices.Contains(r.Scopes, keydesk.ScopeKeysManage) {
		r.AddFlag(keydesk.FlagKeysManage)
	}
	if p, ok := reg.Partner(r.Partner); ok {
		for _, sc := range r.Scopes {
			if !p.Allows(sc) {
				r.AddFlag(keydesk.FlagScopeNotAllowed)
			}
		}
	}
}

// runBatch asks the batch role to run now.
func (s *Server) runBatch(ctx context.Context, by staff) (*result, *keydesk.Batch, error) {
	if !by.Role.Can(users.Admin) {
		return nil, nil, errForbidden(users.Admin)
	}
	b, err := s.o.Queue.RequestBatch(ctx, by.Name)
	if err != nil {
		if queue.Unavailable(err) {
			return nil, nil, errUnavailable(err)
		}
		return nil, nil, &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "the batch could not be requested; the log has the cause", Err: err}
	}
	// The request and its audit event land together or not at all: an
	// event that cannot be written takes the request back.
	ev := keydesk.Event{Ref: b.ID, Actor: by.Name, Subject: by.Subject, Action: "run-batch", Change: "asked for a batch run now"}
	if err := s.o.Queue.Record(ctx, "staff", ev); err != nil {
		if werr := s.o.Queue.WithdrawBatch(context.WithoutCancel(ctx), b); werr != nil {
			// Taken already by a batch role, whose own audit events name the person.
			s.log.Error("review: batch requested without its audit event", "batch", b.ID, "by", by.Name, "err", err, "withdraw", werr)
		}
		if queue.Unavailable(err) {
			return nil, nil, errUnavailable(err)
		}
		return nil, nil, &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "the batch could not be requested; the log has the cause", Err: err}
	}
	s.actions.Inc("run-batch")
	s.log.Info("review: batch requested", "batch", b.ID, "by", by.Name)
	return &result{Message: "Batch " + b.ID + " requested: a batch worker starts it shortly."}, b, nil
}

// audit records a staff event; a failure is logged, never shown.
// A person signed in by single sign-on is recorded with the provider's
// subject beside the email.
func (s *Server) audit(ctx context.Context, by staff, what, ref, change string) {
	if ref == "" {
		ref = by.Name
	}
	// Bounded: the store is tried again while it cannot answer, and a
	// request whose own context has ended must not wait for it forever.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.RequestTimeout)
	defer cancel()
	err := s.o.Queue.Record(actx, "staff", keydesk.Event{Ref: ref, Actor: by.Name, Subject: by.Subject, Action: what, Change: change})
	if err != nil {
		s.log.Error("review: audit", "action", what, "by", by.Name, "err", err)
	}
}

func scopeList(ss []keydesk.Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// clip shortens hostile input quoted back in a message.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
