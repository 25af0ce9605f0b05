package review

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// Request is a request as the JSON API shows it. The field and state
// names are part of the external interface.
type Request struct {
	ID              string             `json:"id"`
	State           keydesk.State      `json:"state"`
	Partner         string             `json:"partner"`
	Environment     string             `json:"environment"`
	Scopes          []string           `json:"scopes"`
	Label           string             `json:"label"`
	Flags           []string           `json:"flags"`
	Requester       string             `json:"requester"`
	SourceMessageID string             `json:"source_message_id"`
	Approvals       []keydesk.Approval `json:"approvals"`
	// WidenedBy names who widened the request by a correction: they
	// cannot approve it.
	WidenedBy []string  `json:"widened_by,omitempty"`
	KeyID     string    `json:"key_id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Beyond the list's fields: what a person deciding needs.
	Subject         string `json:"subject,omitempty"`
	Problem         string `json:"problem,omitempty"`
	Revision        uint64 `json:"revision"`
	ApprovalsNeeded int    `json:"approvals_needed"`
	// Kind is what the request asks for: issue, revoke or rotate.
	Kind keydesk.RequestKind `json:"kind"`
	// Assignee is the staff member on it; empty: nobody.
	Assignee string `json:"assignee"`
	// ProposedChange is a change the partner asked for in a reply,
	// waiting for a person to accept or refuse it.
	ProposedChange *ProposedChange `json:"proposed_change,omitempty"`
	// DuplicateOf is the open request this one repeats.
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// History and Thread are filled by GET /api/v1/requests/{id}; the
	// thread is the conversation, oldest first.
	History []HistoryEvent        `json:"history,omitempty"`
	Thread  []keydesk.ThreadEntry `json:"thread,omitempty"`
	// Message says what an action did.
	Message string `json:"message,omitempty"`
	// Warning is set when the action widened access (a correction that
	// adds a scope or keys:manage, or moves to production).
	Warning string `json:"warning,omitempty"`

	// The key's life (revoke and rotate requests): why it was asked, the
	// key a rotation replaces, the keys a label matched (a person picks
	// one), where a rotation stands, when the key was revoked, and the
	// request a revocation keydesk made itself serves.
	Reason        string            `json:"reason,omitempty"`
	ReplacesKeyID string            `json:"replaces_key_id,omitempty"`
	KeyCandidates []string          `json:"key_candidates,omitempty"`
	Rotation      *keydesk.Rotation `json:"rotation,omitempty"`
	RevokedAt     *time.Time        `json:"revoked_at,omitempty"`
	RevokeOf      string            `json:"revoke_of,omitempty"`
}

// ProposedChange is a partner's proposed change with what it changes.
type ProposedChange struct {
	keydesk.Proposal
	// Diff lists the fields it changes, from the request's value to the
	// proposed one.
	Diff []keydesk.FieldChange `json:"diff"`
}

// HistoryEvent is one audit event of a request.
type HistoryEvent struct {
	At     time.Time     `json:"at"`
	Actor  string        `json:"actor"`
	Action string        `json:"action"`
	From   keydesk.State `json:"from,omitempty"`
	To     keydesk.State `json:"to,omitempty"`
	Change string        `json:"change,omitempty"`
}

// RequestList is GET /api/v1/requests.
type RequestList struct {
	Requests   []Request `json:"requests"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// BatchList is GET /api/v1/batches.
type BatchList struct {
	NextRun *time.Time       `json:"next_run,omitempty"`
	Batches []*keydesk.Batch `json:"batches"`
}

// ErrorBody is every API error.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func (s *Server) apiRequest(r *keydesk.Request, reg *keydesk.Registry) Request {
	out := Request{
		ID: r.ID, State: r.State, Partner: r.Partner, Environment: string(r.Environment),
		Scopes: []string{}, Label: r.Label, Flags: []string{}, Requester: r.Requester,
		SourceMessageID: r.SourceMessageID, Approvals: r.Approvals, KeyID: r.KeyID,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Subject: r.Subject, Problem: r.Problem,
		Revision: r.Revision, ApprovalsNeeded: s.approvalsNeeded(r), WidenedBy: r.WidenedBy,
		Kind: r.KindOf(), Assignee: r.Assignee, DuplicateOf: r.DuplicateOf,
		Reason: r.Reason, ReplacesKeyID: r.ReplacesKeyID, KeyCandidates: r.KeyCandidates,
		Rotation: r.Rotation, RevokedAt: timePtr(r.RevokedAt), RevokeOf: r.RevokeOf,
	}
	if p := r.Proposal; p != nil {
		out.ProposedChange = &ProposedChange{Proposal: *p, Diff: p.Diff(r)}
		if out.ProposedChange.Diff == nil {
			out.ProposedChange.Diff = []keydesk.FieldChange{}
		}
	}
	if out.Approvals == nil {
		out.Approvals = []keydesk.Approval{}
	}
	for _, sc := range r.Scopes {
		out.Scopes = append(out.Scopes, string(sc))
	}
	for _, f := range riskFlags(r, reg, s.now()) {
		out.Flags = append(out.Flags, f.Code)
	}
	return out
}

