package review

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// The queue page (/queue): views, search, flags ranked by severity, ages
// against review.age_target, an Approve on each row that can take one,
// and pages of queuePage rows.

// queue views, by their ?view= value; the first is the default.
var queueViews = []struct{ Key, Name string }{
	{"mine", "Waiting for me"},
	{"open", "All open"},
	{"assigned", "Assigned to me"},
	{"all", "Everything"},
}

const (
	// queuePage is how many rows one queue page shows.
	queuePage = 100
	// maxSearch bounds a search (the box, the API's q), in characters.
	maxSearch = 100
)

// inView reports whether r belongs in view for the staff member name.
func inView(view string, r *keydesk.Request, name string) bool {
	switch view {
	case "mine":
		return waitingFor(r, name)
	case "open":
		return !r.State.Done()
	case "assigned":
		return r.Assignee == name && !r.State.Done()
	}
	return true
}

// waitingFor is "Waiting for me": pending review, not approved by name
// yet, and assigned to name or to nobody.
func waitingFor(r *keydesk.Request, name string) bool {
	return r.State == keydesk.StatePendingReview && !r.ApprovedBy(name) && (r.Assignee == "" || r.Assignee == name)
}

// searchMatch reports whether r matches the search q (lower case,
// trimmed): a case-insensitive substring of its ID, label, sender
// address, or partner ID or name. why names the field, and the value
// where the row does not show it (a partner's name).
func searchMatch(r *keydesk.Request, reg *keydesk.Registry, q string) (why string, ok bool) {
	has := func(s string) bool { return s != "" && strings.Contains(strings.ToLower(s), q) }
	switch {
	case has(r.ID):
		return "ID", true
	case has(r.Label):
		return "label", true
	case has(r.Requester):
		return "sender", true
	case has(r.Partner):
		return "partner", true
	}
	if p, ok := reg.Partner(r.Partner); ok && has(p.Name) {
		return "partner " + p.Name, true
	}
	return "", false
}

// severity ranks flags: what may be forged or outside what the partner
// may have stands out from what only needs care.
type severity int

const (
	sevNone severity = iota
	sevInfo
	sevMedium
	sevHigh
)

// Class is the CSS class suffix and the word shown to screen readers.
func (s severity) Class() string {
	switch s {
	case sevHigh:
		return "high"
	case sevMedium:
		return "medium"
	case sevInfo:
		return "info"
	}
	return ""
}

// flagView is one risk flag as shown.
type flagView struct {
	Code     string
	Text     string
	Title    string
	Severity severity
	// Level is the severity's class: high, medium or info.
	Level string
}

type flagInfo struct {
	flag keydesk.Flag
	view flagView
}

// flagTexts are the known flags, highest severity first; within one
// severity, the order in which a row shows them.
var flagTexts = []flagInfo{
	{keydesk.FlagSecretExposed, flagView{Text: "secret exposed", Title: "a live API secret was pasted in the email: it was redacted; revoke the key it belongs to and delete the email from the mailbox", Severity: sevHigh}},
	{keydesk.FlagUnknownSender, flagView{Text: "unknown sender", Title: "the sender is no requester of a registered partner", Severity: sevHigh}},
	{keydesk.FlagDMARCNotPassed, flagView{Text: "DMARC not passed", Title: "our MTA did not stamp dmarc=pass: the sender may be forged", Severity: sevHigh}},
	{keydesk.FlagScopeNotAllowed, flagView{Text: "scope not allowed", Title: "a scope outside the partner's allowed set", Severity: sevHigh}},
	{keydesk.FlagProposedChange, flagView{Text: "proposed change", Title: "the partner asked to change the fields: accept or refuse it before approving", Severity: sevMedium}},
	{keydesk.FlagDuplicate, flagView{Text: "duplicate", Title: "the same partner, environment and label as an open request", Severity: sevMedium}},
	{keydesk.FlagForwarded, flagView{Text: "forwarded by RM", Title: "forwarded by a Relationship Manager: check the original sender", Severity: sevMedium}},
	{keydesk.FlagContactKeyExpiring, flagView{Text: "contact key expiring", Title: "the technical contact's key expires within 30 days", Severity: sevMedium}},
	{keydesk.FlagNeedsReview, flagView{Text: "needs review", Title: "not a clear key request", Severity: sevMedium}},
	{keydesk.FlagFromProse, flagView{Text: "suggested from prose", Title: "the fields were read from sentences, not field lines: accept the suggestion or correct it", Severity: sevMedium}},
	{keydesk.FlagKeysManage, flagView{Text: "keys:manage", Title: "this key could create and revoke other keys: four eyes applies if configured", Severity: sevInfo}},
	{keydesk.FlagProduction, flagView{Text: "production", Title: "a live key: four eyes applies if configured", Severity: sevInfo}},
}

