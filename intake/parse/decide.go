package parse

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
)

// decide authenticates the sender, reads the requests and settles the
// verdict. Each phase below adds to one decision, in the order a reviewer
// reads the warnings and reasons.
func decide(m *msg, o Options, digest string) *Result {
	res := &Result{MessageID: m.messageID, Subject: m.subject}
	res.InReplyTo, res.References = threading(m)
	res.SubjectIDs = requestIDs(m.subject)
	headerFrom := headerSender(m)
	res.SourceKey = sourceKey(headerFrom, m.messageID, digest)
	if m.headerOK {
		if r, ok := automatic(m, headerFrom); ok {
			res.Verdict = Ignore
			res.From = headerFrom
			res.Reasons = []keydesk.Reason{r}
			return res
		}
	}
	d := &decision{res: res, o: o}

	var dateWarning string
	res.Date, dateWarning = requestDate(m, o)
	if dateWarning != "" {
		d.warn(dateWarning)
	}
	fatal, warnings := unreadable(m, o.MaxBytes)
	d.warn(warnings...)
	d.warn(m.warnings...)
	d.warn(notKept(m, cutAt(o))...)
	if m.encrypted {
		d.warn("the email is encrypted: keydesk cannot read encrypted requests; send it unencrypted (it holds no secret)")
	}

	// Authentication: our MTA's verdict on the From domain.
	dmarcOK, dmarcWhy := dmarc(m, o, keydesk.AddressDomain(headerFrom))

	bd, warnings := readBody(m, o.Limits)
	d.warn(warnings...)
	drafts, internal := d.attribute(headerFrom, bd)
	if res.From != "" {
		if p, ok := o.Registry.ByRequester(res.From); ok {
			res.Partner = p
		}
	}
	d.authenticate(headerFrom, dmarcOK, dmarcWhy)
	parsed := d.readRequests(drafts)
	d.asks = d.readKeyAsks(bd, internal, len(parsed))
	d.doubt(m, parsed)
	d.settle(parsed, fatal, internal, res.Partner != nil && (dmarcOK || !o.RequireDMARC))
	if res.Verdict == Review && len(parsed) == 0 && len(d.asks) == 0 && res.Partner != nil && len(fatal) == 0 {
		d.suggest(bd)
	}
	d.checkEnvironments(parsed)
	d.finish(parsed)
	// What a reply says about requests it answers: only the sender's own
	// new text counts, never the history it quotes.
	res.Authenticated = res.Partner != nil && dmarcOK && !internal && res.From == headerFrom && len(fatal) == 0
	res.Text = ownText(bd.own)
	res.TextIDs = requestIDs(res.Text)
	res.Question = asksStatus(bd.own)
	res.Stated = stated(parsed)
	res.DMARC = dmarcOK && len(fatal) == 0
	res.Confirms = confirms(bd.own)
	return res
}

// decision is what decide builds up, phase by phase: the result, and the
// flags and reasons shared by every request of the email.
type decision struct {
	res     *Result
	o       Options
	flags   []keydesk.Flag
	reasons []keydesk.Reason
	prose   *suggestion // what the prose names, when no field line was found
	asks    []KeyAsk    // the keys the email asks to revoke or rotate
}

// suggest reads the sender's prose for the fields no line gave, and
// proposes them to a person: flagged from-prose, never a request's fields.
func (d *decision) suggest(bd body) {
	s, ok := proseSuggestion(bd.own)
	if !ok && bd.forward != nil && !isInternal(bd.forward.from, d.o.InternalDomains) {
		s, ok = proseSuggestion(bd.forward.own)
	}
	if !ok {
		return
	}
	d.prose = &s
	d.flags = append(d.flags, keydesk.FlagFromProse)
	d.warn(s.String() + " (read from the email's prose, not from field lines: accept or correct it)")
}

// warn adds warnings to the result.
func (d *decision) warn(ws ...string) {
	d.res.Warnings = append(d.res.Warnings, ws...)
}

func (d *decision) reason(code keydesk.ReasonCode, message, suggestion string) {
	d.reasons = append(d.reasons, keydesk.Reason{Code: code, Message: message, Suggestion: suggestion})
}

