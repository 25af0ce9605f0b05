package reply

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/templates"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

var update = flag.Bool("update", false, "rewrite the golden replies")

var (
	now       = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	nextBatch = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
)

func parseCorpus(t *testing.T, name string) *parse.Result {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "parse", "testdata", "mail", name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := parse.Parse(f, parse.ExampleOptions(now))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// render is the outgoing message as a reviewer reads it.
func render(o *keydesk.Outgoing) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "ID: %s\nKind: %s\nRequest: %s\nPartner: %s\nTo: %s\nIn-Reply-To: %s\nSubject: %s\n\n%s",
		o.ID, o.Kind, o.RequestID, o.Partner, strings.Join(o.To, ", "), o.InReplyTo, o.Subject, o.Text)
	return b.Bytes()
}

// TestBuild builds the reply to corpus emails and compares each with its
// golden file (testdata/<email>.golden, rewritten by -update).
func TestBuild(t *testing.T) {
	set := templates.MustLoadEmbedded()
	tests := []struct {
		email string
		kind  keydesk.MessageKind // "" when no reply is due
		to    string
		has   []string // what the partner must read in it
	}{
		{"accept-plain-sandbox", keydesk.KindAcknowledgement, "jane.doe@acme.example",
			[]string{"KR-20261126-SAF2", "sandbox-backend", "accounts:read, trading:read, marketdata:read", "approved for the batch of Fri 27 Nov 2026 10:00 UTC",
				"before the batch runs", "this request"}},
		{"accept-outlook-html-production", keydesk.KindAcknowledgement, "robert.smith@acme.example",
			[]string{"prod-trading-engine", "waiting for review, because production keys are approved by our support team",
				"reply to this email to correct it, with the fields as they should be", "until a person on our team has confirmed the change"}},
		{"accept-subject-bidi-controls", keydesk.KindAcknowledgement, "jane.doe@acme.example",
			[]string{"sandbox-backend"}},
		{"accept-two-blocks", keydesk.KindAcknowledgement, "jane.doe@acme.example",
			[]string{"KR-20261126-32C1", "KR-20261126-0EPD", "production keys are approved by our support team",
				"approved for the batch of Fri 27 Nov 2026 10:00 UTC", "(for an approved request, before the batch runs)", "these requests"}},
		{"accept-rm-forward-gmail-inline", keydesk.KindAcknowledgement, "alex.morgan@buildmarkets.ai",
			[]string{"from jane.doe@acme.example that you forwarded", "the request was forwarded"}},
		{"accept-example-copied-as-request-held", keydesk.KindAcknowledgement, "jane.en@acme.example",
			[]string{"waiting for review, because our support team checks how the request was written"}},
		{"reject-scope-typo", keydesk.KindRejection, "jane.doe@acme.example",
			[]string{`"trading:raed" is not a scope`, "did you mean trading:read?", "did you mean trading:write?", "Environment: sandbox", "nothing was queued"}},
		{"reject-globex-production-not-enabled", keydesk.KindRejection, "ops@globex.example",
			[]string{"Globex Markets has no production access set up"}},
		{"reject-mime-too-deep", keydesk.KindRejection, "jane.doe@acme.example",
			[]string{"nested deeper than 8 levels", "send the request again as a new email"}},
		{"review-unknown-sender", "", "", nil},
		{"review-dmarc-fail-spoof", "", "", nil},
		{"review-status-question", "", "", nil},
		{"ignore-out-of-office", "", "", nil},
		{"ignore-own-loop", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.email, func(t *testing.T) {
			r := parseCorpus(t, tt.email)
			out, err := Build(r, set, nextBatch)
			if err != nil {
				t.Fatal(err)
			}
			if tt.kind == "" {
				if out != nil {
					t.Fatalf("a %s to %v for verdict %s: no reply is due", out.Kind, out.To, r.Verdict)
				}
				return
			}
			if out == nil {
				t.Fatalf("no reply for verdict %s", r.Verdict)
			}
			if out.Kind != tt.kind || len(out.To) != 1 || out.To[0] != tt.to {
				t.Errorf("%s to %v, want %s to %s", out.Kind, out.To, tt.kind, tt.to)
			}
			wantID := r.Requests[0].ID + map[keydesk.MessageKind]string{keydesk.KindAcknowledgement: ".ack", keydesk.KindRejection: ".rejection"}[tt.kind]
			if out.ID != wantID || out.InReplyTo != r.MessageID || out.RequestID != r.Requests[0].ID {
				t.Errorf("ID %s in-reply-to %s request %s", out.ID, out.InReplyTo, out.RequestID)
			}
			// What the partner reads, whatever line it was wrapped onto
			// (the golden file holds the layout).
			words := strings.Join(strings.Fields(out.Text), " ")
			for _, s := range tt.has {
				if !strings.Contains(words, s) {
					t.Errorf("the body lacks %q", s)
				}
			}
			templatestest.Check(t, out.Text)
			// Each request's status says when it is created only if it is
			// approved: a request waiting for review is promised no batch.
			for _, q := range r.Requests {
				if q.State == keydesk.StateApproved {
					continue
				}
				if st := statusOf(out.Text, q.ID); strings.Contains(st, "batch") {
					t.Errorf("request %s is %s, but its status names a batch: %q", q.ID, q.State, st)
				}
			}
			approved := func(q *keydesk.Request) bool { return q.State == keydesk.StateApproved }
			if !slices.ContainsFunc(r.Requests, approved) && strings.Contains(out.Text, "batch") {
				t.Errorf("no request is approved, but the reply names a batch:\n%s", out.Text)
			}
			golden := filepath.Join("testdata", tt.email+".golden")
			got := render(out)
			// Nothing from the email acts on the partner's mail client.
			if i := bytes.IndexFunc(got, func(r rune) bool {
				return (unicode.IsControl(r) && r != '\n' && r != '\t') || unicode.Is(unicode.Cf, r)
			}); i >= 0 {
				t.Errorf("the reply holds a control or format character at byte %d:\n%q", i, got)
			}
			testenv.Golden(t, golden, got, *update)
		})
	}
}