// riskFlags are the request's flags and those that follow from the
// registry now (a key that has started to expire since intake, say),
// highest severity first.
func riskFlags(r *keydesk.Request, reg *keydesk.Registry, now time.Time) []flagView {
	fl := slices.Clone(r.Flags)
	add := func(f keydesk.Flag) {
		if !slices.Contains(fl, f) {
			fl = append(fl, f)
		}
	}
	if r.Environment == keydesk.Production {
		add(keydesk.FlagProduction)
	}
	if slices.Contains(r.Scopes, keydesk.ScopeKeysManage) {
		add(keydesk.FlagKeysManage)
	}
	if r.Partner == "" {
		add(keydesk.FlagUnknownSender)
	}
	if r.Proposal != nil {
		add(keydesk.FlagProposedChange)
	}
	if p, ok := reg.Partner(r.Partner); ok {
		for _, sc := range r.Scopes {
			if !p.Allows(sc) {
				add(keydesk.FlagScopeNotAllowed)
			}
		}
		if exp := p.TechnicalContact.KeyExpires; !exp.IsZero() && exp.Sub(now) < 30*24*time.Hour {
			add(keydesk.FlagContactKeyExpiring)
		}
	}
	rank := func(f keydesk.Flag) int {
		if i := slices.IndexFunc(flagTexts, func(x flagInfo) bool { return x.flag == f }); i >= 0 {
			return i
		}
		return len(flagTexts) // a flag this page does not know: info, last
	}
	slices.SortStableFunc(fl, func(a, b keydesk.Flag) int { return rank(a) - rank(b) })
	out := make([]flagView, 0, len(fl))
	for _, f := range fl {
		v := flagView{Text: string(f), Severity: sevInfo}
		if i := rank(f); i < len(flagTexts) {
			v = flagTexts[i].view
		}
		v.Code, v.Level = string(f), v.Severity.Class()
		out = append(out, v)
	}
	return out
}

// topSeverity is the highest severity among flags (they come sorted).
func topSeverity(flags []flagView) severity {
	if len(flags) == 0 {
		return sevNone
	}
	return flags[0].Severity
}

// queueKey is a request's place in the queue's order, and the cursor of
// the queue's pages: requests awaiting review first, those with a high
// flag, then those with a medium one, then the rest, each group the one
// waiting longest first; then the requests not awaiting review, latest
// change first. The ID breaks ties, so the order is total.
type queueKey struct {
	Group int   // 0: awaiting review; 1: the rest
	Sev   int   // minus the top severity, so that high sorts first
	At    int64 // created (awaiting review) or minus updated (the rest), Unix ns
	ID    string
}

func keyOf(r *keydesk.Request, top severity) queueKey {
	if top < sevMedium {
		// Information (production, keys:manage) orders nothing: among
		// routine requests the one waiting longest is next.
		top = sevNone
	}
	if awaitingReview(r) {
		return queueKey{Group: 0, Sev: -int(top), At: r.CreatedAt.UnixNano(), ID: r.ID}
	}
	return queueKey{Group: 1, At: -r.UpdatedAt.UnixNano(), ID: r.ID}
}