// headerSender is the one address of the From header, or "" when the header
// names none, several, or cannot be read.
func headerSender(m *msg) string {
	if !m.headerOK || m.fromErr != nil || len(m.from) != 1 {
		return ""
	}
	// As received, ASCII letters lower-cased: never folded, so the review
	// shows the lookalike a sender used, and it matches nothing.
	return keydesk.ASCIILower(strings.TrimSpace(m.from[0].Address))
}

// requestDate dates the request IDs: the Date header, or, when it is
// missing or absurd, the mailbox's receive time, which a rescan sees again.
// The warning says so ("" when the header was used).
func requestDate(m *msg, o Options) (time.Time, string) {
	now := o.Now()
	if !m.date.IsZero() && m.dateErr == nil && m.date.Year() >= 2000 && !m.date.After(now.Add(48*time.Hour)) {
		return m.date.UTC(), ""
	}
	fallback := o.ReceivedAt
	if fallback.IsZero() {
		fallback = now
	}
	var warning string
	switch {
	case !m.headerOK:
	case m.dateErr != nil || !m.date.IsZero():
		warning = "the Date header is unusable: the requests are dated when the mail arrived"
	default:
		warning = "the message has no Date header: the requests are dated when the mail arrived"
	}
	return fallback.UTC(), warning
}

// unreadable lists why the message could not be read whole, each a fatal
// reason, and the limits that cut only what follows the request, each a
// warning. Which is which is the limit's kind.
func unreadable(m *msg, maxBytes int64) (fatal []keydesk.Reason, warnings []string) {
	const (
		smaller = "send the request as a short plain email without attachments"
		again   = "send the request again as a new email from your usual mail program"
	)
	if m.tooLarge {
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonTooLarge,
			Message: fmt.Sprintf("the email is larger than %s", byteSize(maxBytes)), Suggestion: smaller})
	}
	for _, b := range m.bounds {
		if !b.kind.fatal() {
			warnings = append(warnings, b.msg) // the request is at the top; what follows it is not needed
			continue
		}
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonTooLarge, Message: b.msg, Suggestion: smaller})
	}
	for _, s := range m.malformed {
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonMalformed, Message: s, Suggestion: again})
	}
	switch {
	case !m.headerOK:
	case m.fromErr != nil || len(m.from) == 0:
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonMalformed, Message: "the From header has no readable address",
			Suggestion: "send the request from your own mailbox"})
	case len(m.from) > 1:
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonMalformed, Message: "the From header names several senders",
			Suggestion: "send the request from one mailbox"})
	}
	return fatal, warnings
}

// cutAt is where the kept copy of an email ends (0: it is kept whole).
func cutAt(o Options) int64 {
	if o.KeepBytes <= 0 || o.KeepBytes >= o.MaxBytes {
		return 0
	}
	return o.KeepBytes
}

// notKept names what a copy cut at cut bytes leaves out: each attachment
// that ends past it. The text of the email was read whole all the same.
func notKept(m *msg, cut int64) []string {
	if cut <= 0 || m.size <= cut {
		return nil
	}
	var out []string
	for _, a := range m.attachments {
		if a.end <= cut {
			continue
		}
		name := a.name
		if name == "" {
			name = "no name"
		}
		out = append(out, fmt.Sprintf("an attachment of %s (%s) was not kept", approxBytes(a.size), name))
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("the email is %s: only its first %s were kept", approxBytes(m.size), byteSize(cut)))
	} else {
		out = append(out, fmt.Sprintf("the stored copy of the email (%s) is cut at %s; its text was read whole", approxBytes(m.size), byteSize(cut)))
	}
	return out
}

