package parse

import (
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/emersion/go-msgauth/authres"
)

// dmarc reports whether the topmost Authentication-Results header stamped
// by a trusted authserv-id says dmarc=pass for fromDomain. Our MTA adds its
// header on top and removes any with its own ID that arrived with the
// message (RFC 8601 §5), so lower ones are the sender's word, not ours.
func dmarc(m *msg, trusted []string, fromDomain string) (bool, string) {
	if !m.headerOK || fromDomain == "" {
		return false, "no sender address"
	}
	fields := m.header.FieldsByKey("Authentication-Results")
	n := 0
	for fields.Next() {
		n++
		if n > 50 {
			break
		}
		id, results, _ := authres.Parse(stripComments(fields.Value()))
		if !isTrusted(id, trusted) {
			continue
		}
		why := "no dmarc result from " + keydesk.SafeLine(id, 100)
		for _, r := range results {
			d, ok := r.(*authres.DMARCResult)
			if !ok {
				continue
			}
			hf := keydesk.ASCIILower(strings.TrimSpace(d.From))
			switch {
			case d.Value != authres.ResultPass:
				why = "dmarc=" + string(d.Value) + " for " + keydesk.SafeLine(hf, 100)
			case hf != fromDomain && !keydesk.SameDomain(hf, fromDomain):
				why = "dmarc=pass is for " + keydesk.SafeLine(hf, 100) + ", not the From domain " + keydesk.SafeLine(fromDomain, 100)
			default:
				return true, ""
			}
		}
		return false, why
	}
	return false, "no Authentication-Results header from a trusted server"
}

// isTrusted compares authserv-ids as ASCII, case aside: ours are host
// names, and an ID with any other character is a lookalike, never ours.
func isTrusted(id string, trusted []string) bool {
	if id == "" || !isASCII(id) {
		return false
	}
	id = keydesk.ASCIILower(id)
	for _, t := range trusted {
		if keydesk.ASCIILower(strings.TrimSpace(t)) == id {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// stripComments removes RFC 5322 comments, which authres does not skip:
// "dmarc=pass (p=reject; dis=none) header.from=x" has a ';' in one.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	quoted := false
	esc := false
	for _, r := range s {
		switch {
		case esc:
			esc = false
			if depth == 0 {
				b.WriteRune(r)
			}
			continue
		case r == '\\':
			esc = true
			if depth == 0 {
				b.WriteRune(r)
			}
			continue
		case quoted:
			if r == '"' {
				quoted = false
			}
		case r == '"' && depth == 0:
			quoted = true
		case r == '(':
			depth++
			continue
		case r == ')' && depth > 0:
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
			continue
		}
		if depth == 0 {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// automatic recognises mail no person wrote to us: auto-replies, bounces,
// list traffic and our own messages coming back. Answering those loops.
func automatic(m *msg, from string) (keydesk.Reason, bool) {
	h := m.header
	auto := func(msg string) (keydesk.Reason, bool) {
		return keydesk.Reason{Code: keydesk.ReasonAutoReply, Message: msg}, true
	}
	bounce := func(msg string) (keydesk.Reason, bool) {
		return keydesk.Reason{Code: keydesk.ReasonBounce, Message: msg}, true
	}
	for _, v := range h.Values("X-Loop") {
		if strings.Contains(strings.ToLower(v), "keydesk") {
			return auto("keydesk's own message came back (X-Loop): a mail loop was stopped")
		}
	}
	if m.report == "delivery-status" {
		return bounce("a delivery status notification (bounce)")
	}
	if rp := strings.TrimSpace(h.Get("Return-Path")); rp == "<>" {
		return bounce("a message with an empty return path (a bounce or notification)")
	}
	local, _, _ := strings.Cut(from, "@")
	if local == "mailer-daemon" || local == "postmaster" {
		return bounce("a message from " + local)
	}
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		return auto("an automatic message (Auto-Submitted: " + keydesk.SafeLine(v, 40) + ")")
	}
	for _, k := range []string{"X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autoresponder"} {
		if h.Has(k) {
			return auto("an automatic reply (" + k + ")")
		}
	}
	if m.report == "disposition-notification" {
		return auto("a read receipt")
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Precedence"))) {
	case "bulk", "junk", "list", "auto_reply":
		return auto("bulk or list mail (Precedence: " + keydesk.SafeLine(strings.ToLower(h.Get("Precedence")), 20) + ")")
	}
	if h.Has("List-Id") || h.Has("List-Unsubscribe") {
		return auto("mailing-list mail (List-Id or List-Unsubscribe)")
	}
	s := strings.ToLower(m.subject)
	for _, p := range []string{"automatic reply:", "auto:", "autoreply:", "out of office", "abwesenheitsnotiz", "réponse automatique", "automatische antwort"} {
		if strings.HasPrefix(s, p) {
			return auto("an out-of-office reply")
		}
	}
	return keydesk.Reason{}, false
}