// statusOf is the text of the Status field of request id in an
// acknowledgement, continuation lines included.
func statusOf(text, id string) string {
	_, after, ok := strings.Cut(text, "Request:     "+id+"\n")
	if !ok {
		return ""
	}
	_, status, _ := strings.Cut(after, "  Status:      ")
	status, _, _ = strings.Cut(status, "\n\n")
	return status
}

func TestSubject(t *testing.T) {
	tests := []struct{ in, want string }{
		{"API key", "Re: API key"},
		{"RE: Re: AW: API key", "Re: API key"},
		{"", "Re: your API key request"},
		{"line\r\nBcc: evil@x", "Re: line Bcc: evil@x"},
		{"invoice\u202efdp.exe", "Re: invoice⟨U+202E⟩fdp.exe"},
		{"keys\u009b31m\u061c\x1b[2J", "Re: keys\uFFFD31m⟨U+061C⟩\uFFFD[2J"},
		{strings.Repeat("é", 300), "Re: " + strings.Repeat("é", MaxSubject-5) + "…"},
	}
	for _, tt := range tests {
		if got := Subject(tt.in); got != tt.want {
			t.Errorf("Subject(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReplyOnlyToAuthenticatedSender: a Reply-To header never redirects
// the answer; it goes to the authenticated From.
func TestReplyOnlyToAuthenticatedSender(t *testing.T) {
	raw := "Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n" +
		"From: jane@acme.example\r\nReply-To: attacker@evil.example\r\nSubject: k\r\nMessage-ID: <rt@acme.example>\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nEnvironment: sandbox\r\nScopes: accounts:read\r\nLabel: x\r\n"
	r, err := parse.Parse(strings.NewReader(raw), parse.ExampleOptions(now))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Build(r, templates.MustLoadEmbedded(), time.Time{})
	if err != nil || out == nil {
		t.Fatalf("%v %v", out, err)
	}
	if len(out.To) != 1 || out.To[0] != "jane@acme.example" {
		t.Errorf("reply to %v, want jane@acme.example only", out.To)
	}
	if !strings.Contains(out.Text, "approved for the next batch\n") || strings.Contains(out.Text, "batch of") {
		t.Errorf("an unknown next batch is dated: %s", out.Text)
	}
}
