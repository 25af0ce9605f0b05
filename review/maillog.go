package review

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
)

// MailEntry is one email intake took out of the inbox, as the mail log
// shows it. Every text field came from an email and is hostile: the log
// bounds and cleans it before showing it (see cleanMail).
type MailEntry struct {
	// Ref names the email (queue.MailRef of its source key).
	Ref string `json:"ref"`
	// At is when intake recorded its outcome.
	At        time.Time `json:"at"`
	From      string    `json:"from"`
	Subject   string    `json:"subject"`
	MessageID string    `json:"message_id,omitempty"`
	// Outcome is intake's verdict: accept, reject, review, ignore,
	// malformed, too-large, poison.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// MovedTo is the mailbox the email was moved to.
	MovedTo string `json:"moved_to"`
	UID     uint32 `json:"uid"`
	Size    int64  `json:"size"`
	// Requests are the IDs of the requests it made.
	Requests []string `json:"requests"`
}

// MailList is GET /api/v1/mail: a page of the mail log, newest first, and
// the count per outcome of the whole log.
type MailList struct {
	Mail       []MailEntry    `json:"mail"`
	Counts     map[string]int `json:"counts"`
	Total      int            `json:"total"`
	Matched    int            `json:"matched"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// Bounds of the mail log: what an email put in its record cannot make a
// page huge, and one request cannot ask for everything at once.
const (
	mailPage     = 100
	mailMaxLimit = 1000
	maxMailLog   = 100_000 // entries considered at all; the oldest beyond are left out
	maxFromLen   = 200
	maxSubjLen   = 300
	maxReasonLen = 1000
	maxMailReqs  = 50
)

// mailOutcomes are the outcomes intake records, in the order the counts
// show them; any other is shown after them.
var mailOutcomes = []string{"accept", "review", "reject", "ignore", "malformed", "too-large", "poison"}

// outcomeClass maps an outcome to the state colours of the queue page.
func outcomeClass(o string) string {
	switch o {
	case "accept":
		return "ok"
	case "review":
		return "pending"
	case "ignore":
		return "closed"
	}
	return "bad"
}

// mailFilter is what a mail log page or API call asks for.
type mailFilter struct {
	Outcome string
	Sender  string
	Limit   int
	Cursor  string
	curAt   time.Time
	curRef  string
}

func parseMailFilter(q url.Values, limit int) (*mailFilter, error) {
	f := &mailFilter{Outcome: strings.TrimSpace(q.Get("outcome")), Sender: strings.TrimSpace(q.Get("sender")), Limit: limit, Cursor: q.Get("cursor")}
	if len(f.Outcome) > 40 || strings.ContainsFunc(f.Outcome, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '-' || r == '_') }) {
		return nil, errBadRequest("outcome %q is not an intake outcome: use one of %s", clip(f.Outcome, 40), strings.Join(mailOutcomes, ", "))
	}
	if len(f.Sender) > 200 {
		return nil, errBadRequest("the sender filter is longer than 200 characters")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > mailMaxLimit {
			return nil, errBadRequest("limit %q: use a number from 1 to %d", clip(v, 20), mailMaxLimit)
		}
		f.Limit = n
	}
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		ns, ref, ok := strings.Cut(string(b), " ")
		n, perr := strconv.ParseInt(ns, 10, 64)
		if err != nil || len(b) > 200 || !ok || perr != nil || ref == "" {
			return nil, errBadRequest("cursor %q is not one this log gave: start again without it", clip(f.Cursor, 40))
		}
		f.curAt, f.curRef = time.Unix(0, n).UTC(), ref
	}
	return f, nil
}

func mailCursor(e MailEntry) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d %s", e.At.UnixNano(), e.Ref))
}

// newestFirst orders the log by time, then by ref so that paging is stable.
func newestFirst(a, b MailEntry) int {
	if c := b.At.Compare(a.At); c != 0 {
		return c
	}
	return strings.Compare(b.Ref, a.Ref)
}

var errNoMailLog = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Msg: "the mail log is not available on this server"}

// mailLog reads the log and returns the page f asks for.
func (s *Server) mailLog(ctx context.Context, f *mailFilter) (*MailList, error) {
	if s.o.Mail == nil {
		return nil, errNoMailLog
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	all, err := s.o.Mail(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Msg: "reading the mail log took too long: try again", Err: err}
		}
		return nil, &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "the mail log could not be read; the log has the cause", Err: err}
	}
	slices.SortFunc(all, newestFirst)
	if len(all) > maxMailLog {
		all = all[:maxMailLog]
	}
	out := &MailList{Mail: []MailEntry{}, Counts: map[string]int{}, Total: len(all)}
	sender := strings.ToLower(f.Sender)
	for _, e := range all {
		e.Outcome = clip(toLine(e.Outcome), 40)
		out.Counts[e.Outcome]++
		if f.Outcome != "" && e.Outcome != f.Outcome {
			continue
		}
		if sender != "" && !strings.Contains(strings.ToLower(e.From), sender) {
			continue
		}
		out.Matched++
		if f.curRef != "" && newestFirst(e, MailEntry{At: f.curAt, Ref: f.curRef}) <= 0 {
			continue // at or before the cursor
		}
		if len(out.Mail) == f.Limit {
			if out.NextCursor == "" {
				out.NextCursor = mailCursor(out.Mail[len(out.Mail)-1])
			}
			continue
		}
		out.Mail = append(out.Mail, cleanMail(e))
	}
	return out, nil
}

// cleanMail bounds and cleans what an email wrote into its entry: one
// line of text without control or bidi characters, request IDs that are
// request IDs.
func cleanMail(e MailEntry) MailEntry {
	e.Ref = clip(toLine(e.Ref), 100)
	e.From = clip(toLine(e.From), maxFromLen)
	e.Subject = clip(toLine(e.Subject), maxSubjLen)
	e.MessageID = clip(toLine(e.MessageID), maxFromLen)
	e.Reason = clip(toLine(e.Reason), maxReasonLen)
	e.MovedTo = clip(toLine(e.MovedTo), 100)
	reqs := []string{}
	for _, id := range e.Requests {
		if len(reqs) < maxMailReqs && keydesk.ValidRequestID(id) {
			reqs = append(reqs, id)
		}
	}
	e.Requests = reqs
	return e
}

// toLine is toText on one line.
func toLine(s string) string {
	return keydesk.SafeLine(s, 0)
}

// --- page ---

type mailLogView struct {
	List     *MailList
	Outcome  string
	Sender   string
	Counts   []outcomeCount
	Query    string // the filters, for the paging links
	Paged    bool   // this is not the first page
	Outcomes []string
}

type outcomeCount struct {
	Outcome string
	N       int
}

func (s *Server) getMail(w http.ResponseWriter, r *http.Request, st *staff) error {
	f, err := parseMailFilter(r.URL.Query(), mailPage)
	if err != nil {
		return err
	}
	list, err := s.mailLog(r.Context(), f)
	if err != nil {
		return err
	}
	v := &mailLogView{List: list, Outcome: f.Outcome, Sender: f.Sender, Paged: f.Cursor != ""}
	for _, o := range mailOutcomes {
		if n := list.Counts[o]; n > 0 {
			v.Counts = append(v.Counts, outcomeCount{o, n})
		}
	}
	var other []outcomeCount
	for o, n := range list.Counts {
		if !slices.Contains(mailOutcomes, o) {
			other = append(other, outcomeCount{o, n})
		}
	}
	slices.SortFunc(other, func(a, b outcomeCount) int { return cmp.Compare(a.Outcome, b.Outcome) })
	v.Counts = append(v.Counts, other...)
	for _, c := range v.Counts {
		v.Outcomes = append(v.Outcomes, c.Outcome)
	}
	if f.Outcome != "" && !slices.Contains(v.Outcomes, f.Outcome) {
		v.Outcomes = append(v.Outcomes, f.Outcome)
	}
	vals := url.Values{}
	if f.Outcome != "" {
		vals.Set("outcome", f.Outcome)
	}
	if f.Sender != "" {
		vals.Set("sender", f.Sender)
	}
	v.Query = vals.Encode()
	s.render(w, http.StatusOK, "mail", pageData{Title: "Mail", Nav: "mail", Staff: st, Mail: v})
	return nil
}

func (s *Server) apiListMail(w http.ResponseWriter, r *http.Request, st *staff) error {
	f, err := parseMailFilter(r.URL.Query(), mailPage)
	if err != nil {
		return err
	}
	list, err := s.mailLog(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}