// api wraps an API handler: a bearer token names the staff member.
func (s *Server) api(h func(w http.ResponseWriter, r *http.Request, st *staff) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok = strings.TrimSpace(tok)
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keydesk"`)
			writeJSONError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Msg: "no bearer token: send Authorization: Bearer <token> (KEYDESK_TOKEN for the CLI)"})
			return
		}
		u, found := s.o.Users().ByToken(tok)
		if !found {
			if !s.logins.allow("", clientIP(r), s.now()) {
				w.Header().Set("Retry-After", strconv.Itoa(int(ipEvery.Seconds())))
				writeJSONError(w, &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Msg: "too many bad tokens from this address: wait and try again"})
				return
			}
			s.log.Warn("review: bad api token", "ip", clientIP(r), "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="keydesk", error="invalid_token"`)
			writeJSONError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Msg: "the token is not valid: check KEYDESK_TOKEN, or ask an admin for a new one"})
			return
		}
		st := staffOf(u)
		if err := h(w, r, st); err != nil {
			e := asError(r.PathValue("id"), err)
			if e.Err != nil || e.Status >= 500 {
				s.log.Error("review: api request failed", "path", r.URL.Path, "status", e.Status, "err", e.Err)
			}
			writeJSONError(w, e)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, e *Error) {
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
	writeJSON(w, e.Status, ErrorBody{Error: e.Msg, Code: e.Code})
}

const (
	defaultLimit = 500
	maxLimit     = 5000
)

// cursor is a position in newest-first order: the (created, id) of the
// last request of a page, base64url of "unixnano id".
func encodeCursor(r *keydesk.Request) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d %s", r.CreatedAt.UnixNano(), r.ID))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) > 100 {
		return time.Time{}, "", errors.New("bad cursor")
	}
	ns, id, ok := strings.Cut(string(b), " ")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || !keydesk.ValidRequestID(id) {
		return time.Time{}, "", errors.New("bad cursor")
	}
	return time.Unix(0, n).UTC(), id, nil
}

func (s *Server) apiListRequests(w http.ResponseWriter, r *http.Request, st *staff) error {
	q := r.URL.Query()
	var f queue.Filter
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			st = strings.TrimSpace(st)
			if !keydesk.State(st).Valid() {
				return errBadRequest("state %q is not a request state: use one of %s", clip(st, 40), stateNames())
			}
			f.States = append(f.States, keydesk.State(st))
		}
	}
	if v := q.Get("environment"); v != "" {
		if !keydesk.Environment(v).Valid() {
			return errBadRequest("environment %q: use sandbox or production", clip(v, 40))
		}
		f.Environment = keydesk.Environment(v)
	}
	f.Partner = q.Get("partner")
	find, err := parseSearch(q, st)
	if err != nil {
		return err
	}
	limit := defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return errBadRequest("limit %q: use a number from 1 to %d", clip(v, 20), maxLimit)
		}
		limit = n
	}
	var curAt time.Time
	var curID string
	if c := q.Get("cursor"); c != "" {
		var err error
		if curAt, curID, err = decodeCursor(c); err != nil {
			return errBadRequest("cursor %q is not one this API gave: start again without it", clip(c, 40))
		}
	}
	all, err := s.o.Queue.List(r.Context(), f)
	if err != nil {
		return err
	}
	slices.Reverse(all) // List is oldest first; the API is newest first
	reg := s.o.Partners()
	out := RequestList{Requests: []Request{}}
	var last *keydesk.Request
	for _, x := range all {
		if curID != "" {
			// Skip up to and including the cursor in (created, id) desc order.
			if c := x.CreatedAt.Compare(curAt); c > 0 || (c == 0 && x.ID >= curID) {
				continue
			}
		}
		if !find.match(x, reg) {
			continue
		}
		if len(out.Requests) == limit {
			out.NextCursor = encodeCursor(last)
			break
		}
		out.Requests = append(out.Requests, s.apiRequest(x, reg))
		last = x
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func stateNames() string {
	var n []string
	for _, s := range keydesk.States {
		n = append(n, string(s))
	}
	return strings.Join(n, ", ")
}

func (s *Server) apiGetRequest(w http.ResponseWriter, r *http.Request, st *staff) error {
	id := strings.ToUpper(r.PathValue("id"))
	if !keydesk.ValidRequestID(id) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no request " + clip(id, 40) + ": request IDs look like KR-20261127-7QX4"}
	}
	req, err := s.o.Queue.Get(r.Context(), id)
	if err != nil {
		return err
	}
	out := s.apiRequest(req, s.o.Partners())
	if h, err := s.o.Queue.History(r.Context(), id, time.Second); err == nil {
		out.History = historyEvents(h)
	}
	th, err := s.thread(r.Context(), id)
	if err != nil {
		return err
	}
	out.Thread = th
	writeJSON(w, http.StatusOK, out)
	return nil
}

