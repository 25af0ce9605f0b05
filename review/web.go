package review

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
)

// pageData is what every page template sees; each page uses its part.
type pageData struct {
	Title  string
	Nav    string
	Staff  *staff
	Error  string
	Notice string
	Now    time.Time

	// login
	Next     string
	Username string
	// SSO is the single sign-on button's words ("": none); SSODown says
	// the provider did not answer the last try; Passwords shows the
	// password form (review.local_login); Continue, once signed in by
	// single sign-on, is the page to move on to.
	SSO       string
	SSODown   bool
	Passwords bool
	Continue  string

	// queue
	Queue *queueView

	// request
	Req *requestView

	// batches
	Batches *batchesView

	// audit
	Audit *auditView

	// mail log
	Mail *mailLogView

	// partners and one partner's keys
	Partners *partnersView
	Partner  *partnerView
}

// CSRF is the session's form token.
func (p pageData) CSRF() string {
	if p.Staff == nil || p.Staff.sess == nil {
		return ""
	}
	return p.Staff.sess.CSRF
}

// Can reports whether the signed-in staff member has role need.
func (p pageData) Can(need string) bool {
	return p.Staff != nil && p.Staff.Role.Can(users.Role(need))
}

func (s *Server) render(w http.ResponseWriter, status int, page string, d pageData) {
	if d.Now.IsZero() {
		d.Now = s.now()
	}
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		s.log.Error("review: render", "page", page, "err", err)
		http.Error(w, "the page could not be rendered; the log has the cause", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"ago": func(t time.Time) string { return ago(s.now(), t) },
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(s.o.Location).Format("2006-01-02 15:04 MST")
		},
		"whenUTC": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"fingerprint":  groupFingerprint,
		"grants":       func(sc keydesk.Scope) string { return sc.Grants() },
		"join":         strings.Join,
		"stateClass":   stateClass,
		"outcomeClass": outcomeClass,
		"scopeList":    scopeList,
		"add":          func(a, b int) int { return a + b },
		"until":        func(t time.Time) string { return ago(t, s.now()) },
		"list":         func(xs ...string) []string { return xs },
	}
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func groupFingerprint(fp string) string {
	var b strings.Builder
	for i, r := range fp {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func stateClass(st keydesk.State) string {
	switch st {
	case keydesk.StatePendingReview, keydesk.StateReceived:
		return "pending"
	case keydesk.StateApproved, keydesk.StateGenerating, keydesk.StateGenerated:
		return "progress"
	case keydesk.StateDelivered:
		return "ok"
	case keydesk.StateRejected, keydesk.StateCancelled, keydesk.StateRevoked:
		return "closed"
	}
	return "bad"
}

// --- login ---

func (s *Server) getLogin(w http.ResponseWriter, r *http.Request) {
	if st, _ := s.sessionStaff(r); st != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	d := pageData{Next: safeNext(r.URL.Query().Get("next"))}
	if s.rp != nil && s.rp.down() {
		d.Error = s.ssoDownText()
	}
	s.renderLogin(w, http.StatusOK, d)
}

// renderLogin shows the sign-in page: the single sign-on button, and
// the password form unless review.local_login is false.
func (s *Server) renderLogin(w http.ResponseWriter, status int, d pageData) {
	if d.Title == "" {
		d.Title = "Sign in"
	}
	if s.rp != nil {
		d.SSO, d.SSODown = s.rp.o.DisplayName, s.rp.down()
	}
	d.Passwords = !s.o.PasswordLoginOff
	s.render(w, status, "login", d)
}

func (s *Server) postLogin(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	d := pageData{Title: "Sign in", Next: next, Username: clip(name, 64)}
	if s.o.PasswordLoginOff {
		s.actions.Inc("login-failed")
		d.Error = "Password sign-in is off here (review.local_login: false): sign in with single sign-on."
		s.renderLogin(w, http.StatusForbidden, d)
		return
	}
	if len(name) > 64 {
		name = name[:64]
	}
	if !s.logins.allow(name, clientIP(r), s.now()) {
		s.actions.Inc("login-throttled")
		s.loginAttempt(r.Context(), name, clientIP(r), true)
		w.Header().Set("Retry-After", strconv.Itoa(int(nameEvery.Seconds())))
		d.Error = "Too many sign-in attempts. Wait a minute and try again."
		s.renderLogin(w, http.StatusTooManyRequests, d)
		return
	}
	u, err := s.o.Users().Authenticate(name, password)
	if err != nil {
		s.actions.Inc("login-failed")
		s.loginAttempt(r.Context(), name, clientIP(r), false)
		// The name as typed may be a password: only its digest is logged.
		rec, _ := s.recordName(name)
		s.log.Debug("review: login failed", "user", rec, "ip", clientIP(r))
		d.Error = "Wrong name or password."
		s.renderLogin(w, http.StatusUnauthorized, d)
		return
	}
	if err := s.newSession(r.Context(), w, u.Name); err != nil {
		s.renderError(w, r, nil, asError("", err))
		return
	}
	s.actions.Inc("login")
	s.audit(r.Context(), staff{Name: u.Name}, "login", u.Name, "from "+clientIP(r))
	s.log.Info("review: login", "user", u.Name, "ip", clientIP(r))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) postLogout(w http.ResponseWriter, r *http.Request, st *staff) error {
	s.endSession(r.Context(), st)
	s.clearCookie(w)
	s.audit(r.Context(), *st, "logout", "", "")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// --- request page ---

type requestView struct {
	R          *keydesk.Request
	Flags      []flagView
	Partner    *keydesk.Partner
	KeyExpiry  string
	KeyWarn    bool
	FourEyes   bool
	Need       int
	History    []queue.AuditEntry
	Mail       *mailView
	CanApprove bool
	// NoApprove, for a request pending review, says why Approve is not
	// offered (approveRefusal).
	NoApprove  string
	CanReject  bool
	CanCancel  bool
	CanRetry   bool
	CanCorrect bool
	ApprovedBy bool
	// WidenedByYou: the signed-in person widened the request by a
	// correction, so cannot approve it.
	WidenedByYou bool
	// Reauth: the person signed in at the identity provider too long ago
	// to approve (review.oidc.reauth_after).
	Reauth     bool
	ScopesText string
	// The conversation: its thread, oldest first; the partner's proposed
	// change as a diff; the staff a request can be assigned to.
	Thread      []keydesk.ThreadEntry
	Diff        []keydesk.FieldChange
	Staff       []string
	CanConverse bool
	Form        url.Values // what the person typed, kept after an error
	AllScopes   []keydesk.Scope
	Envs        []keydesk.Environment
	// The key's life: the key a revoke or rotate is about, with what the
	// inventory says of it; the candidates a label matched; whether the
	// person may pick one, or confirm a delivered rotation.
	Kind       keydesk.RequestKind
	Key        *keyFacts
	Candidates []*keyFacts
	CanPick    bool
	CanConfirm bool
	StaffMade  bool
}

// done messages after an action, by code, so no text travels in URLs.
var doneMessages = map[string]string{
	"approved":        "Approved. The next batch creates the key.",
	"approval1":       "Your approval is recorded: four eyes needs a second approver.",
	"rejected":        "Rejected. The requester is told why.",
	"rejected-silent": "Rejected. The sender is unknown, so no reply is sent.",
	"rejected-staff":  "Rejected. Staff asked for it, so no email is sent.",
	"rejected-unsent": "Rejected, but the email to the requester could not be queued (the log has the cause): tell them yourself.",
	"cancelled":       "Cancelled.",
	"corrected":       "Corrected.",
	"corrected-wider": "Corrected. This correction widens access (a new scope, keys:manage or production): you made it, so you cannot approve this request; another approver must.",
	"retried":         "Back to approved: the next batch tries again.",
	"revoke-replaced": "Revocation approved (or your approval recorded, under four eyes), and a replacement key requested: it waits for approval like any new key.",
	// the conversation
	"noted":                   "Note added.",
	"replied":                 "Reply queued to the requester: it is sent within a minute and then shows in the thread.",
	"assigned":                "Assignment saved.",
	"proposal-accepted":       "Change accepted. The request waits for approval; the requester is told.",
	"proposal-accepted-wider": "Change accepted. It widens access (a new scope, keys:manage or production): you accepted it, so you cannot approve this request; another approver must. The requester is told.",
	"proposal-refused":        "Change refused: the fields are kept and the request waits for approval; the requester is told.",
	"proposal-unsent":         "Your decision on the change is recorded, but the email to the requester could not be queued (the log has the cause): tell them yourself.",
	// the key's life
	"asked-revoke":       "Revocation asked: it waits for approval, and the key is revoked at once when approved.",
	"asked-rotate":       "Rotation asked: it waits for approval; the next batch then makes the new key.",
	"approved-revoke":    "Approved. The batch role revokes the key now.",
	"approved-rotate":    "Approved. The next batch makes the new key; the old one is revoked when the contact confirms, or at the end of the grace.",
	"approved-unrun":     "Approved, but the immediate run could not be requested (the log has the cause): the next batch revokes it, or ask for a run now on the Batches page.",
	"key-picked":         "Key picked: the request waits for approval.",
	"rotation-confirmed": "Rotation confirmed: the batch role revokes the old key on its next pass.",
	"refresh":            "A new listing of the partners' keys is asked for: a batch worker lists them shortly; reload this page then.",
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, st *staff) error {
	notice := doneMessages[r.URL.Query().Get("done")]
	return s.showRequest(w, r, st, http.StatusOK, notice, "", nil)
}

func (s *Server) showRequest(w http.ResponseWriter, r *http.Request, st *staff, status int, notice, errMsg string, form url.Values) error {
	id := strings.ToUpper(r.PathValue("id"))
	if !keydesk.ValidRequestID(id) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no request " + clip(id, 40) + ": request IDs look like KR-20261127-7QX4"}
	}
	ctx := r.Context()
	req, err := s.o.Queue.Get(ctx, id)
	if err != nil {
		return err
	}
	v := s.requestView(ctx, st, req)
	v.Form = form
	if form != nil {
		v.ScopesText = form.Get("value")
	}
	s.render(w, status, "request", pageData{Title: req.ID, Nav: "queue", Staff: st, Req: v, Notice: notice, Error: errMsg})
	return nil
}

func (s *Server) requestView(ctx context.Context, st *staff, req *keydesk.Request) *requestView {
	now := s.now()
	reg := s.o.Partners()
	v := &requestView{
		R: req, Flags: riskFlags(req, reg, now), FourEyes: s.fourEyes(req), Need: s.approvalsNeeded(req),
		ScopesText: scopeList(req.Scopes), AllScopes: keydesk.Scopes, Envs: keydesk.Environments,
		ApprovedBy: req.ApprovedByPerson(st.person()), WidenedByYou: s.widenedBy(req, *st),
		Reauth: s.needsReauth(*st),
	}
	if p, ok := reg.Partner(req.Partner); ok {
		v.Partner = p
		if exp := p.TechnicalContact.KeyExpires; exp.IsZero() {
			v.KeyExpiry = "does not expire"
		} else {
			days := int(exp.Sub(now).Hours() / 24)
			v.KeyExpiry = fmt.Sprintf("%s (in %d days)", exp.In(s.o.Location).Format("2006-01-02"), days)
			if days < 0 {
				v.KeyExpiry = fmt.Sprintf("%s (EXPIRED %d days ago)", exp.In(s.o.Location).Format("2006-01-02"), -days)
			}
			v.KeyWarn = days < 30
		}
	}
	can := st.Role.Can(users.Approver)
	waiting := req.State == keydesk.StatePendingReview || req.State == keydesk.StateReceived
	if req.State == keydesk.StatePendingReview {
		v.CanApprove, v.NoApprove = s.approveOffer(req, *st)
	}
	v.CanReject = can && waiting
	v.CanCorrect = can && waiting && req.KindOf() == keydesk.KindIssue
	v.CanCancel = can && slices.Contains(cancelStates, req.State)
	v.CanRetry = can && (req.State == keydesk.StateBlocked || req.State == keydesk.StateFailed)
	v.CanConverse = can
	if req.Proposal != nil {
		v.Diff = req.Proposal.Diff(req)
	}
	for _, u := range s.o.Users().All() {
		v.Staff = append(v.Staff, u.Name)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v.Kind, v.StaffMade = req.KindOf(), staffMade(req)
	switch {
	case v.Kind == keydesk.KindRevoke && req.KeyID != "":
		v.Key = s.keyFactsOf(hctx, req, req.KeyID)
	case v.Kind == keydesk.KindRotate && req.ReplacesKeyID != "":
		v.Key = s.keyFactsOf(hctx, req, req.ReplacesKeyID)
	}
	if v.Kind != keydesk.KindIssue {
		for _, id := range req.KeyCandidates {
			v.Candidates = append(v.Candidates, s.keyFactsOf(hctx, req, id))
		}
		v.CanPick = can && len(req.KeyCandidates) > 0 && waiting
	}
	v.CanConfirm = can && v.Kind == keydesk.KindRotate && req.State == keydesk.StateDelivered &&
		(req.Rotation == nil || (req.Rotation.ConfirmedAt.IsZero() && req.Rotation.OldRevokedAt.IsZero()))
	// The audit stream is filled by the server a moment after a change:
	// wait briefly so the page shows the action just taken.
	if h, err := s.o.Queue.History(hctx, req.ID, time.Second); err == nil {
		v.History = h
	} else {
		s.log.Warn("review: history", "request", req.ID, "err", err)
	}
	v.Mail = s.loadMail(hctx, req)
	if th, err := s.thread(hctx, req.ID); err == nil {
		v.Thread = th
	} else {
		s.log.Warn("review: thread", "request", req.ID, "err", err)
	}
	return v
}

// errNoAction answers a form posted to an action the request page has not.
var errNoAction = &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no such action"}

// approvedDone is the banner code of an approval's outcome.
func approvedDone(res *result, err error) string {
	switch {
	case err != nil:
	case res.Request.State == keydesk.StatePendingReview:
		return "approval1"
	case res.Unsent:
		return "approved-unrun"
	case res.Request.KindOf() == keydesk.KindRevoke:
		return "approved-revoke"
	case res.Request.KindOf() == keydesk.KindRotate:
		return "approved-rotate"
	}
	return "approved"
}

// decideProposal accepts or refuses (decision) the request's proposed
// change, and says the banner code of the outcome.
func (s *Server) decideProposal(ctx context.Context, a action, decision string) (res *result, done string, err error) {
	switch decision {
	case "accept":
		res, err = s.acceptProposal(ctx, a)
		done = "proposal-accepted"
		if err == nil && res.Warning != "" {
			done = "proposal-accepted-wider"
		}
	case "refuse":
		res, err = s.refuseProposal(ctx, a)
		done = "proposal-refused"
	default:
		return nil, "", errNoAction
	}
	if err == nil && res.Unsent {
		done = "proposal-unsent"
	}
	return res, done, err
}

// showFailed answers an action that failed: the request page again, as
// the request is now, with what went wrong and what the person typed —
// but never a secret, not even theirs. A missing request or a server
// fault is an error page.
func (s *Server) showFailed(w http.ResponseWriter, r *http.Request, st *staff, a action, err error) error {
	e := asError(a.ID, err)
	if e.Status == http.StatusNotFound || e.Status >= 500 {
		return e
	}
	form := r.PostForm
	if t := form.Get("text"); keydesk.HoldsSecret(t) {
		form = maps.Clone(form)
		form.Set("text", keydesk.RedactSecrets(t))
	}
	return s.showRequest(w, r, st, e.Status, "", e.Msg, form)
}

func (s *Server) postRequest(w http.ResponseWriter, r *http.Request, st *staff) error {
	a := action{By: *st, ID: strings.ToUpper(r.PathValue("id")), Reason: r.PostFormValue("reason"),
		Field: r.PostFormValue("field"), Value: r.PostFormValue("value"), Via: "web"}
	if rev := r.PostFormValue("revision"); rev != "" {
		n, err := strconv.ParseUint(rev, 10, 64)
		if err != nil {
			return errBadRequest("bad revision")
		}
		a.Revision = n
	}
	var res *result
	var err error
	var done string
	act := r.PathValue("action")
	if r.PathValue("decision") != "" {
		act = "proposal"
	}
	switch act {
	case "approve":
		res, err = s.approve(r.Context(), a)
		done = approvedDone(res, err)
	case "key":
		_, err = s.pickKey(r.Context(), a, r.PostFormValue("key_id"))
		done = "key-picked"
	case "reject":
		res, err = s.reject(r.Context(), a)
		done = "rejected"
	case "cancel":
		res, err = s.cancel(r.Context(), a)
		done = "cancelled"
	case "correct":
		res, err = s.correct(r.Context(), a)
		done = "corrected"
		if err == nil && res.Warning != "" {
			done = "corrected-wider"
		}
	case "retry":
		res, err = s.retry(r.Context(), a)
		done = "retried"
	case "revoke-replace":
		res, err = s.revokeAndReplace(r.Context(), a)
		done = "revoke-replaced"
	case "notes":
		_, err = s.addNote(r.Context(), a, r.PostFormValue("text"))
		done = "noted"
	case "reply":
		_, err = s.sendReply(r.Context(), a, r.PostFormValue("text"))
		done = "replied"
	case "assign":
		_, err = s.assign(r.Context(), a, r.PostFormValue("user"))
		done = "assigned"
	case "proposal":
		if res, done, err = s.decideProposal(r.Context(), a, r.PathValue("decision")); err == errNoAction {
			return err
		}
	default:
		return errNoAction
	}
	if err != nil {
		return s.showFailed(w, r, st, a, err)
	}
	if done == "rejected" {
		for code, msg := range doneMessages {
			if msg == res.Message {
				done = code
			}
		}
	}
	http.Redirect(w, r, "/requests/"+url.PathEscape(a.ID)+"?done="+done, http.StatusSeeOther)
	return nil
}

// --- batches ---

type batchesView struct {
	Next     time.Time
	Location string
	List     []*keydesk.Batch
}

const maxBatches = 100

func (s *Server) getBatches(w http.ResponseWriter, r *http.Request, st *staff) error {
	return s.showBatches(w, r, st, "")
}

func (s *Server) showBatches(w http.ResponseWriter, r *http.Request, st *staff, notice string) error {
	v := &batchesView{Location: s.o.Location.String()}
	if s.o.NextRun != nil {
		v.Next = s.o.NextRun(s.now())
	}
	list, err := s.o.Queue.ListBatches(r.Context())
	if err != nil {
		return err
	}
	if len(list) > maxBatches {
		list = list[:maxBatches]
	}
	v.List = list
	s.render(w, http.StatusOK, "batches", pageData{Title: "Batches", Nav: "batches", Staff: st, Batches: v, Notice: notice})
	return nil
}

func (s *Server) postBatches(w http.ResponseWriter, r *http.Request, st *staff) error {
	res, _, err := s.runBatch(r.Context(), *st)
	if err != nil {
		return err
	}
	return s.showBatches(w, r, st, res.Message)
}

// --- audit ---

type auditView struct {
	Entries []queue.AuditEntry
	Kind    string
	Ref     string
	Actor   string
	Action  string
	Older   uint64 // the "before" cursor of the next page; 0: none
	Query   string // the filters, for the export link
}

// auditWindow bounds how far back one audit page reads.
const (
	auditWindow = 5000
	auditPage   = 300
)

var auditKinds = []string{"request", "batch", "staff", "system"}

func parseAuditFilter(q url.Values) (*auditView, error) {
	v := &auditView{Kind: q.Get("kind"), Ref: strings.TrimSpace(q.Get("ref")), Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action"))}
	if v.Kind != "" && !slices.Contains(auditKinds, v.Kind) {
		return nil, errBadRequest("kind %q: use request, batch, staff or system", clip(v.Kind, 40))
	}
	if v.Ref != "" && v.Kind == "" {
		if keydesk.ValidRequestID(v.Ref) {
			v.Kind = "request"
		} else {
			return nil, errBadRequest("choose a kind to filter on a reference")
		}
	}
	if v.Kind == "request" && v.Ref != "" {
		v.Ref = strings.ToUpper(v.Ref)
	}
	for _, f := range []string{v.Ref, v.Actor, v.Action} {
		if len(f) > 100 {
			return nil, errBadRequest("a filter is longer than 100 characters")
		}
	}
	return v, nil
}

func (v *auditView) match(e queue.AuditEntry) bool {
	return (v.Actor == "" || strings.EqualFold(e.Actor, v.Actor)) && (v.Action == "" || strings.EqualFold(e.Action, v.Action))
}

func (v *auditView) query() queue.AuditQuery {
	return queue.AuditQuery{Kind: v.Kind, Ref: v.Ref}
}

func (s *Server) auditLastSeq(ctx context.Context) (uint64, error) {
	info, err := s.o.Queue.StreamInfo(ctx, queue.StreamAudit)
	if err != nil {
		return 0, err
	}
	return info.LastSeq, nil
}

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request, st *staff) error {
	q := r.URL.Query()
	v, err := parseAuditFilter(q)
	if err != nil {
		return err
	}
	ctx := r.Context()
	before, _ := strconv.ParseUint(q.Get("before"), 10, 64)
	if before == 0 {
		last, err := s.auditLastSeq(ctx)
		if err != nil {
			return err
		}
		before = last + 1
	}
	aq := v.query()
	if before > auditWindow {
		aq.After = before - 1 - auditWindow
	}
	entries, err := s.o.Queue.Audit(ctx, aq)
	if err != nil {
		return err
	}
	for i := len(entries) - 1; i >= 0 && len(v.Entries) < auditPage; i-- {
		e := entries[i]
		if e.Seq < before && v.match(e) {
			v.Entries = append(v.Entries, e)
		}
	}
	if aq.After > 0 || len(v.Entries) == auditPage {
		low := aq.After + 1
		if n := len(v.Entries); n == auditPage {
			low = v.Entries[n-1].Seq
		}
		if low > 1 {
			v.Older = low
		}
	}
	vals := url.Values{}
	for k, x := range map[string]string{"kind": v.Kind, "ref": v.Ref, "actor": v.Actor, "action": v.Action} {
		if x != "" {
			vals.Set(k, x)
		}
	}
	v.Query = vals.Encode()
	s.render(w, http.StatusOK, "audit", pageData{Title: "Audit", Nav: "audit", Staff: st, Audit: v})
	return nil
}

// auditLine is one exported audit event.
type auditLine struct {
	Seq   uint64        `json:"seq"`
	Kind  string        `json:"kind"`
	Event keydesk.Event `json:"event"`
	State keydesk.State `json:"state,omitempty"`
}

// getAuditExport streams every matching event as JSON lines, oldest
// first, reading the stream in pages so memory stays bounded.
func (s *Server) getAuditExport(w http.ResponseWriter, r *http.Request, st *staff) error {
	v, err := parseAuditFilter(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	aq := v.query()
	aq.Limit = 1000
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="keydesk-audit.jsonl"`)
	enc := json.NewEncoder(w)
	n := 0
	for {
		page, err := s.o.Queue.Audit(ctx, aq)
		if err != nil {
			if n == 0 {
				return err
			}
			s.log.Error("review: audit export cut short", "err", err)
			return nil
		}
		for _, e := range page {
			if !v.match(e) {
				continue
			}
			l := auditLine{Seq: e.Seq, Kind: e.Kind, Event: e.Event}
			if e.Request != nil {
				l.State = e.Request.State
			}
			if err := enc.Encode(l); err != nil {
				return nil
			}
			n++
		}
		if len(page) < aq.Limit {
			break
		}
		aq.After = page[len(page)-1].Seq
	}
	s.audit(ctx, *st, "audit-export", st.Name, fmt.Sprintf("%d events", n))
	return nil
}