// approxBytes is a size as people say it: 23 MB, 480 KB.
func approxBytes(n int64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%d MB", (n+5e5)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%d KB", (n+500)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// readBody splits the text into the sender's own lines and the first
// forward, and warns of lines past the limits.
func readBody(m *msg, lim Limits) (body, []string) {
	var warnings []string
	lines, cut, long := splitLines(m.text, lim)
	if cut {
		warnings = append(warnings, fmt.Sprintf("only the first %d lines of text were read", lim.Lines))
	}
	if long {
		warnings = append(warnings, fmt.Sprintf("lines longer than %d bytes were cut", lim.LineBytes))
	}
	return splitBody(lines, fwdSubjRE.MatchString(m.subject), 0), warnings
}

// attribute settles who asks: the sender, or the partner whose email a
// Relationship Manager forwards. It returns the drafts to read and whether
// the sender is a Relationship Manager.
func (d *decision) attribute(headerFrom string, bd body) (drafts []*draft, internal bool) {
	res, o, lim := d.res, d.o, d.o.Limits
	internal = headerFrom != "" && isRelationshipManager(headerFrom, o)
	if !internal && headerFrom != "" && len(o.RelationshipManagers) > 0 && isInternal(headerFrom, o.InternalDomains) && bd.forward != nil {
		d.warn(keydesk.SafeLine(headerFrom, 200) + " is not one of the listed Relationship Managers: what it forwards is not read as a partner's request")
	}
	res.From = headerFrom
	drafts = readDrafts(bd.own, lim)
	if !internal {
		if len(drafts) == 0 && bd.forward != nil && !isInternal(bd.forward.from, o.InternalDomains) {
			// A partner forwarding a colleague's request: the partner is
			// the sender. A forward of our own mail (an acknowledgement
			// names the fields too) is never read as a new request.
			drafts = readDrafts(bd.forward.own, lim)
		}
		return drafts, false
	}
	// A Relationship Manager forwards a partner's email: the partner is
	// the sender found in the forward, and a person approves.
	res.Via = headerFrom
	d.flags = append(d.flags, keydesk.FlagForwarded)
	switch {
	case bd.forward == nil:
		res.From = ""
		d.reason(keydesk.ReasonUnknownSender,
			"the email comes from "+keydesk.SafeLine(headerFrom, 200)+" but forwards no partner's email",
			"forward the partner's original email as is (inline or as an attachment)")
	case len(bd.forward.several) > 0:
		res.From = ""
		d.reason(keydesk.ReasonUnknownSender,
			"the forwarded email's From line names several addresses ("+keydesk.SafeLine(strings.Join(bd.forward.several, ", "), 300)+"): which one sent it is not clear",
			"support checks who sent it; forward the partner's original email as is (as an attachment keeps its header intact)")
	case bd.forward.from == "":
		res.From = ""
		d.reason(keydesk.ReasonUnknownSender,
			"the forwarded email's sender cannot be read",
			"forward the partner's original email as is, with its From line")
	default:
		res.From = bd.forward.from
	}
	if len(drafts) == 0 && bd.forward != nil {
		drafts = readDrafts(bd.forward.own, lim)
	}
	return drafts, true
}

// authenticate flags a sender whose domain did not pass DMARC, and refuses
// it when DMARC is required.
func (d *decision) authenticate(headerFrom string, ok bool, why string) {
	if ok {
		return
	}
	d.flags = append(d.flags, keydesk.FlagDMARCNotPassed)
	switch {
	case headerFrom == "":
	case d.o.RequireDMARC:
		d.reason(keydesk.ReasonSenderNotAuthenticated,
			"the sender could not be authenticated: "+why,
			"send from your organisation's mail server, which signs its mail (DKIM) and publishes DMARC")
	default:
		d.warn(fmt.Sprintf("the sender is not authenticated (%s): a person reviews the request", why))
	}
}

// readRequests validates the drafts, at most Limits.Requests of them.
func (d *decision) readRequests(drafts []*draft) []parsedRequest {
	lim := d.o.Limits
	var parsed []parsedRequest
	for _, dr := range drafts {
		parsed = append(parsed, validate(dr, lim)...)
	}
	if len(parsed) > lim.Requests {
		d.reason(keydesk.ReasonTooLarge,
			fmt.Sprintf("the email holds %d requests: at most %d are read from one email", len(parsed), lim.Requests),
			"send the requests in several emails")
		parsed = parsed[:lim.Requests]
	}
	return parsed
}

// doubt holds for a person what keydesk cannot be sure the partner wrote
// for a reader: a request that is exactly the example keydesk's rejection
// shows, or an HTML part that hides text in a way keydesk cannot judge.
func (d *decision) doubt(m *msg, parsed []parsedRequest) {
	for _, pr := range parsed {
		if isOwnExample(pr) {
			d.flags = append(d.flags, keydesk.FlagNeedsReview)
			d.warn("the request is exactly the example keydesk's rejection shows: a person confirms the partner means it")
			break
		}
	}
	if m.hiddenDoubt && len(parsed) > 0 {
		d.flags = append(d.flags, keydesk.FlagNeedsReview)
		d.warn("the HTML hides some of its text in a way keydesk cannot judge: a person checks what the partner sees")
	}
}

// settle takes the verdict: an unknown or unauthenticated sender goes to a
// person, an unreadable email from a partner is rejected, and a readable
// one is accepted unless its contact's key cannot be used.
func (d *decision) settle(parsed []parsedRequest, fatal []keydesk.Reason, internal, authenticated bool) {
	res := d.res
	switch {
	case res.Partner == nil:
		res.Verdict = Review
		d.flags = append(d.flags, keydesk.FlagUnknownSender)
		if res.From != "" || !internal {
			who := keydesk.SafeLine(res.From, 200)
			if who == "" {
				who = "the sender"
			}
			d.reason(keydesk.ReasonUnknownSender,
				who+" is not a registered requester of any partner",
				"support checks who sent it; partners ask their Relationship Manager to register new requesters")
		}
		d.reasons = append(d.reasons, fatal...)
	case !authenticated:
		res.Verdict = Review
		d.reasons = append(d.reasons, fatal...)
	case len(fatal) > 0:
		res.Verdict = Reject
		d.reasons = append(d.reasons, fatal...)
	case len(parsed) == 0 && len(d.asks) == 0:
		res.Verdict = Review
		d.flags = append(d.flags, keydesk.FlagNeedsReview)
		d.warn("no Environment, Scopes or Label line was found: this does not read as a key request")
	default:
		res.Verdict = Accept
		d.checkContact()
	}
	if res.Verdict == Review && len(parsed) == 0 && len(d.asks) == 0 && !containsFlag(d.flags, keydesk.FlagNeedsReview) {
		d.flags = append(d.flags, keydesk.FlagNeedsReview)
	}
}

// checkContact refuses a partner whose technical contact's key cannot be
// used, and flags one that expires soon.
func (d *decision) checkContact() {
	p := d.res.Partner
	if d.o.ContactKeyProblem != nil {
		if err := d.o.ContactKeyProblem(p); err != nil {
			d.reason(keydesk.ReasonContactKeyUnusable,
				"the OpenPGP key of your registered technical contact cannot be used: "+keydesk.SafeLine(err.Error(), 200),
				"ask your technical contact to send their current public key to your Relationship Manager, then send the request again")
		}
	}
	if d.o.ExpiringSoon != nil && d.o.ExpiringSoon(p) {
		d.flags = append(d.flags, keydesk.FlagContactKeyExpiring)
	}
}

// checkEnvironments refuses each request for an environment the partner
// has no access to.
func (d *decision) checkEnvironments(parsed []parsedRequest) {
	p := d.res.Partner
	for i := range parsed {
		pr := &parsed[i]
		if p == nil || pr.env == "" {
			continue
		}
		if _, ok := p.Environments[pr.env]; !ok {
			pr.reasons = append(pr.reasons, keydesk.Reason{Code: keydesk.ReasonInvalidEnvironment,
				Message:    fmt.Sprintf("%s has no %s access set up", p.Name, pr.env),
				Suggestion: fmt.Sprintf("ask your Relationship Manager to enable %s, or request a key for an environment you have", pr.env)})
		}
	}
}

// finish rejects an accepted email that any reason stands against, gathers
// the reasons, names whom to answer and builds the records.
func (d *decision) finish(parsed []parsedRequest) {
	res := d.res
	hasRequestReasons := false
	for _, pr := range parsed {
		if len(pr.reasons) > 0 {
			hasRequestReasons = true
		}
	}
	if res.Verdict == Accept && (len(d.reasons) > 0 || hasRequestReasons) {
		res.Verdict = Reject
	}
	res.Reasons = appendReasons(nil, d.reasons...)
	for _, pr := range parsed {
		res.Reasons = appendReasons(res.Reasons, pr.reasons...)
	}
	if res.Verdict == Accept || res.Verdict == Reject {
		res.ReplyTo = res.Via
		if res.ReplyTo == "" {
			res.ReplyTo = res.From
		}
	}
	res.KeyAsks = d.asks
	res.Requests = records(res, parsed, d.flags, d.reasons)
	res.Requests = append(res.Requests, d.keyRecords(len(res.Requests))...)
	if d.prose != nil {
		for _, r := range res.Requests {
			r.Proposal = &keydesk.Proposal{
				ID: keydesk.EntryID("from-prose", res.SourceKey), From: res.From, MessageID: res.MessageID, At: res.Date,
				Environment: d.prose.env, Scopes: slices.Clone(d.prose.scopes), Label: d.prose.label,
			}
		}
	}
}

// records builds the queue records: one per request, or one standing for
// the whole email when no request could be read, so support sees it.
func records(res *Result, parsed []parsedRequest, flags []keydesk.Flag, reasons []keydesk.Reason) []*keydesk.Request {
	if res.Verdict == Ignore {
		return nil
	}
	if len(parsed) == 0 && len(res.KeyAsks) > 0 {
		return nil // the key asks make the email's records
	}
	if len(parsed) == 0 {
		parsed = []parsedRequest{{}}
	}
	var out []*keydesk.Request
	for i, pr := range parsed {
		r := &keydesk.Request{
			ID:              keydesk.RequestID(res.Date, res.SourceKey, i, 0),
			Environment:     pr.env,
			Scopes:          pr.scopes,
			Label:           pr.label,
			Requester:       res.From,
			SourceMessageID: res.MessageID,
			SourceDate:      res.Date,
			SourceKey:       res.SourceKey,
			Index:           i,
			Subject:         res.Subject,
			Reasons:         appendReasons(appendReasons(nil, reasons...), pr.reasons...),
			Warnings:        append([]string(nil), res.Warnings...),
		}
		if r.Requester == "" {
			r.Requester = res.Via
		}
		if res.Partner != nil {
			r.Partner = res.Partner.ID
		}
		for _, f := range flags {
			r.AddFlag(f)
		}
		if pr.env == keydesk.Production {
			r.AddFlag(keydesk.FlagProduction)
		}
		for _, s := range pr.scopes {
			if s == keydesk.ScopeKeysManage {
				r.AddFlag(keydesk.FlagKeysManage)
			}
			if res.Partner != nil && !res.Partner.Allows(s) {
				r.AddFlag(keydesk.FlagScopeNotAllowed)
			}
		}
		switch res.Verdict {
		case Reject:
			r.State = keydesk.StateRejected
			r.Problem = problem(r.Reasons)
			if r.Problem == "" {
				r.Problem = problem(res.Reasons) // another request of the email made it fail
			}
		case Accept:
			r.State = keydesk.StatePendingReview
			if pe, ok := res.Partner.Environments[pr.env]; ok && pe.AutoApprove && len(r.Flags) == 0 {
				r.State = keydesk.StateApproved
			}
		default:
			r.State = keydesk.StatePendingReview
		}
		out = append(out, r)
	}
	return out
}

func problem(rs []keydesk.Reason) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.Message)
	}
	return strings.Join(parts, "; ")
}

