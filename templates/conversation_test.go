package templates

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// conversationMails are the partner emails of a request's conversation
// that staff send, each with its golden file.
func conversationMails() []struct {
	golden, tmpl string
	data         any
} {
	pending := RequestFacts{ID: "KR-20261127-7QX4", Environment: "sandbox", Scopes: "accounts:read, trading:read",
		Label: "sandbox-backend", Status: StateWords(keydesk.StatePendingReview)}
	long := RequestFacts{ID: "KR-20261127-9ZZ2", Environment: "production",
		Scopes: "accounts:read, accounts:write, trading:read, trading:write, marketdata:read, marketdata:stream",
		Label:  "production-trading-engine-eu-west-1-primary-cluster-blue-green-a", Status: StateWords(keydesk.StateBlocked)}
	return []struct {
		golden, tmpl string
		data         any
	}{
		{"staff-reply", "staff-reply", StaffReply{Subject: "Re: Sandbox API keys for our backend", Request: pending,
			Text: "Thanks for your email. We looked at the request and it is fine; it waits for the second approval that production keys need, which we give during office hours.\n\nThe batch after that creates the key."}},
		{"staff-reply-long-values", "staff-reply", StaffReply{Subject: "Re: your API key request", Request: long,
			Text: "Your contact's key has expired: see https://support.buildmarkets.ai/articles/openpgp-contact-key-renewal-for-partners-and-technical-contacts"}},
		{"proposal-outcome-accepted", "proposal-outcome", ProposalOutcome{Subject: "Re: Sandbox API keys for our backend", Accepted: true,
			Asked:   AskedOf([]keydesk.FieldChange{{Field: "scopes", From: "accounts:read, trading:read", To: "accounts:read"}}),
			Request: RequestFacts{ID: pending.ID, Environment: "sandbox", Scopes: "accounts:read", Label: "sandbox-backend", Status: pending.Status}}},
		{"proposal-outcome-refused", "proposal-outcome", ProposalOutcome{Subject: "Re: Sandbox API keys for our backend",
			Asked: AskedOf([]keydesk.FieldChange{{Field: "environment", From: "sandbox", To: "production"},
				{Field: "label", From: "sandbox-backend", To: "prod-backend"}}),
			Request: pending}},
	}
}

// TestConversationMailGolden: a staff reply and a proposal's outcome read
// exactly as their golden files, at most 72 columns a line, signed off by
// the company, telling the partner to reply to the same email.
func TestConversationMailGolden(t *testing.T) {
	s := MustLoadEmbedded()
	for _, tc := range conversationMails() {
		t.Run(tc.golden, func(t *testing.T) {
			m, err := s.RenderMail(tc.tmpl, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			got := m.Subject + "\n\n" + m.Body
			path := filepath.Join("testdata", tc.golden+".golden")
			if os.Getenv("KEYDESK_WRITE_GOLDEN") != "" {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s reads\n%s\nwant\n%s", tc.golden, got, want)
			}
			for i, l := range strings.Split(m.Body, "\n") {
				if n := utf8.RuneCountInString(l); n > MailWidth && strings.Contains(strings.TrimSpace(l), " ") {
					t.Errorf("line %d is %d columns: %q", i+1, n, l)
				}
			}
			const end = "For anything about this request, reply to this email.\n\nKind regards,\nBuildmarkets Partner Support\n"
			if !strings.HasSuffix(m.Body, end) {
				t.Errorf("the body does not end with the reply line and the sign-off:\n%s", m.Body)
			}
			if strings.Contains(strings.ToLower(m.Body), "keydesk") || strings.Contains(m.Body, "next batch") {
				t.Errorf("the body names the tool or promises a next batch:\n%s", m.Body)
			}
		})
	}
}

func TestWrapText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"short", "one line", "one line"},
		{"long", strings.Repeat("word ", 20), strings.TrimSpace(strings.Repeat("word ", 14)) + "\n" + strings.TrimSpace(strings.Repeat("word ", 6))},
		{"one long word", "see " + strings.Repeat("x", 80) + " here", "see\n" + strings.Repeat("x", 80) + "\nhere"},
		{"paragraphs kept", "a\n\nb", "a\n\nb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wrapText(MailWidth, tc.in); got != tc.want {
				t.Errorf("wrapText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
