package parse

import (
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// TestLookalikes: a sender, a Relationship Manager's domain or an
// authserv-id written with letters that Unicode case folding turns into
// the trusted ASCII names is none of them. The sender is shown as received.
func TestLookalikes(t *testing.T) {
	const (
		kelvin = "\u212a" // KELVIN SIGN, folds to k
		longS  = "\u017f" // LATIN SMALL LETTER LONG S, folds to s
		dotI   = "\u0130" // LATIN CAPITAL LETTER I WITH DOT ABOVE, lower-cases to i
	)
	msg := func(ar, from, body string) string {
		return ar + "From: " + from + "\r\nTo: support@buildmarkets.ai\r\nSubject: keys\r\n" +
			"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <look@example>\r\n\r\n" + body
	}
	ar := func(id, domain string) string {
		return "Authentication-Results: " + id + "; dmarc=pass header.from=" + domain + "\r\n"
	}
	forward := "Please set this up.\n\n---------- Forwarded message ---------\nFrom: Jane Doe <jane@acme.example>\nDate: Wed, 25 Nov 2026\nSubject: keys\n\n" + request
	tests := []struct {
		name   string
		raw    string
		from   string             // the sender as received
		reason keydesk.ReasonCode // why it goes to review
	}{
		{"relationship manager at buildmar\u212aets.ai",
			msg(ar("mx.buildmarkets.ai", "buildmar"+kelvin+"ets.ai"), "rm@buildmar"+kelvin+"ets.ai", forward),
			"rm@buildmar" + kelvin + "ets.ai", keydesk.ReasonUnknownSender},
		{"relationship manager at buildmarket\u017f.ai",
			msg(ar("mx.buildmarkets.ai", "buildmarket"+longS+".ai"), "rm@buildmarket"+longS+".ai", forward),
			"rm@buildmarket" + longS + ".ai", keydesk.ReasonUnknownSender},
		{"the holding's CTO at acme-hold\u0130ngs.example",
			msg(ar("mx.buildmarkets.ai", "acme-hold"+dotI+"ngs.example"), "cto@acme-hold"+dotI+"ngs.example", request),
			"cto@acme-hold" + dotI + "ngs.example", keydesk.ReasonUnknownSender},
		{"authserv-id mx.buildmar\u212aets.ai",
			msg(ar("mx.buildmar"+kelvin+"ets.ai", "acme.example"), "jane@acme.example", request),
			"jane@acme.example", keydesk.ReasonSenderNotAuthenticated},
		{"authserv-id mx.buildmarket\u017f.ai",
			msg(ar("mx.buildmarket"+longS+".ai", "acme.example"), "jane@acme.example", request),
			"jane@acme.example", keydesk.ReasonSenderNotAuthenticated},
		{"dmarc=pass for acme-hold\u0130ngs.example",
			msg(ar("mx.buildmarkets.ai", "acme-hold"+dotI+"ngs.example"), "cto@acme-holdings.example", request),
			"cto@acme-holdings.example", keydesk.ReasonSenderNotAuthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, tt.raw, testOptions())
			if r.Verdict != Review {
				t.Fatalf("verdict %s partner %v via %q reasons %v: want review", r.Verdict, r.Partner, r.Via, r.Reasons)
			}
			if tt.reason == keydesk.ReasonUnknownSender && r.Partner != nil {
				t.Errorf("a lookalike sender was taken for partner %s", r.Partner.ID)
			}
			if r.Via != "" || r.ReplyTo != "" {
				t.Errorf("via %q reply to %q: a lookalike is no Relationship Manager and gets no reply", r.Via, r.ReplyTo)
			}
			if r.From != tt.from {
				t.Errorf("sender %q, want %q as received", r.From, tt.from)
			}
			if !hasReason(r, tt.reason, "") {
				t.Errorf("no %s reason: %v", tt.reason, r.Reasons)
			}
		})
	}
	t.Run("an internationalised domain still matches", func(t *testing.T) {
		o := testOptions()
		o.Registry.Partners[1].Requesters = []string{"*@bücher.example"}
		raw := msg(ar("MX.buildmarkets.ai", "xn--bcher-kva.example"), "ops@bücher.example", request)
		r := mustParse(t, raw, o)
		if r.Partner == nil || r.Partner.ID != "globex" || !strings.Contains(r.From, "bücher") {
			t.Fatalf("partner %v from %q reasons %v: want globex, from as written", r.Partner, r.From, r.Reasons)
		}
		if r.Requests[0].HasFlag(keydesk.FlagDMARCNotPassed) {
			t.Errorf("dmarc=pass for the A-label did not count for the U-label: %v", r.Reasons)
		}
	})
}
