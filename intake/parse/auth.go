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
// With a Microsoft 365 tenant configured, the topmost header of all may
// instead be Exchange Online's stamp, which has no authserv-id (m365Stamp).
func dmarc(m *msg, o Options, fromDomain string) (bool, string) {
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
		value := stripComments(fields.Value())
		id, results, _ := authres.Parse(value)
		switch {
		case isTrusted(id, o.TrustedAuthservIDs):
		case n == 1 && o.Microsoft365TenantID != "" && noAuthservID(value):
			if why := m365Stamp(m, o.Microsoft365TenantID); why != "" {
				return false, why
			}
			id = "Microsoft 365"
			_, results, _ = authres.Parse(m365AuthservID + "; " + value)
		default:
			continue
		}
		return dmarcPass(results, id, fromDomain)
	}
	return false, "no Authentication-Results header from a trusted server"
}

// dmarcPass reads the dmarc result of one trusted header.
func dmarcPass(results []authres.Result, id, fromDomain string) (bool, string) {
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

// m365AuthservID stands in for the authserv-id Exchange Online leaves out,
// so that its stamp parses as RFC 8601 says.
const m365AuthservID = "microsoft365.invalid"

// noAuthservID reports whether an Authentication-Results value starts with
// a result (method=value) rather than an authserv-id, as Exchange Online
// writes it: "spf=pass (sender IP is …) smtp.mailfrom=…; dkim=pass …".
func noAuthservID(value string) bool {
	first, _, _ := strings.Cut(value, ";")
	first = strings.TrimSpace(first)
	name, _, ok := strings.Cut(first, "=")
	return ok && !strings.ContainsAny(strings.TrimSpace(name), " \t.")
}

// m365Stamp says why the topmost Authentication-Results header cannot be
// taken for the configured Microsoft 365 tenant's own stamp ("" when it
// can). Exchange Online stamps it on mail arriving from the internet,
// above every header the sender wrote, together with
// X-MS-Exchange-Organization-AuthAs: Anonymous; its header firewall
// removes X-MS-Exchange-Organization-* fields that arrive with a message,
// so that field is the tenant's own. Mail submitted inside the tenant
// (AuthAs Internal) gets no stamp: its topmost header could be anyone's.
// X-MS-Exchange-CrossTenant-Id names the tenant that delivered the mail.
func m365Stamp(m *msg, tenantID string) string {
	authAs := m.header.Values("X-MS-Exchange-Organization-AuthAs")
	if len(authAs) == 0 {
		return "no X-MS-Exchange-Organization-AuthAs header: the Authentication-Results header without authserv-id is not Microsoft 365's stamp"
	}
	for _, v := range authAs {
		if !strings.EqualFold(strings.TrimSpace(v), "Anonymous") {
			return "X-MS-Exchange-Organization-AuthAs is " + keydesk.SafeLine(v, 40) + ", not Anonymous: Microsoft 365 stamps only mail from the internet"
		}
	}
	for _, v := range m.header.Values("X-MS-Exchange-CrossTenant-Id") {
		if strings.EqualFold(strings.TrimSpace(v), tenantID) {
			return ""
		}
	}
	return "the email was not delivered by the configured Microsoft 365 tenant (no X-MS-Exchange-CrossTenant-Id " + keydesk.SafeLine(tenantID, 40) + ")"
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
