package parse

import (
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// rmEmail is a Relationship Manager's authenticated email from addr with body.
func rmEmail(addr, extraHeader, body string) string {
	return "Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=buildmarkets.ai\r\n" +
		"From: Ron Manager <" + addr + ">\r\nTo: support@buildmarkets.ai\r\nSubject: Fwd: keys\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <fwd@buildmarkets.ai>\r\n" + extraHeader + "\r\n" + body
}

func inlineForward(from string) string {
	return "Please set this up.\n\n---------- Forwarded message ---------\nFrom: " + from +
		"\nDate: Wed, 25 Nov 2026 09:00\nSubject: keys\n\n" + request
}

func attachedForward(from string) (string, string) {
	return "Content-Type: multipart/mixed; boundary=f\r\n",
		"--f\r\nContent-Type: text/plain\r\n\r\nPlease set this up.\r\n--f\r\nContent-Type: message/rfc822\r\n\r\n" +
			"From: " + from + "\r\nSubject: keys\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000\r\n\r\n" + request + "\r\n--f--\r\n"
}

// TestForgedForwardSender: in a Relationship Manager's forward, a From
// line that names the partner and then another address is not the
// partner's: it goes to a person, unanswered, with both addresses named.
func TestForgedForwardSender(t *testing.T) {
	forged := []string{
		"Jane <jane@acme.example> <attacker@evil.test>",
		"jane@acme.example <attacker@evil.test>",
		"jane@acme.example, attacker@evil.test",
		"Jane [mailto:jane@acme.example] <attacker@evil.test>",
	}
	for _, from := range forged {
		for _, shape := range []string{"inline", "attached"} {
			t.Run(shape+" "+from, func(t *testing.T) {
				raw := rmEmail("rm@buildmarkets.ai", "", inlineForward(from))
				if shape == "attached" {
					h, b := attachedForward(from)
					raw = rmEmail("rm@buildmarkets.ai", h, b)
				}
				r := mustParse(t, raw, testOptions())
				if r.Verdict != Review || r.Partner != nil || r.ReplyTo != "" {
					t.Fatalf("verdict %s partner %v reply to %q: want review, no partner, no reply", r.Verdict, r.Partner, r.ReplyTo)
				}
				if r.From == "jane@acme.example" {
					t.Errorf("the sender was read as jane")
				}
				if !hasReason(r, keydesk.ReasonUnknownSender, "names several addresses (jane@acme.example, attacker@evil.test)") {
					t.Errorf("no reason naming both addresses: %v", r.Reasons)
				}
			})
		}
	}
	for _, from := range []string{"Jane Doe <jane@acme.example>", "jane@acme.example <jane@acme.example>", "\"jane@acme.example\" <jane@acme.example>"} {
		t.Run("one address: "+from, func(t *testing.T) {
			r := mustParse(t, rmEmail("rm@buildmarkets.ai", "", inlineForward(from)), testOptions())
			if r.Verdict != Accept || r.From != "jane@acme.example" || r.Via != "rm@buildmarkets.ai" {
				t.Fatalf("verdict %s from %q via %q reasons %v: want accept from jane via rm", r.Verdict, r.From, r.Via, r.Reasons)
			}
		})
	}
}

// TestRelationshipManagers: with sender_auth.relationship_managers set,
// only the listed addresses forward for partners; another address at an
// internal domain is an ordinary, unknown sender.
func TestRelationshipManagers(t *testing.T) {
	o := testOptions()
	o.RelationshipManagers = []string{"RM@buildmarkets.ai"}
	fwd := inlineForward("Jane Doe <jane@acme.example>")
	tests := []struct {
		name, from string
		verdict    Verdict
		via        string
	}{
		{"listed", "rm@buildmarkets.ai", Accept, "rm@buildmarkets.ai"},
		{"listed, other case", "Rm@Buildmarkets.AI", Accept, "rm@buildmarkets.ai"},
		{"internal, not listed", "intern@buildmarkets.ai", Review, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, rmEmail(tt.from, "", fwd), o)
			if r.Verdict != tt.verdict || r.Via != tt.via {
				t.Fatalf("verdict %s via %q reasons %v: want %s via %q", r.Verdict, r.Via, r.Reasons, tt.verdict, tt.via)
			}
			if tt.verdict == Review {
				if r.Partner != nil || r.ReplyTo != "" {
					t.Errorf("partner %v reply to %q: an unlisted internal sender speaks for no partner", r.Partner, r.ReplyTo)
				}
				if !hasReason(r, keydesk.ReasonUnknownSender, tt.from) {
					t.Errorf("no unknown-sender reason for %s: %v", tt.from, r.Reasons)
				}
				if !strings.Contains(strings.Join(r.Warnings, "\n"), "not one of the listed Relationship Managers") {
					t.Errorf("warnings %v do not say why the forward was not read", r.Warnings)
				}
			}
		})
	}
}
