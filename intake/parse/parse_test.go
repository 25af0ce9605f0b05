package parse

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
)

const goodAR = "Authentication-Results: mx.buildmarkets.ai; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example\r\n"

// mail builds a message from Jane at Acme, authenticated, with body.
func email(extraHeader, body string) string {
	return goodAR + "From: Jane Doe <jane@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: keys\r\n" +
		"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <t1@acme.example>\r\n" + extraHeader + "\r\n" + body
}

const request = "Environment: sandbox\nScopes: accounts:read\nLabel: test-key\n"

func mustParse(t *testing.T, raw string, o Options) *Result {
	t.Helper()
	r, err := Parse(strings.NewReader(raw), o)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return r
}

func hasReason(r *Result, code keydesk.ReasonCode, substr string) bool {
	for _, rs := range r.Reasons {
		if rs.Code == code && strings.Contains(rs.Message, substr) {
			return true
		}
	}
	return false
}

func TestAuthentication(t *testing.T) {
	body := "\r\n" + request
	hdr := func(ar string) string {
		return ar + "From: Jane Doe <jane@acme.example>\r\nSubject: keys\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a@acme.example>\r\n"
	}
	tests := []struct {
		name         string
		raw          string
		requireDMARC bool
		verdict      Verdict
		state        keydesk.State
		flagged      bool
		reply        bool
	}{
		{"pass", hdr(goodAR), true, Accept, keydesk.StateApproved, false, true},
		{"authserv-id is case-insensitive", hdr("Authentication-Results: MX.Buildmarkets.AI; dmarc=pass header.from=acme.example\r\n"), true, Accept, keydesk.StateApproved, false, true},
		{"comment with a semicolon", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=pass (p=reject; sp=none) header.from=acme.example\r\n"), true, Accept, keydesk.StateApproved, false, true},
		{"header.from in other case", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=ACME.example\r\n"), true, Accept, keydesk.StateApproved, false, true},
		{"fail", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=fail header.from=acme.example\r\n"), true, Review, keydesk.StatePendingReview, true, false},
		{"none", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=none header.from=acme.example\r\n"), true, Review, keydesk.StatePendingReview, true, false},
		{"no header", hdr(""), true, Review, keydesk.StatePendingReview, true, false},
		{"untrusted server says pass", hdr("Authentication-Results: mx.evil.example; dmarc=pass header.from=acme.example\r\n"), true, Review, keydesk.StatePendingReview, true, false},
		{"pass for another domain", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=evil.example\r\n"), true, Review, keydesk.StatePendingReview, true, false},
		{"a lower trusted header does not count", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=fail header.from=acme.example\r\nAuthentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\n"), true, Review, keydesk.StatePendingReview, true, false},
		{"not required: fail is flagged, never auto-approved", hdr("Authentication-Results: mx.buildmarkets.ai; dmarc=fail header.from=acme.example\r\n"), false, Accept, keydesk.StatePendingReview, true, true},
		{"not required: pass auto-approves", hdr(goodAR), false, Accept, keydesk.StateApproved, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.RequireDMARC = tt.requireDMARC
			r := mustParse(t, tt.raw+body, o)
			if r.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s (reasons %v)", r.Verdict, tt.verdict, r.Reasons)
			}
			if len(r.Requests) != 1 || r.Requests[0].State != tt.state {
				t.Fatalf("requests %+v, want one in state %s", r.Requests, tt.state)
			}
			if got := r.Requests[0].HasFlag(keydesk.FlagDMARCNotPassed); got != tt.flagged {
				t.Errorf("dmarc-not-passed flag %v, want %v", got, tt.flagged)
			}
			if (r.ReplyTo != "") != tt.reply {
				t.Errorf("ReplyTo %q, want a reply: %v", r.ReplyTo, tt.reply)
			}
			if tt.verdict == Review && !hasReason(r, keydesk.ReasonSenderNotAuthenticated, "") {
				t.Errorf("no sender-not-authenticated reason: %v", r.Reasons)
			}
		})
	}
}

func TestLoopSafety(t *testing.T) {
	tests := []struct {
		name   string
		header string
		from   string
		code   keydesk.ReasonCode
	}{
		{"auto-submitted", "Auto-Submitted: auto-replied\r\n", "", keydesk.ReasonAutoReply},
		{"auto-generated", "Auto-Submitted: auto-generated\r\n", "", keydesk.ReasonAutoReply},
		{"our own X-Loop", "X-Loop: keydesk\r\n", "", keydesk.ReasonAutoReply},
		{"x-autoreply", "X-Autoreply: yes\r\n", "", keydesk.ReasonAutoReply},
		{"precedence bulk", "Precedence: bulk\r\n", "", keydesk.ReasonAutoReply},
		{"list-id", "List-Id: <eng.acme.example>\r\n", "", keydesk.ReasonAutoReply},
		{"empty return path", "Return-Path: <>\r\n", "", keydesk.ReasonBounce},
		{"mailer-daemon", "", "MAILER-DAEMON@acme.example", keydesk.ReasonBounce},
		{"postmaster", "", "postmaster@acme.example", keydesk.ReasonBounce},
		{"delivery report", "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n", "", keydesk.ReasonBounce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := email(tt.header, request)
			if tt.from != "" {
				raw = strings.Replace(raw, "Jane Doe <jane@acme.example>", tt.from, 1)
			}
			r := mustParse(t, raw, testOptions())
			if r.Verdict != Ignore || len(r.Requests) != 0 || r.ReplyTo != "" {
				t.Fatalf("verdict %s, %d requests, reply to %q: want ignore, none, no reply", r.Verdict, len(r.Requests), r.ReplyTo)
			}
			if len(r.Reasons) != 1 || r.Reasons[0].Code != tt.code {
				t.Errorf("reasons %v, want one %s", r.Reasons, tt.code)
			}
		})
	}
	t.Run("auto-submitted: no is a person", func(t *testing.T) {
		if r := mustParse(t, email("Auto-Submitted: no\r\n", request), testOptions()); r.Verdict != Accept {
			t.Errorf("verdict %s, want accept", r.Verdict)
		}
	})
}

func TestContactKey(t *testing.T) {
	o := testOptions()
	o.ContactKeyProblem = func(p *keydesk.Partner) error {
		if p.ID != "acme" {
			t.Errorf("checked partner %s", p.ID)
		}
		return errors.New("it expired on 2026-11-01")
	}
	r := mustParse(t, email("", request), o)
	if r.Verdict != Reject || !hasReason(r, keydesk.ReasonContactKeyUnusable, "expired on 2026-11-01") {
		t.Fatalf("verdict %s reasons %v: want reject with contact-key-unusable", r.Verdict, r.Reasons)
	}
	if q := r.Requests[0]; q.State != keydesk.StateRejected || !strings.Contains(q.Problem, "cannot be used") {
		t.Errorf("record %s problem %q", q.State, q.Problem)
	}

	o = testOptions()
	o.ExpiringSoon = func(*keydesk.Partner) bool { return true }
	r = mustParse(t, email("", request), o)
	if q := r.Requests[0]; r.Verdict != Accept || !q.HasFlag(keydesk.FlagContactKeyExpiring) || q.State != keydesk.StatePendingReview {
		t.Errorf("verdict %s, request %+v: want accept, flagged contact-key-expiring, pending review", r.Verdict, q)
	}
}

func TestRecordsAreStable(t *testing.T) {
	raw := email("", request)
	a, b := mustParse(t, raw, testOptions()), mustParse(t, raw, testOptions())
	if a.Requests[0].ID != b.Requests[0].ID || a.SourceKey != b.SourceKey {
		t.Fatalf("two parses differ: %s %s", a.Requests[0].ID, b.Requests[0].ID)
	}
	q := a.Requests[0]
	want := keydesk.RequestID(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), keydesk.SourceKey("jane@acme.example", "t1@acme.example", nil), 0, 0)
	if q.ID != want || q.Requester != "jane@acme.example" || q.Partner != "acme" || q.SourceMessageID != "t1@acme.example" || q.Index != 0 {
		t.Errorf("record %+v, want ID %s from jane@acme.example", q, want)
	}

	// Without a Message-ID the key is the digest of the whole raw message,
	// exactly as keydesk.SourceKey computes it.
	noID := strings.Replace(raw, "Message-ID: <t1@acme.example>\r\n", "", 1)
	r := mustParse(t, noID, testOptions())
	if want := keydesk.SourceKey("jane@acme.example", "", []byte(noID)); r.SourceKey != want {
		t.Errorf("source key %q, want %q", r.SourceKey, want)
	}

	// Without a Date the receive time dates it, so a rescan agrees.
	noDate := strings.Replace(raw, "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n", "", 1)
	o := testOptions()
	o.ReceivedAt = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	r = mustParse(t, noDate, o)
	if !strings.HasPrefix(r.Requests[0].ID, "KR-20261120-") || len(r.Warnings) == 0 {
		t.Errorf("ID %s warnings %v: want dated 20261120 with a warning", r.Requests[0].ID, r.Warnings)
	}
}

// TestBounds feeds mail past each limit and checks the limit is named.
func TestBounds(t *testing.T) {
	small := Limits{HeaderBytes: 2048, Depth: 3, Parts: 5, TextBytes: 4096, HTMLBytes: 8192, Lines: 40, LineBytes: 200, Requests: 2, ScopeWords: 4}
	many := func(n int, part string) string {
		var b strings.Builder
		b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\n" + request + "\r\n")
		for i := 0; i < n; i++ {
			b.WriteString("--b\r\n" + part + "\r\n")
		}
		b.WriteString("--b--\r\n")
		return b.String()
	}
	mp := "Content-Type: multipart/mixed; boundary=b\r\n"
	tests := []struct {
		name    string
		raw     string
		verdict Verdict
		code    keydesk.ReasonCode
		msg     string // in a reason (code set) or a warning
	}{
		{"header", email("X-Junk: "+strings.Repeat("x", 3000)+"\r\n", request), Review, keydesk.ReasonTooLarge, "header is larger than 2048 bytes"},
		{"parts", email(mp, many(8, "Content-Type: image/png\r\n\r\nxx")), Reject, keydesk.ReasonTooLarge, "more than 5 MIME parts"},
		{"depth", email(mp, "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: multipart/mixed; boundary=d\r\n\r\n--d\r\nContent-Type: multipart/mixed; boundary=e\r\n\r\n--e\r\n\r\n"+request+"--e--\r\n--d--\r\n--c--\r\n--b--\r\n"), Reject, keydesk.ReasonTooLarge, "deeper than 3 levels"},
		{"requests", email("", request+"\n"+request+"\n"+request), Reject, keydesk.ReasonTooLarge, "holds 3 requests: at most 2"},
		{"scope words", email("", "Environment: sandbox\nScopes: accounts:read a b c d e f\nLabel: x\n"), Reject, keydesk.ReasonUnknownScope, "more than 4 words"},
		{"text", email("", request+strings.Repeat("padding line\n", 600)), Accept, "", "only the first 4096 bytes of text"},
		{"lines", email("", request+strings.Repeat("\n", 100)), Accept, "", "only the first 40 lines"},
		{"line length", email("", request+strings.Repeat("y", 300)+"\n"), Accept, "", "longer than 200 bytes were cut"},
		{"html size", email("Content-Type: text/html\r\n", "<p>Environment: sandbox<br>Scopes: accounts:read<br>Label: h</p>"+strings.Repeat("<b></b>", 2000)), Accept, "", "HTML part is larger than 8192 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			o.Limits = small
			r := mustParse(t, tt.raw, o)
			if r.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s (reasons %v, warnings %v)", r.Verdict, tt.verdict, r.Reasons, r.Warnings)
			}
			if tt.code != "" {
				if !hasReason(r, tt.code, tt.msg) {
					t.Errorf("no %s reason saying %q: %v", tt.code, tt.msg, r.Reasons)
				}
				return
			}
			found := false
			for _, w := range r.Warnings {
				found = found || strings.Contains(w, tt.msg)
			}
			if !found {
				t.Errorf("no warning saying %q: %v", tt.msg, r.Warnings)
			}
		})
	}
}

