package demo

import (
	"fmt"
	"strings"
	"time"
)

// seedEmail is one email seeded into the demo's support mailbox, with what
// keydesk should make of it.
type seedEmail struct {
	name string // what it shows
	from string
	// want is the expected outcome: "delivered" (keys made and sent, one
	// per request), "rejected" (the sender is told why), "review-reject"
	// (held for a person, who rejects it: no reply to an unknown sender),
	// "ignored" (an auto-reply: no request, no reply).
	want     string
	requests int // requests the email holds
	raw      string
}

// seedEmails are realistic requests as partners write them.
func seedEmails(now time.Time) []seedEmail {
	date := now.UTC().Add(-10 * time.Minute)
	msg := func(id, from, subject, extra, body string) string {
		return Message(date, id, from, subject, extra, body)
	}
	return []seedEmail{
		{
			name: "a sandbox key (auto-approved for Acme)", from: "ada@acme.example", want: "delivered", requests: 1,
			raw: msg("demo-sandbox", "Ada Lovelace <ada@acme.example>", "New sandbox key", "", `Hello support,

Could you create a key for our reporting bot?

Environment: sandbox
Scopes: accounts:read, marketdata:read
Label: reporting-bot

Thanks,
Ada
`),
		},
		{
			name: "a production key (needs two approvers)", from: "cto@acme.example", want: "delivered", requests: 1,
			raw: msg("demo-production", "Grace Hopper <cto@acme.example>", "Production API key for the trading service", "", `Hi team,

We passed certification last week; please issue our production key.

  Environment: production
  Scopes: accounts:read, trading:read, trading:write
  Label: trading-service-prod

Best regards,
Grace Hopper
CTO, Acme Capital
`),
		},
		{
			name: "one email, two requests (sandbox and production)", from: "ops@globex.example", want: "delivered", requests: 2,
			raw: msg("demo-two", "Globex Operations <ops@globex.example>", "Keys for our market data feed", "", `Hi,

We are ready to go live. Please create these two keys:

Request 1
Environment: sandbox
Scopes: marketdata:read
Label: feed-sandbox

Request 2
Environment: production
Scopes: marketdata:read, accounts:read
Label: feed-prod

Thank you,
Globex Operations
`),
		},
		{
			name: "a typo in the scopes", from: "jane.doe@acme.example", want: "rejected", requests: 0,
			raw: msg("demo-typo", "Jane Doe <jane.doe@acme.example>", "API key request", "", `Environment: sandbox
Scopes: accounts:read, trading:raed
Label: sandbox-backend

Jane
`),
		},
		{
			name: "an unknown sender", from: "eve@stranger.example", want: "review-reject", requests: 1,
			raw: msg("demo-unknown", "Eve <eve@stranger.example>", "API key", "", `Environment: production
Scopes: trading:write
Label: quick-access
`),
		},
		{
			name: "an out-of-office auto-reply", from: "ada@acme.example", want: "ignored", requests: 0,
			raw: msg("demo-ooo", "Ada Lovelace <ada@acme.example>", "Automatic reply: New sandbox key",
				"Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n",
				"I am out of the office until Monday with limited access to email.\n"),
		},
	}
}

// Message writes a partner's email as the support mailbox holds it:
// from "Name <user@domain>", received and stamped by our own MTA
// (Authserv) with DKIM, SPF and DMARC passing for the sender's domain;
// extra holds further header lines, each ending in CRLF. The Message-ID is
// <id@mail.domain>.
func Message(date time.Time, id, from, subject, extra, body string) string {
	dom := from[strings.LastIndexByte(from, '@')+1 : len(from)-1]
	h := fmt.Sprintf("Received: from mail-out.%[1]s (mail-out.%[1]s [203.0.113.25])\r\n"+
		"\tby %[2]s (Postfix) with ESMTPS id 4Ch8Zt1Lq2z9sWl; %[3]s\r\n"+
		"Authentication-Results: %[2]s;\r\n"+
		"\tdkim=pass header.d=%[1]s header.s=s1;\r\n"+
		"\tspf=pass smtp.mailfrom=%[1]s;\r\n"+
		"\tdmarc=pass (p=REJECT) header.from=%[1]s\r\n"+
		"From: %[4]s\r\nTo: Buildmarkets Support <support@%[5]s>\r\nSubject: %[6]s\r\n"+
		"Date: %[3]s\r\nMessage-ID: <%[7]s@mail.%[1]s>\r\nMIME-Version: 1.0\r\n%[8]s"+
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
		dom, Authserv, date.UTC().Format(time.RFC1123Z), from, Domain, subject, id, extra)
	return h + strings.ReplaceAll(body, "\n", "\r\n")
}