func (a queueKey) compare(b queueKey) int {
	switch {
	case a.Group != b.Group:
		return a.Group - b.Group
	case a.Sev != b.Sev:
		return a.Sev - b.Sev
	case a.At < b.At:
		return -1
	case a.At > b.At:
		return 1
	}
	return strings.Compare(a.ID, b.ID)
}

func (a queueKey) cursor() string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d %d %d %s", a.Group, a.Sev, a.At, a.ID))
}

func parseQueueCursor(c string) (queueKey, error) {
	var k queueKey
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(c) > 200 {
		return k, errBadRequest("that page link is not one this page gave: start again from the first page")
	}
	f := strings.Fields(string(b))
	if len(f) != 4 || !keydesk.ValidRequestID(f[3]) {
		return k, errBadRequest("that page link is not one this page gave: start again from the first page")
	}
	k.ID = f[3]
	var errs [3]error
	k.Group, errs[0] = strconv.Atoi(f[0])
	k.Sev, errs[1] = strconv.Atoi(f[1])
	k.At, errs[2] = strconv.ParseInt(f[2], 10, 64)
	for _, e := range errs {
		if e != nil {
			return k, errBadRequest("that page link is not one this page gave: start again from the first page")
		}
	}
	return k, nil
}

func awaitingReview(r *keydesk.Request) bool {
	return r.State == keydesk.StatePendingReview || r.State == keydesk.StateReceived
}

// ageWords says a duration as a person would: "45 min", "3 h 20 min",
// "2 d 4 h".
func ageWords(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under 1 min"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	days, h := int(d.Hours())/24, int(d.Hours())%24
	if h == 0 {
		return fmt.Sprintf("%d d", days)
	}
	return fmt.Sprintf("%d d %d h", days, h)
}

// ageClass colours the age of a request awaiting review against the
// target: "" within it, "age-over" past it, "age-late" past twice it.
func ageClass(age, target time.Duration) string {
	switch {
	case age > 2*target:
		return "age-late"
	case age > target:
		return "age-over"
	}
	return ""
}

type queueView struct {
	Rows   []rowView
	View   string
	Views  []viewTab
	Counts []stateCount // per state, in the Everything view
	// Shown is how many requests match, over all pages.
	Shown    int
	State    string
	Env      string
	Kind     string
	Kinds    []keydesk.RequestKind
	Partner  string
	Search   string
	Partners []string
	Envs     []keydesk.Environment
	// Prev and Next are the cursors of the neighbouring pages; empty: none.
	Prev, Next string
	// First is the number of the first row shown (1-based).
	First int
	// Target is review.age_target in words.
	Target string
}

type viewTab struct {
	Key, Name string
	N         int
}

type stateCount struct {
	State keydesk.State
	N     int
}

type rowView struct {
	R         *keydesk.Request
	Flags     []flagView
	Top       string // the highest severity's class
	Approvals string
	Age       string
	AgeClass  string
	// Why says which field matched the search.
	Why string
	// CanApprove offers the Approve button; NoApprove, for a request
	// pending review, says why it is not offered.
	CanApprove bool
	NoApprove  string
}

// link is the queue URL with the page's filters and the given changes.
func (v *queueView) link(set ...string) string {
	q := url.Values{}
	for k, x := range map[string]string{"view": v.View, "state": v.State, "environment": v.Env, "kind": v.Kind, "partner": v.Partner, "q": v.Search} {
		if x != "" {
			q.Set(k, x)
		}
	}
	for i := 0; i+1 < len(set); i += 2 {
		q.Set(set[i], set[i+1])
	}
	return "/queue?" + q.Encode()
}

// PrevLink and NextLink are the neighbouring pages.
func (v *queueView) PrevLink() string { return v.link("before", v.Prev) }
func (v *queueView) NextLink() string { return v.link("after", v.Next) }

