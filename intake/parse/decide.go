package parse

import (
	"fmt"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
)

// decide authenticates the sender, reads the requests and settles the verdict.
func decide(m *msg, o Options, digest string) *Result {
	res := &Result{MessageID: m.messageID, Subject: m.subject}
	lim := o.Limits
	warn := func(format string, args ...any) {
		res.Warnings = append(res.Warnings, fmt.Sprintf(format, args...))
	}

	var headerFrom string
	if m.headerOK && m.fromErr == nil && len(m.from) == 1 {
		// As received, ASCII letters lower-cased: never folded, so the
		// review shows the lookalike a sender used, and it matches nothing.
		headerFrom = keydesk.ASCIILower(strings.TrimSpace(m.from[0].Address))
	}
	res.SourceKey = sourceKey(headerFrom, m.messageID, digest)
	if m.headerOK {
		if r, ok := automatic(m, headerFrom); ok {
			res.Verdict = Ignore
			res.From = headerFrom
			res.Reasons = []keydesk.Reason{r}
			return res
		}
	}

	// The date dates the request IDs; a missing or absurd one falls back to
	// the mailbox's receive time, which a rescan sees again.
	res.Date = m.date.UTC()
	now := o.Now()
	if m.date.IsZero() || m.dateErr != nil || m.date.Year() < 2000 || m.date.After(now.Add(48*time.Hour)) {
		fallback := o.ReceivedAt
		if fallback.IsZero() {
			fallback = now
		}
		if m.headerOK {
			if m.dateErr != nil || !m.date.IsZero() {
				warn("the Date header is unusable: the requests are dated when the mail arrived")
			} else {
				warn("the message has no Date header: the requests are dated when the mail arrived")
			}
		}
		res.Date = fallback.UTC()
	}

	var fatal []keydesk.Reason // the message could not be read whole
	if m.tooLarge {
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonTooLarge,
			Message:    fmt.Sprintf("the email is larger than %s", byteSize(o.MaxBytes)),
			Suggestion: "send the request as a short plain email without attachments"})
	}
	for _, b := range m.bounds {
		if strings.HasPrefix(b, "only the first") || strings.HasPrefix(b, "an HTML part") {
			warn("%s", b) // the request is at the top; what follows it is not needed
			continue
		}
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonTooLarge, Message: b,
			Suggestion: "send the request as a short plain email without attachments"})
	}
	for _, s := range m.malformed {
		fatal = append(fatal, keydesk.Reason{Code: keydesk.ReasonMalformed, Message: s,
			Suggestion: "send the request again as a new email from your usual mail program"})
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
	res.Warnings = append(res.Warnings, m.warnings...)
	if m.encrypted {
		warn("the email is encrypted: keydesk cannot read encrypted requests; send it unencrypted (it holds no secret)")
	}

	// Authentication: our MTA's verdict on the From domain.
	dmarcOK, dmarcWhy := dmarc(m, o.TrustedAuthservIDs, keydesk.AddressDomain(headerFrom))

	lines, cut, long := splitLines(m.text, lim)
	if cut {
		warn("only the first %d lines of text were read", lim.Lines)
	}
	if long {
		warn("lines longer than %d bytes were cut", lim.LineBytes)
	}
	bd := splitBody(lines, fwdSubjRE.MatchString(m.subject), 0)

	var flags []keydesk.Flag
	var reasons []keydesk.Reason
	internal := headerFrom != "" && isRelationshipManager(headerFrom, o)
	if !internal && headerFrom != "" && len(o.RelationshipManagers) > 0 && isInternal(headerFrom, o.InternalDomains) && bd.forward != nil {
		warn("%s is not one of the listed Relationship Managers: what it forwards is not read as a partner's request", keydesk.SafeLine(headerFrom, 200))
	}
	res.From = headerFrom
	drafts := readDrafts(bd.own, lim)
	if internal {
		// A Relationship Manager forwards a partner's email: the partner
		// is the sender found in the forward, and a person approves.
		res.Via = headerFrom
		flags = append(flags, keydesk.FlagForwarded)
		switch {
		case bd.forward == nil:
			res.From = ""
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonUnknownSender,
				Message:    "the email comes from " + keydesk.SafeLine(headerFrom, 200) + " but forwards no partner's email",
				Suggestion: "forward the partner's original email as is (inline or as an attachment)"})
		case len(bd.forward.several) > 0:
			res.From = ""
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonUnknownSender,
				Message:    "the forwarded email's From line names several addresses (" + keydesk.SafeLine(strings.Join(bd.forward.several, ", "), 300) + "): which one sent it is not clear",
				Suggestion: "support checks who sent it; forward the partner's original email as is (as an attachment keeps its header intact)"})
		case bd.forward.from == "":
			res.From = ""
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonUnknownSender,
				Message:    "the forwarded email's sender cannot be read",
				Suggestion: "forward the partner's original email as is, with its From line"})
		default:
			res.From = bd.forward.from
		}
		if len(drafts) == 0 && bd.forward != nil {
			drafts = readDrafts(bd.forward.own, lim)
		}
	} else if len(drafts) == 0 && bd.forward != nil && !isInternal(bd.forward.from, o.InternalDomains) {
		// A partner forwarding a colleague's request: the partner is the
		// sender. A forward of our own mail (an acknowledgement names the
		// fields too) is never read as a new request.
		drafts = readDrafts(bd.forward.own, lim)
	}
	if res.From != "" {
		if p, ok := o.Registry.ByRequester(res.From); ok {
			res.Partner = p
		}
	}
	if !dmarcOK {
		flags = append(flags, keydesk.FlagDMARCNotPassed)
		if o.RequireDMARC && headerFrom != "" {
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonSenderNotAuthenticated,
				Message:    "the sender could not be authenticated: " + dmarcWhy,
				Suggestion: "send from your organisation's mail server, which signs its mail (DKIM) and publishes DMARC"})
		} else if headerFrom != "" {
			warn("the sender is not authenticated (%s): a person reviews the request", dmarcWhy)
		}
	}

	var parsed []parsedRequest
	for _, d := range drafts {
		parsed = append(parsed, validate(d, lim)...)
	}
	if len(parsed) > lim.Requests {
		reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonTooLarge,
			Message:    fmt.Sprintf("the email holds %d requests: at most %d are read from one email", len(parsed), lim.Requests),
			Suggestion: "send the requests in several emails"})
		parsed = parsed[:lim.Requests]
	}

	authenticated := res.Partner != nil && (dmarcOK || !o.RequireDMARC)
	switch {
	case res.Partner == nil:
		res.Verdict = Review
		flags = append(flags, keydesk.FlagUnknownSender)
		if res.From != "" || !internal {
			who := keydesk.SafeLine(res.From, 200)
			if who == "" {
				who = "the sender"
			}
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonUnknownSender,
				Message:    who + " is not a registered requester of any partner",
				Suggestion: "support checks who sent it; partners ask their Relationship Manager to register new requesters"})
		}
		reasons = append(reasons, fatal...)
	case !authenticated:
		res.Verdict = Review
		reasons = append(reasons, fatal...)
	case len(fatal) > 0:
		res.Verdict = Reject
		reasons = append(reasons, fatal...)
	case len(parsed) == 0:
		res.Verdict = Review
		flags = append(flags, keydesk.FlagNeedsReview)
		warn("no Environment, Scopes or Label line was found: this does not read as a key request")
	default:
		res.Verdict = Accept
		if o.ContactKeyProblem != nil {
			if err := o.ContactKeyProblem(res.Partner); err != nil {
				reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonContactKeyUnusable,
					Message:    "the OpenPGP key of your registered technical contact cannot be used: " + keydesk.SafeLine(err.Error(), 200),
					Suggestion: "ask your technical contact to send their current public key to your Relationship Manager, then send the request again"})
			}
		}
		if o.ExpiringSoon != nil && o.ExpiringSoon(res.Partner) {
			flags = append(flags, keydesk.FlagContactKeyExpiring)
		}
	}
	if res.Verdict == Review && len(parsed) == 0 && !containsFlag(flags, keydesk.FlagNeedsReview) {
		flags = append(flags, keydesk.FlagNeedsReview)
	}

	// Per-request checks against the partner.
	for i := range parsed {
		pr := &parsed[i]
		if res.Partner == nil || pr.env == "" {
			continue
		}
		if _, ok := res.Partner.Environments[pr.env]; !ok {
			pr.reasons = append(pr.reasons, keydesk.Reason{Code: keydesk.ReasonInvalidEnvironment,
				Message:    fmt.Sprintf("%s has no %s access set up", res.Partner.Name, pr.env),
				Suggestion: fmt.Sprintf("ask your Relationship Manager to enable %s, or request a key for an environment you have", pr.env)})
		}
	}
	hasRequestReasons := false
	for _, pr := range parsed {
		if len(pr.reasons) > 0 {
			hasRequestReasons = true
		}
	}
	if res.Verdict == Accept && (len(reasons) > 0 || hasRequestReasons) {
		res.Verdict = Reject
	}

	res.Reasons = appendReasons(nil, reasons...)
	for _, pr := range parsed {
		res.Reasons = appendReasons(res.Reasons, pr.reasons...)
	}
	if res.Verdict == Accept || res.Verdict == Reject {
		res.ReplyTo = res.Via
		if res.ReplyTo == "" {
			res.ReplyTo = res.From
		}
	}
	res.Requests = records(res, parsed, flags, reasons)
	return res
}

// records builds the queue records: one per request, or one standing for
// the whole email when no request could be read, so support sees it.
func records(res *Result, parsed []parsedRequest, flags []keydesk.Flag, reasons []keydesk.Reason) []*keydesk.Request {
	if res.Verdict == Ignore {
		return nil
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
