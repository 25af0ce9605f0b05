package parse

import (
	"regexp"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// Bounds of what a reply's threading headers and text may name: the
// headers are the sender's word, read only to find keydesk's own
// Message-IDs, so a hostile list costs at most this many lookups.
const (
	MaxReferences      = 50       // Message-IDs of In-Reply-To and References together
	MaxMessageIDLength = 250      // bytes of one Message-ID; longer ones are skipped
	MaxNamedIDs        = 10       // request IDs read from the subject, and from the text
	MaxOwnText         = 16 << 10 // bytes of the sender's own text kept in Result.Text
)

// messageIDs reads the Message-IDs of a threading header value ("<a@b>
// <c@d>", or bare IDs from clients that drop the brackets), normalised,
// without duplicates, at most max of them. An ID that is too long, empty,
// or holds control characters or spaces is skipped: it can be no ID
// keydesk made.
func messageIDs(v string, max int) []string {
	var out []string
	add := func(id string) {
		id = strings.Trim(strings.TrimSpace(id), "<>")
		if id == "" || len(id) > MaxMessageIDLength || !strings.Contains(id, "@") || !keydesk.Inert(id) ||
			strings.ContainsAny(id, " \t\r\n<>") || slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, id) }) {
			return
		}
		out = append(out, id)
	}
	if !strings.Contains(v, "<") {
		for _, f := range strings.Fields(v) {
			if len(out) >= max {
				break
			}
			add(f)
		}
		return out
	}
	for len(out) < max {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		v = v[i+1:]
		j := strings.IndexByte(v, '>')
		if j < 0 {
			break
		}
		add(v[:j])
		v = v[j+1:]
	}
	return out
}

// threading reads In-Reply-To and References, at most MaxReferences IDs
// together. Of a References list longer than what is left, the first
// (the thread's start, often keydesk's acknowledgement) and the last
// (the closest to this reply) are kept.
func threading(m *msg) (inReplyTo, references []string) {
	if !m.headerOK {
		return nil, nil
	}
	inReplyTo = messageIDs(m.header.Get("In-Reply-To"), 5)
	left := MaxReferences - len(inReplyTo)
	all := messageIDs(m.header.Get("References"), 4*MaxReferences)
	all = slices.DeleteFunc(all, func(id string) bool {
		return slices.ContainsFunc(inReplyTo, func(o string) bool { return strings.EqualFold(o, id) })
	})
	if len(all) > left {
		head := left / 4
		all = append(all[:head:head], all[len(all)-(left-head):]...)
	}
	return inReplyTo, all
}

var requestIDInTextRE = regexp.MustCompile(`(?i)\bKR-[0-9]{8}-[0-9A-Z]{4}\b`)

// requestIDs finds the request IDs named in s, upper-cased, without
// duplicates, at most MaxNamedIDs.
func requestIDs(s string) []string {
	var out []string
	for _, m := range requestIDInTextRE.FindAllString(s, 4*MaxNamedIDs) {
		id := strings.ToUpper(m)
		if keydesk.ValidRequestID(id) && !slices.Contains(out, id) {
			out = append(out, id)
			if len(out) == MaxNamedIDs {
				break
			}
		}
	}
	return out
}

// questionRE matches the ways partners ask where a request stands, in
// English, German, French and Spanish.
var questionRE = regexp.MustCompile(`(?i)(\?|\bany (news|update|progress)|\bstatus\b|\bupdate on\b|where (is|are) (my|our|the)\b|what happened (to|with)|\bstill waiting\b|\bhaven'?t heard\b|\bno (reply|answer|response) (yet|so far)|` +
	`\bstand der\b|\bsachstand\b|\bneuigkeiten\b|\bwo bleib|\bwas ist mit\b|\bwarte(n)? noch\b|` +
	`\bdes nouvelles\b|\boù en est\b|\bqu'en est-il\b|\bstatut\b|\btoujours pas\b|` +
	`\balguna novedad\b|\bnovedades\b|\bestado de\b|\bdónde está|\bqué pasó con\b|\btodavía no\b)`)

// asksStatus reports whether the sender's own lines ask where things stand.
func asksStatus(own []string) bool {
	for _, l := range own {
		if questionRE.MatchString(l) {
			return true
		}
	}
	return false
}

// ownText is the sender's own lines as one inert text, bounded.
func ownText(own []string) string {
	s := keydesk.SafeText(strings.TrimSpace(strings.Join(own, "\n")))
	if len(s) > MaxOwnText {
		s = strings.ToValidUTF8(s[:MaxOwnText], "")
	}
	return s
}

// stated is what the parsed requests state, without the reasons that
// only say a field is missing: a reply states the fields it changes.
func stated(parsed []parsedRequest) []Stated {
	var out []Stated
	for _, pr := range parsed {
		s := Stated{
			Environment: pr.env, HasEnvironment: pr.has[fieldEnv] && pr.env != "",
			Scopes: pr.scopes, HasScopes: pr.has[fieldScopes],
			Label: pr.label, HasLabel: pr.has[fieldLabel] && pr.label != "",
		}
		for _, r := range pr.reasons {
			switch r.Code {
			case keydesk.ReasonMissingEnvironment, keydesk.ReasonMissingScopes, keydesk.ReasonMissingLabel:
			default:
				s.Reasons = append(s.Reasons, r)
			}
		}
		if s.Any() || len(s.Reasons) > 0 {
			out = append(out, s)
		}
	}
	return out
}