// TabLink is another view with the same filters (the search is dropped:
// a search looks at every request).
func (v *queueView) TabLink(view string) string {
	w := *v
	w.View, w.Search = "", ""
	return w.link("view", view)
}

type queueItem struct {
	r     *keydesk.Request
	flags []flagView
	key   queueKey
	why   string // what the search matched
}

func (s *Server) getQueue(w http.ResponseWriter, r *http.Request, st *staff) error {
	v, after, before, err := s.queueQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	// An exact request ID opens its page.
	if id := strings.ToUpper(v.Search); keydesk.ValidRequestID(id) {
		if _, err := s.o.Queue.Get(ctx, id); err == nil {
			http.Redirect(w, r, "/requests/"+url.PathEscape(id), http.StatusSeeOther)
			return nil
		}
	}
	if v.Search != "" {
		// A search looks at every request: the one sought may be closed.
		v.View = "all"
	}
	all, err := s.o.Queue.List(ctx, queue.Filter{})
	if err != nil {
		return err
	}
	now := s.now()
	items := s.queueItems(v, all, st, now)
	page := v.paginate(items, after, before)
	s.queueRows(v, page, st, now)
	s.render(w, http.StatusOK, "queue", pageData{Title: "Queue", Nav: "queue", Staff: st, Queue: v})
	return nil
}

// queueQuery reads and checks the queue page's query: its filters and
// the page's cursor, if any.
func (s *Server) queueQuery(q url.Values) (v *queueView, after, before *queueKey, _ error) {
	v = &queueView{View: q.Get("view"), State: q.Get("state"), Env: q.Get("environment"), Kind: q.Get("kind"), Partner: q.Get("partner"),
		Search: strings.TrimSpace(q.Get("q")), Envs: keydesk.Environments, Target: ageWords(s.o.AgeTarget),
		Kinds: []keydesk.RequestKind{keydesk.KindIssue, keydesk.KindRevoke, keydesk.KindRotate}}
	if v.Kind != "" && !slices.Contains(v.Kinds, keydesk.RequestKind(v.Kind)) {
		return nil, nil, nil, errBadRequest("kind %q: use issue, revoke or rotate", clip(v.Kind, 40))
	}
	if v.View == "" {
		v.View = queueViews[0].Key
	}
	if !slices.ContainsFunc(queueViews, func(x struct{ Key, Name string }) bool { return x.Key == v.View }) {
		return nil, nil, nil, errBadRequest("view %q: use mine, open, assigned or all", clip(v.View, 40))
	}
	if v.State != "" && !keydesk.State(v.State).Valid() {
		return nil, nil, nil, errBadRequest("state %q is not one of the request states", clip(v.State, 40))
	}
	if v.Env != "" && !keydesk.Environment(v.Env).Valid() {
		return nil, nil, nil, errBadRequest("environment %q is not sandbox or production", clip(v.Env, 40))
	}
	if len([]rune(v.Search)) > maxSearch {
		return nil, nil, nil, errBadRequest("the search is %d characters long: a KR-ID, label, sender or partner is under %d", len(v.Search), maxSearch)
	}
	for name, dst := range map[string]**queueKey{"after": &after, "before": &before} {
		if c := q.Get(name); c != "" {
			k, err := parseQueueCursor(c)
			if err != nil {
				return nil, nil, nil, err
			}
			*dst = &k
		}
	}
	return v, after, before, nil
}

