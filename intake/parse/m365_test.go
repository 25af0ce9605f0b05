package parse

import (
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// Header fields as Exchange Online writes them on mail from the internet
// into the tenant that hosts the support mailbox.
const (
	m365Received = "Received: from AM6PR04MB5621.eurprd04.prod.outlook.com (2603:10a6:20b:ab::19) by\r\n" +
		" DB9PR04MB8477.eurprd04.prod.outlook.com with HTTPS; Thu, 26 Nov 2026 10:00:02 +0000\r\n"
	m365ARC = "ARC-Authentication-Results: i=1; mx.microsoft.com 1; spf=pass\r\n" +
		" smtp.mailfrom=acme.example; dmarc=pass action=none header.from=acme.example;\r\n" +
		" dkim=pass header.d=acme.example; arc=none\r\n"
	m365Pass = "Authentication-Results: spf=pass (sender IP is 203.0.113.25)\r\n" +
		" smtp.mailfrom=acme.example; dkim=pass (signature was verified)\r\n" +
		" header.d=acme.example;dmarc=pass action=none\r\n" +
		" header.from=acme.example;compauth=pass reason=100\r\n"
	m365Fail = "Authentication-Results: spf=fail (sender IP is 198.51.100.7)\r\n" +
		" smtp.mailfrom=acme.example; dkim=none (message not signed)\r\n" +
		" header.d=none;dmarc=fail action=oreject\r\n" +
		" header.from=acme.example;compauth=fail reason=000\r\n"
	m365Anonymous = "X-MS-Exchange-Organization-AuthAs: Anonymous\r\n" +
		"X-MS-Exchange-Organization-AuthSource: AM6PR04MB5621.eurprd04.prod.outlook.com\r\n"
	m365Tenant = "X-MS-Exchange-CrossTenant-Id: " + ExampleTenantID + "\r\n" +
		"X-MS-Exchange-CrossTenant-AuthAs: Anonymous\r\n" +
		"X-MS-Exchange-CrossTenant-FromEntityHeader: Internet\r\n"
	// What an outsider writes into the email itself: below the tenant's stamp.
	forgedPass = "Authentication-Results: spf=pass smtp.mailfrom=acme.example; dkim=pass\r\n" +
		" header.d=acme.example;dmarc=pass action=none header.from=acme.example\r\n"
)

// m365Email is a request from Jane at Acme as the support mailbox on
// Microsoft 365 holds it: the tenant's fields on top, then the sender's.
func m365Email(top, sender string) string {
	return top + "From: Jane Doe <jane@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: keys\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m365@acme.example>\r\n" + sender + "\r\n" + request
}

// TestMicrosoft365 checks that the tenant's own Authentication-Results
// stamp, which has no authserv-id, authenticates the sender, and that no
// copy the sender writes does.
func TestMicrosoft365(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		tenant string // "" keeps ExampleTenantID
		pass   bool
		why    string // part of the reason when it does not pass
	}{
		{name: "the tenant's stamp says pass", pass: true,
			raw: m365Email(m365Received+m365ARC+m365Pass+m365Anonymous+m365Tenant, "")},
		{name: "the tenant's fields below the sender's (Exchange writes them there too)", pass: true,
			raw: m365Email(m365Received+m365Pass, m365Anonymous+m365Tenant)},
		{name: "a forged pass below the real pass", pass: true,
			raw: m365Email(m365Received+m365Pass+m365Anonymous+m365Tenant, forgedPass)},
		{name: "a forged pass below the real fail", why: "dmarc=fail for acme.example",
			raw: m365Email(m365Received+m365Fail+m365Anonymous+m365Tenant, forgedPass)},
		{name: "only the ARC copy says pass", why: "no Authentication-Results header from a trusted server",
			raw: m365Email(m365Received+m365ARC+m365Anonymous+m365Tenant, "")},
		{name: "mail submitted inside the tenant: the topmost header is the sender's", why: "AuthAs is Internal",
			raw: m365Email(m365Received+"X-MS-Exchange-Organization-AuthAs: Internal\r\n"+m365Tenant, forgedPass)},
		{name: "the sender adds AuthAs Anonymous below the tenant's Internal", why: "AuthAs is Internal",
			raw: m365Email(m365Received+"X-MS-Exchange-Organization-AuthAs: Internal\r\n"+m365Tenant, forgedPass+m365Anonymous)},
		{name: "no tenant fields at all", why: "no X-MS-Exchange-Organization-AuthAs",
			raw: m365Email(m365Received, forgedPass)},
		{name: "another tenant delivered it", why: "not delivered by the configured Microsoft 365 tenant",
			raw: m365Email(m365Received+m365Pass+m365Anonymous+strings.ReplaceAll(m365Tenant, ExampleTenantID, "11111111-2222-3333-4444-555555555555"), "")},
		{name: "no tenant configured", tenant: "none", why: "no Authentication-Results header from a trusted server",
			raw: m365Email(m365Received+m365Pass+m365Anonymous+m365Tenant, "")},
		{name: "pass for another domain", why: "dmarc=pass is for evil.example",
			raw: m365Email(m365Received+strings.ReplaceAll(m365Pass, "header.from=acme.example", "header.from=evil.example")+m365Anonymous+m365Tenant, "")},
		{name: "bestguesspass is not pass", why: "dmarc=bestguesspass",
			raw: m365Email(m365Received+strings.ReplaceAll(m365Pass, "dmarc=pass action=none", "dmarc=bestguesspass action=none")+m365Anonymous+m365Tenant, "")},
		{name: "our own MTA's stamp on top still counts", pass: true,
			raw: m365Email(goodAR+m365Fail+m365Anonymous+m365Tenant, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			switch tt.tenant {
			case "none":
				o.Microsoft365TenantID = ""
			case "":
			default:
				o.Microsoft365TenantID = tt.tenant
			}
			r := mustParse(t, tt.raw, o)
			if tt.pass {
				if r.Verdict != Accept || r.Requests[0].HasFlag(keydesk.FlagDMARCNotPassed) {
					t.Fatalf("verdict %s, reasons %v: want accept, authenticated", r.Verdict, r.Reasons)
				}
				return
			}
			if r.Verdict != Review || !hasReason(r, keydesk.ReasonSenderNotAuthenticated, tt.why) {
				t.Fatalf("verdict %s, reasons %v: want review, not authenticated: %q", r.Verdict, r.Reasons, tt.why)
			}
		})
	}
}