// bigMessage streams a message with an attachment of n bytes (base64),
// never holding it in memory.
func bigMessage(n int64) io.Reader {
	head := email("Content-Type: multipart/mixed; boundary=zz\r\n",
		"--zz\r\nContent-Type: text/plain\r\n\r\n"+request+"\r\n--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=big.bin\r\n\r\n")
	line := strings.Repeat("QUJD", 19) + "\r\n" // 78 bytes
	body := &repeatReader{line: []byte(line), left: n}
	return io.MultiReader(strings.NewReader(head), body, strings.NewReader("\r\n--zz--\r\n"))
}

type repeatReader struct {
	line []byte
	off  int
	left int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:], r.line[r.off:])
		if int64(c) > r.left {
			c = int(r.left)
		}
		n += c
		r.left -= int64(c)
		r.off = (r.off + c) % len(r.line)
	}
	return n, nil
}

// TestLargeAttachmentStreams parses a 20 MB attachment within a 32 MiB
// limit and checks the parser allocates a small fraction of it; past the
// limit the email is rejected as too large and reading stops there.
func TestLargeAttachmentStreams(t *testing.T) {
	o := testOptions()
	o.MaxBytes = 32 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Parse(bigMessage(20<<20), o)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Accept || r.Size < 20<<20 {
		t.Fatalf("verdict %s size %d (reasons %v)", r.Verdict, r.Size, r.Reasons)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("parsing a 20 MB message allocated %d MiB: it must stream", alloc>>20)
	}

	o.MaxBytes = 1 << 20
	src := bigMessage(20 << 20)
	counted := &countReader{r: src}
	r, err = Parse(counted, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Reject || !hasReason(r, keydesk.ReasonTooLarge, "larger than 1 MiB") {
		t.Fatalf("verdict %s reasons %v: want reject too-large", r.Verdict, r.Reasons)
	}
	if counted.n > 2<<20 {
		t.Errorf("read %d bytes of a message past its 1 MiB limit", counted.n)
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type failingReader struct{ after int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), f.after)
	copy(p, bytes.Repeat([]byte("a"), n))
	f.after -= n
	return n, nil
}

func TestReadErrorIsAnError(t *testing.T) {
	_, err := Parse(io.MultiReader(strings.NewReader(email("", "")), &failingReader{after: 100}), testOptions())
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err %v, want the read error", err)
	}
}

func TestSourceKeyDigestCoversWholeMessage(t *testing.T) {
	raw := strings.Replace(email("", request+"tail\n"), "Message-ID: <t1@acme.example>\r\n", "", 1)
	r := mustParse(t, raw, testOptions())
	sum := sha256.Sum256([]byte(raw))
	if !strings.HasSuffix(r.SourceKey, fmt.Sprintf("%x", sum)) {
		t.Errorf("source key %q is not the digest of the whole message", r.SourceKey)
	}
}