// queueItems counts all requests for the page's tabs and state counts and
// returns those the page's filters keep, in the queue's order.
func (s *Server) queueItems(v *queueView, all []*keydesk.Request, st *staff, now time.Time) []queueItem {
	reg := s.o.Partners()
	counts := map[keydesk.State]int{}
	views := map[string]int{}
	partners := map[string]bool{}
	for _, p := range reg.Partners {
		partners[p.ID] = true
	}
	needle := strings.ToLower(v.Search)
	var items []queueItem
	for _, x := range all {
		counts[x.State]++
		for _, vw := range queueViews {
			if inView(vw.Key, x, st.Name) {
				views[vw.Key]++
			}
		}
		if x.Partner != "" {
			partners[x.Partner] = true
		}
		if !v.keeps(x, st.Name) {
			continue
		}
		it := queueItem{r: x}
		if needle != "" {
			w, ok := searchMatch(x, reg, needle)
			if !ok {
				continue
			}
			it.why = w
		}
		it.flags = riskFlags(x, reg, now)
		it.key = keyOf(x, topSeverity(it.flags))
		items = append(items, it)
	}
	for p := range partners {
		v.Partners = append(v.Partners, p)
	}
	slices.Sort(v.Partners)
	for _, stt := range keydesk.States {
		if counts[stt] > 0 {
			v.Counts = append(v.Counts, stateCount{stt, counts[stt]})
		}
	}
	for _, vw := range queueViews {
		v.Views = append(v.Views, viewTab{Key: vw.Key, Name: vw.Name, N: views[vw.Key]})
	}
	slices.SortFunc(items, func(a, b queueItem) int { return a.key.compare(b.key) })
	v.Shown = len(items)
	return items
}

// keeps reports whether the page's view and filters keep x.
func (v *queueView) keeps(x *keydesk.Request, name string) bool {
	return inView(v.View, x, name) && (v.State == "" || string(x.State) == v.State) &&
		(v.Env == "" || string(x.Environment) == v.Env) && (v.Partner == "" || x.Partner == v.Partner) &&
		(v.Kind == "" || string(x.KindOf()) == v.Kind)
}

// paginate returns the page of items after a cursor, before one, or the
// first, and sets the page's links.
func (v *queueView) paginate(items []queueItem, after, before *queueKey) []queueItem {
	lo, hi := 0, min(len(items), queuePage)
	switch {
	case after != nil:
		lo, _ = slices.BinarySearchFunc(items, *after, func(it queueItem, k queueKey) int { return it.key.compare(k) })
		if lo < len(items) && items[lo].key == *after {
			lo++
		}
		hi = min(len(items), lo+queuePage)
	case before != nil:
		hi, _ = slices.BinarySearchFunc(items, *before, func(it queueItem, k queueKey) int { return it.key.compare(k) })
		lo = max(0, hi-queuePage)
	}
	page := items[lo:hi]
	if lo > 0 && len(page) > 0 {
		v.Prev = page[0].key.cursor()
	}
	if hi < len(items) && len(page) > 0 {
		v.Next = page[len(page)-1].key.cursor()
	}
	v.First = lo + 1
	return page
}

// queueRows turns the page's items into its rows.
func (s *Server) queueRows(v *queueView, page []queueItem, st *staff, now time.Time) {
	for _, it := range page {
		x := it.r
		rv := rowView{R: x, Flags: it.flags, Top: topSeverity(it.flags).Class(), Why: it.why}
		if x.State == keydesk.StatePendingReview {
			rv.Approvals = fmt.Sprintf("%d/%d", len(x.Approvals), s.approvalsNeeded(x))
			rv.CanApprove, rv.NoApprove = s.approveOffer(x, *st)
		}
		if awaitingReview(x) {
			rv.AgeClass = ageClass(now.Sub(x.CreatedAt), s.o.AgeTarget)
		}
		rv.Age = ageWords(max(0, now.Sub(x.CreatedAt)))
		v.Rows = append(v.Rows, rv)
	}
}

// approveOffer says whether the Approve button is offered to st for r,
// and if not, why in a few words; approveRefusal decides, as it does for
// the action itself.
func (s *Server) approveOffer(r *keydesk.Request, st staff) (bool, string) {
	if rf := s.approveRefusal(r, st); rf != nil {
		return false, rf.Short
	}
	return true, ""
}