func appendReasons(dst []keydesk.Reason, rs ...keydesk.Reason) []keydesk.Reason {
next:
	for _, r := range rs {
		for _, d := range dst {
			if d == r {
				continue next
			}
		}
		dst = append(dst, r)
	}
	return dst
}

func containsFlag(fs []keydesk.Flag, f keydesk.Flag) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// isRelationshipManager reports whether addr may forward a partner's
// request: one of the listed Relationship Managers, or, without a list,
// any address at an internal domain.
func isRelationshipManager(addr string, o Options) bool {
	if len(o.RelationshipManagers) > 0 {
		for _, rm := range o.RelationshipManagers {
			if !strings.HasPrefix(strings.TrimSpace(rm), "*@") && keydesk.MatchAddress(rm, addr) {
				return true
			}
		}
		return false
	}
	return isInternal(addr, o.InternalDomains)
}

func isInternal(addr string, domains []string) bool {
	d := keydesk.AddressDomain(addr)
	for _, x := range domains {
		if keydesk.SameDomain(x, d) {
			return true
		}
	}
	return false
}

// sourceKey is keydesk.SourceKey computed from a digest of the raw message
// taken while it streamed, so the message is never held whole in memory.
func sourceKey(from, messageID, digest string) string {
	if strings.Trim(strings.TrimSpace(messageID), "<>") != "" {
		return keydesk.SourceKey(from, messageID, nil)
	}
	return strings.ToLower(strings.TrimSpace(from)) + "\x00sha256:" + digest
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
