package templates_test

import (
	"flag"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/templates"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

// Sample values as long as their fields allow, so that every wrap shows.
var (
	longLabel = "Équipe trésorerie — moteur de règlement des ordres, instance 2/3"
	allScopes = keydesk.JoinScopes(keydesk.Scopes)
	when      = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	longToken = "very.long.local.part.that.cannot.be.broken@mail.subsidiary.acme-holdings.example"
)

// partnerMail is a partner-facing template and sample data for it.
type partnerMail struct {
	name, tmpl string
	data       any
	plural     bool // the email is about several requests
}

// partnerMails is every template of an email to a partner, with sample
// data. A new partner-facing template gets a row here.
var partnerMails = []partnerMail{
	{"acknowledgement approved", "acknowledgement", reply.AckData{Subject: "Re: keys", Partner: "Acme Capital", From: "jane@acme.example",
		Requests: []reply.RequestLine{{ID: "KR-20261127-7QX4", Environment: "sandbox", Scopes: allScopes, Label: longLabel, Approved: true}}, NextBatch: when}, false},
	{"acknowledgement waiting", "acknowledgement", reply.AckData{Subject: "Re: keys", Partner: "Acme Capital", Via: "rm@buildmarkets.ai", From: longToken,
		Requests: []reply.RequestLine{{ID: "KR-20261127-7QX4", Environment: "production", Scopes: allScopes, Label: longLabel,
			Why: []string{"production keys are approved by our support team", "a key with keys:manage is approved by our support team"}}}, NextBatch: when}, false},
	{"acknowledgement mixed", "acknowledgement", reply.AckData{Subject: "Re: keys", Partner: "Acme Capital", From: "jane@acme.example",
		Requests: []reply.RequestLine{{ID: "KR-20261127-7QX4", Environment: "sandbox", Scopes: "accounts:read", Label: "a", Approved: true},
			{ID: "KR-20261127-8QX5", Environment: "production", Scopes: "accounts:read", Label: "b", Why: []string{"production keys are approved by our support team"}}}}, true},
	{"acknowledgement revoke and rotate", "acknowledgement", reply.AckData{Subject: "Re: keys", Partner: "Acme Capital", From: "jane@acme.example", GraceDays: 7,
		Requests: []reply.RequestLine{{ID: "KR-20261127-7QX4", Environment: "production", Label: longLabel, Action: "Revoke", Key: "key-007 (label " + longLabel + ", production)"},
			{ID: "KR-20261127-8QX5", Environment: "production", Label: "prod-trading-engine", Action: "Rotate", Key: "key-003 (label prod-trading-engine, production)"},
			{ID: "KR-20261127-9QX6", Environment: "sandbox", Label: "md", Action: "Revoke", Key: "the keys labelled md (key-001, key-002, sandbox)", Pick: true},
			{ID: "KR-20261127-AQX7", Action: "Revoke", Key: "key-099", Problem: "key-099 is not a live key of Acme Capital's accounts",
				Suggestion: "your production keys are key-001 (label a), key-003 (label b); name the key by its key ID and environment"},
			{ID: "KR-20261127-BQX8", Environment: "sandbox", Scopes: "accounts:read", Label: "new-bot", Approved: true}}, NextBatch: when}, true},
	{"rejection of a revocation", "rejection", reply.RejectData{Subject: "Re: revoke", Partner: "Acme Capital", From: "jane@acme.example", KeyLife: true,
		IDs: []string{"KR-20261127-7QX4"}, Reasons: []reply.ReasonLine{{Code: "unknown-key", Message: "bm_key_zzz is not a live key of Acme Capital's accounts",
			Suggestion: "your sandbox keys are key-001 (label " + longLabel + "); you have no live production keys; name the key by its key ID and environment"}},
		Scopes: allScopes, MaxLabel: keydesk.MaxLabelLength}, false},
	{"rejection with example", "rejection", reply.RejectData{Subject: "Re: keys", Partner: "Acme Capital", Via: "rm@buildmarkets.ai", From: longToken,
		IDs: []string{"KR-20261127-7QX4", "KR-20261127-8QX5"}, Reasons: []reply.ReasonLine{{Code: "unknown_scope", Message: `"trading:raed" is not a scope`,
			Suggestion: "did you mean trading:read? Write each scope exactly as in the list below, separated by commas."}},
		Example: reply.Example, ShowExample: true, MaxLabel: keydesk.MaxLabelLength, Scopes: allScopes}, true},
	{"rejection without example", "rejection", reply.RejectData{Subject: "Re: keys", From: "jane@acme.example", IDs: []string{"KR-20261127-7QX4"},
		Reasons: []reply.ReasonLine{{Message: "Globex Markets has no production access set up", Suggestion: "ask your Relationship Manager to enable production, or request a key for an environment you have"}},
		Scopes:  allScopes, MaxLabel: keydesk.MaxLabelLength}, false},
	{"review rejection", "review-rejection", map[string]any{"ID": "KR-20261127-7QX4", "Subject": strings.Repeat("API keys for our new settlement engine ", 3),
		"Environment": keydesk.Production, "Scopes": strings.Split(allScopes, ", "), "Label": longLabel,
		"Reason": "keys:manage is not available to partners; write to " + longToken + " if you need it explained.\nA second line."}, false},
	{"delivery notice", "delivery-notice", delivery.NoticeData{RequestID: "KR-20261127-7QX4", PartnerName: "Acme Capital", Environment: "production",
		Label: longLabel, Scopes: allScopes, KeyID: "key-001", Contact: keydesk.MaskAddress(longToken), Delivered: when}, false},
	{"revocation notice", "revocation-notice", map[string]any{"RequestID": "KR-20261127-7QX4", "Partner": "Acme Capital Treasury and Settlement Services",
		"Environment": "production", "Label": longLabel, "KeyID": "key-001", "APIKey": "bm_key_abc123",
		"Reason":  keydesk.MaskAddress(longToken) + ": 550 5.1.1 <" + keydesk.MaskAddress(longToken) + ">: Recipient address rejected: User unknown in virtual mailbox table",
		"Contact": keydesk.MaskAddress(longToken)}, false},
	{"key delivery", "key-delivery", map[string]any{"RequestID": "KR-20261127-7QX4", "PartnerName": "Acme Capital Treasury and Settlement Services",
		"Environment": "production", "Label": longLabel, "KeyID": "key-001", "APIKey": "bm_key_abc123", "APISecret": strings.Repeat("s3cr3t", 15),
		"Scopes":    []map[string]string{{"Name": "accounts:read", "Grants": "read account details, balances, positions"}, {"Name": "keys:manage", "Grants": "create, list and revoke the partner's own API keys, which is a long description"}},
		"CreatedAt": when, "ContactEmail": longToken, "ContactFingerprint": "B9CC B7B4 0795 7889 2000 8F9E 2A8E DAD0 7EB4 FCA7",
		"SignerFingerprint": "42A3 6E22 D9E0 6D44 82C6 1B91 7D9E 4648 BEA1 62A7", "AttachmentName": "buildmarkets-key-" + strings.Repeat("x", 64) + ".json",
		"ReplacesKeyID": "", "OldKeyStops": time.Time{}}, false},
	{"key delivery rotation", "key-delivery", map[string]any{"RequestID": "KR-20261127-7QX4", "PartnerName": "Acme Capital Treasury and Settlement Services",
		"Environment": "production", "Label": longLabel, "KeyID": "key-012", "APIKey": "bm_key_abc123", "APISecret": strings.Repeat("s3cr3t", 15),
		"Scopes":    []map[string]string{{"Name": "accounts:read", "Grants": "read account details, balances, positions"}},
		"CreatedAt": when, "ContactEmail": longToken, "ContactFingerprint": "B9CC B7B4 0795 7889 2000 8F9E 2A8E DAD0 7EB4 FCA7",
		"SignerFingerprint": "42A3 6E22 D9E0 6D44 82C6 1B91 7D9E 4648 BEA1 62A7", "AttachmentName": "buildmarkets-key-x.json",
		"ReplacesKeyID": "key-007-with-a-very-long-identifier-from-the-api", "OldKeyStops": when.Add(7 * 24 * time.Hour)}, false},
	{"delivery notice rotation", "delivery-notice", delivery.NoticeData{RequestID: "KR-20261127-7QX4", PartnerName: "Acme Capital", Environment: "production",
		Label: longLabel, Scopes: allScopes, KeyID: "key-012", Contact: keydesk.MaskAddress(longToken), Delivered: when,
		ReplacesKeyID: "key-007", OldKeyStops: when.Add(7 * 24 * time.Hour)}, false},
	{"rotation reminder", "rotation-reminder", batch.RotationReminder{RequestID: "KR-20261127-7QX4", PartnerName: "Acme Capital Treasury and Settlement Services",
		Environment: "production", Label: longLabel, NewKeyID: "key-012", OldKeyID: "key-007", Contact: keydesk.MaskAddress(longToken),
		Due: when.Add(7 * 24 * time.Hour)}, false},
	{"rotation due", "rotation-due", batch.RotationDue{PartnerName: "Acme Capital Treasury and Settlement Services", Environment: "production",
		Label: longLabel, KeyID: "key-007", APIKey: "bm_key_abc123", Created: when.Add(-340 * 24 * time.Hour), AgeDays: 340, MaxAgeDays: 365,
		DueAt: when.Add(25 * 24 * time.Hour), ReplyLine: batch.RotationReplyLine("key-007", longLabel, keydesk.Production),
		Contact: keydesk.MaskAddress(longToken), Grace: "7 days"}, false},
	{"status reply", "status-reply", reply.StatusData{Subject: "Re: keys", Plural: true, Requests: []reply.StatusLine{
		{ID: "KR-20261127-7QX4", Environment: "sandbox", Scopes: allScopes, LongScopes: true, Label: longLabel, State: "approved", NextBatch: when,
			Next: "The key is created in the next batch and sent encrypted to your registered technical contact."},
		{ID: "KR-20261127-8QX5", Environment: "production", Scopes: "accounts:read", Label: "b", State: "waiting for review by our support team",
			Next: "A person in our support team reviews it. Once it is approved, the key is created in the next batch and sent to your technical contact."}}}, true},
	{"received", "received", reply.ReceivedData{Subject: "Re: keys", IDs: []string{"KR-20261127-7QX4"}}, false},
	{"correction received", "correction-received", reply.CorrectionData{Subject: "Re: keys", ID: "KR-20261127-7QX4", WasApproved: true,
		Changes: []keydesk.FieldChange{{Field: "scopes", From: allScopes, To: "accounts:read"}}}, false},
	{"staff reply", "staff-reply", templates.StaffReply{Subject: "Re: keys", Text: "Hello Dana,\n\nDone: the request now asks for accounts:read only, as you wrote in your reply this morning.",
		Request: templates.RequestFacts{ID: "KR-20261127-7QX4", Environment: "sandbox", Scopes: allScopes, Label: longLabel, Status: "waiting for review"}}, false},
	{"key revoked", "key-revoked", keyRevokedSample, false},
	{"key revoked, a rotation's old key", "key-revoked", templates.KeyRevoked{RequestID: "KR-20261127-7QX4", Partner: "Acme Capital",
		Environment: "sandbox", KeyID: "key-001", Label: "sandbox-backend", RevokedAt: when, Rotation: true}, false},
	{"proposal outcome", "proposal-outcome", templates.ProposalOutcome{Subject: "Re: keys", Accepted: false,
		Asked:   []templates.Fact{{Name: "Scopes", Value: allScopes}},
		Request: templates.RequestFacts{ID: "KR-20261127-7QX4", Environment: "sandbox", Scopes: "accounts:read", Label: longLabel, Status: "waiting for review"}}, false},
	{"secret exposed", "secret-exposed", reply.SecretExposedData{Date: when, Subject: strings.Repeat("401 with this pair, can you check? ", 3),
		Keys: []reply.ExposedKey{{KeyID: "key-001", Environment: "production", Label: longLabel, RequestID: "KR-20261127-7QX4"}}}, false},
	{"secret exposed, two keys", "secret-exposed", reply.SecretExposedData{Date: when,
		Keys: []reply.ExposedKey{{KeyID: "key-001", Environment: "production", Label: "prod-trading-engine", RequestID: "KR-20261127-7QX4"},
			{KeyID: "key-002", Environment: "sandbox", Label: "sandbox-backend", RequestID: "KR-20261127-8QX5"}}}, true},
}

// supportMails are the templates of emails to support, which keep their
// own conventions.
var supportMails = []string{"alert", "alert-audit-size", "alert-contact-key", "batch-report", "digest"}

// TestPartnerMail renders every partner-facing template with sample data
// and holds the conventions: lines of at most 72 columns (one unbreakable
// word aside), the reply sentence (singular or plural as the email is
// about one request or several) just before the company's sign-off, and
// never the tool's name.
func TestPartnerMail(t *testing.T) {
	s := templates.MustLoadEmbedded()
	for _, tc := range partnerMails {
		t.Run(tc.name, func(t *testing.T) {
			m, err := s.RenderPartnerMail(tc.tmpl, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			templatestest.Check(t, m.Body)
			if testing.Verbose() {
				t.Logf("%s\n\n%s", m.Subject, m.Body)
			}
			want := templatestest.Reply
			if tc.plural {
				want = templatestest.ReplyPlural
			}
			if !strings.Contains(m.Body, want) {
				t.Errorf("the body lacks %q:\n%s", want, m.Body)
			}
			if strings.Contains(strings.ToLower(m.Subject), "keydesk") {
				t.Errorf("the subject names the tool: %q", m.Subject)
			}
		})
	}
	// Every mail template is in one list or the other, so a new one
	// cannot miss these checks by being forgotten.
	names, err := fs.Glob(s.FS(), "mail/*.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		n = strings.TrimSuffix(path.Base(n), ".tmpl")
		if !slices.Contains(supportMails, n) && !slices.ContainsFunc(partnerMails, func(c partnerMail) bool { return c.tmpl == n }) {
			t.Errorf("mail template %s is in neither partnerMails nor supportMails", n)
		}
	}
}

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var keyRevokedSample = templates.KeyRevoked{RequestID: "KR-20261127-7QX4", Partner: "Acme Capital Treasury and Settlement Services",
	Environment: "production", KeyID: "key-1042", Label: longLabel, APIKey: "bm_key_abc123", RevokedAt: when,
	Reason: "The secret was pasted into a public chat by mistake: " + longToken + " saw it.\nPlease revoke it at once."}

// TestKeyRevokedGolden: the notice of a revoked key reads exactly as its
// golden file (go test -update rewrites it).
func TestKeyRevokedGolden(t *testing.T) {
	m, err := templates.MustLoadEmbedded().RenderPartnerMail("key-revoked", keyRevokedSample)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Golden(t, filepath.Join("testdata", "key-revoked.golden"), []byte(m.Subject+"\n\n"+m.Body), *update)
}