func historyEvents(h []queue.AuditEntry) []HistoryEvent {
	out := make([]HistoryEvent, 0, len(h))
	for _, e := range h {
		out = append(out, HistoryEvent{At: e.At, Actor: e.Actor, Action: e.Action, From: e.From, To: e.To, Change: e.Change})
	}
	return out
}

// ActionBody is the body of POST /api/v1/requests/{id}/{action}.
type ActionBody struct {
	Reason string `json:"reason"`
	// Revision, if set, makes the action a compare-and-set on what the
	// caller saw.
	Revision uint64 `json:"revision,omitempty"`
	// Field and Value correct a field (action correct).
	Field string `json:"field,omitempty"`
	Value string `json:"value,omitempty"`
	// Text is a note's or a reply's text (actions notes, reply).
	Text string `json:"text,omitempty"`
	// User is who to assign the request to, "" for nobody (action
	// assign): a pointer, so that leaving it out is an error, not an
	// unassignment.
	User *string `json:"user,omitempty"`
	// KeyID is the key picked among a request's candidates (action key).
	KeyID string `json:"key_id,omitempty"`
}

// decodeBody reads a small JSON body into v; an empty body leaves v as
// it is. shape shows the caller what was expected.
func decodeBody(r *http.Request, v any, shape string) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return errBadRequest("the body is too large or unreadable")
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadRequest("the body is not the expected JSON %s: %v", shape, err)
	}
	return nil
}

func (s *Server) apiAction(w http.ResponseWriter, r *http.Request, st *staff) error {
	var body ActionBody
	if err := decodeBody(r, &body, `{"reason": "..."}`); err != nil {
		return err
	}
	var err error
	a := action{By: *st, ID: strings.ToUpper(r.PathValue("id")), Revision: body.Revision, Reason: body.Reason, Field: body.Field, Value: body.Value, Via: "api"}
	act := r.PathValue("action")
	if d := r.PathValue("decision"); d != "" {
		act = "proposal/" + d
	}
	var res *result
	switch act {
	case "approve":
		res, err = s.approve(r.Context(), a)
	case "reject":
		res, err = s.reject(r.Context(), a)
	case "cancel":
		res, err = s.cancel(r.Context(), a)
	case "correct":
		res, err = s.correct(r.Context(), a)
	case "retry":
		res, err = s.retry(r.Context(), a)
	case "revoke-replace":
		res, err = s.revokeAndReplace(r.Context(), a)
	case "notes":
		res, err = s.addNote(r.Context(), a, body.Text)
	case "reply":
		res, err = s.sendReply(r.Context(), a, body.Text)
	case "assign":
		if body.User == nil {
			return errBadRequest(`name the user: {"user": "alice"}, or {"user": ""} to unassign`)
		}
		res, err = s.assign(r.Context(), a, *body.User)
	case "proposal/accept":
		res, err = s.acceptProposal(r.Context(), a)
	case "proposal/refuse":
		res, err = s.refuseProposal(r.Context(), a)
	case "key":
		res, err = s.pickKey(r.Context(), a, body.KeyID)
	default:
		return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no action " + clip(r.PathValue("action"), 40) + ": use approve, reject, cancel, correct, retry, revoke-replace, notes, reply, assign, key, proposal/accept, proposal/refuse or rotation/confirm"}
	}
	if err != nil {
		return err
	}
	out := s.apiRequest(res.Request, s.o.Partners())
	out.Message, out.Warning = res.Message, res.Warning
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) apiListBatches(w http.ResponseWriter, r *http.Request, st *staff) error {
	list, err := s.o.Queue.ListBatches(r.Context())
	if err != nil {
		return err
	}
	if len(list) > maxBatches {
		list = list[:maxBatches]
	}
	out := BatchList{Batches: list}
	if out.Batches == nil {
		out.Batches = []*keydesk.Batch{}
	}
	if s.o.NextRun != nil {
		if n := s.o.NextRun(s.now()); !n.IsZero() {
			out.NextRun = &n
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) apiRunBatch(w http.ResponseWriter, r *http.Request, st *staff) error {
	_, b, err := s.runBatch(r.Context(), *st)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, b)
	return nil
}
