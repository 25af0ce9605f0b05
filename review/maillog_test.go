package review

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/internal/imaptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/queue"
)

// mailFromIntake is the Options.Mail of the tests: intake's records, read
// with intake's own API (the review role wires the same).
func mailFromIntake(q *queue.Conn) func(ctx context.Context) ([]MailEntry, error) {
	return func(ctx context.Context) ([]MailEntry, error) {
		recs, err := intake.Records(ctx, q)
		if err != nil {
			return nil, err
		}
		var out []MailEntry
		for _, r := range recs {
			to := map[string]string{"processed": "Processed", "rejected": "Rejected"}[r.Disposition]
			out = append(out, MailEntry{Ref: r.Ref, At: r.At, From: r.From, Subject: r.Subject, MessageID: r.MessageID,
				Outcome: r.Outcome, Reason: r.Reason, MovedTo: to, UID: r.UID, Size: r.Size, Requests: r.Requests})
		}
		return out, nil
	}
}

// intakeMail puts raw emails in an in-memory IMAP inbox and runs intake's
// poller with the real parser over it until each is taken in: the intake
// bucket then holds the records intake itself writes. Each email is taken
// in a minute after the one before it on the test clock.
func (e *env) intakeMail(t *testing.T, raws ...string) {
	t.Helper()
	const user, pass = "support@buildmarkets.ai", "s3cret"
	srv := imaptest.Start(t, user, pass, imaptest.Options{})
	defer srv.Close()
	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	// The partners have API access set up, as partners.yaml gives it.
	for _, p := range e.reg.Partners {
		if p.Environments == nil {
			p.Environments = map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {APIKey: "k"}, keydesk.Production: {APIKey: "k"}}
		}
	}
	p, err := intake.New(intake.Options{
		IMAP: intake.Mailbox{
			MailServer: mailauth.MailServer{Address: srv.Addr, Security: mailauth.SecurityNone, Username: user,
				Password: keydesk.SecretString(pass), Timeout: 10 * time.Second},
			Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
			PollInterval: 200 * time.Millisecond, MaxMessageBytes: 16 << 10, HardMaxMessageBytes: 16 << 10,
		},
		Queue: e.q,
		Handler: intake.NewParseHandler(intake.ParseOptions{
			Registry: func() *keydesk.Registry { return e.reg },
			Parse:    parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, Now: e.clock.Now},
		}),
		SpoolDir: t.TempDir(),
		Log:      slog.New(slog.DiscardHandler),
		Now:      e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	before, err := intake.Records(context.Background(), e.q)
	if err != nil {
		t.Fatal(err)
	}
	// One at a time (the poller hears of each through IDLE, or rescans), so that each
	// is recorded at its own minute.
	for i, raw := range raws {
		e.clock.Add(time.Minute)
		ap := c.Append("INBOX", int64(len(raw)), nil)
		if _, err := io.WriteString(ap, raw); err != nil {
			t.Fatal(err)
		}
		if err := ap.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ap.Wait(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 20*time.Second, fmt.Sprintf("intake to take in email %d", i+1), func() bool {
			recs, err := intake.Records(context.Background(), e.q)
			return err == nil && len(recs) == len(before)+i+1
		})
	}
}

// mailLogFixture takes in one email of each kind through intake.
func mailLogFixture(t *testing.T, e *env) {
	t.Helper()
	e.intakeMail(t,
		sampleMail("dana@acme.example", "Sandbox API keys", "Environment: sandbox\nScopes: accounts:read\nLabel: sandbox-backend\n", "dmarc=pass header.from=acme.example"),
		sampleMail("mallory@evil.example", `<script>alert("x")</script><b>urgent</b>`, "Environment: production\nScopes: keys:manage\nLabel: pwn\n", "dmarc=fail header.from=evil.example"),
		"Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=acme.example\r\nFrom: Ada <ada@acme.example>\r\nTo: support@buildmarkets.ai\r\n"+
			"Subject: Out of office: Re: your key\r\nDate: Fri, 27 Nov 2026 08:30:00 +0000\r\nMessage-ID: <ooo-1@acme.example>\r\nAuto-Submitted: auto-replied\r\n"+
			"Content-Type: text/plain\r\n\r\nI am away until Monday.\r\n",
		sampleMail("dana@acme.example", "Big attachment", strings.Repeat("x", 20<<10), "dmarc=pass header.from=acme.example"),
	)
}

// TestMailPage: a viewer sees every email intake took in, newest first,
// with its outcome and reason, where it went and the requests it made; a
// hostile subject is shown as text; the counts and filters work.
func TestMailPage(t *testing.T) {
	e := newEnv(t)
	mailLogFixture(t, e)
	reqs, err := e.q.List(context.Background(), queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	b := e.login("viv")

	code, _, body := b.get("/mail")
	if code != http.StatusOK {
		t.Fatalf("GET /mail as viewer: %d\n%s", code, body)
	}
	rows := strings.Split(body, "<tr>")[2:] // after the header row
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4:\n%s", len(rows), body)
	}
	// Newest first: the too-large email was taken in last.
	for i, want := range []string{"Big attachment", "Out of office", "urgent", "Sandbox API keys"} {
		if !strings.Contains(rows[i], want) {
			t.Errorf("row %d lacks %q:\n%s", i, want, rows[i])
		}
	}
	for i, want := range [][]string{
		{"too-large", "larger than", "Rejected"},
		{"ignore", "Processed", "none"},
		{"review", "not a registered requester", "Processed", "/requests/KR-"},
		{"accept", "Processed", "/requests/KR-"},
	} {
		for _, w := range want {
			if !strings.Contains(rows[i], w) {
				t.Errorf("row %d lacks %q:\n%s", i, w, rows[i])
			}
		}
	}
	for _, r := range reqs {
		if !strings.Contains(body, `href="/requests/`+r.ID+`"`) {
			t.Errorf("no link to request %s (%s)", r.ID, r.Subject)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>urgent") || !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;urgent&lt;/b&gt;") {
		t.Errorf("the hostile subject is not escaped:\n%s", body)
	}
	if !strings.Contains(body, `all <b>4</b>`) || !strings.Contains(body, `too-large <b>1</b>`) || !strings.Contains(body, `ignore <b>1</b>`) {
		t.Errorf("counts per outcome missing:\n%s", body)
	}
	if !strings.Contains(body, `href="/mail" class="on">Mail</a>`) {
		t.Errorf("the navigation does not mark Mail")
	}

	tests := []struct {
		query string
		rows  int
		want  string
	}{
		{"outcome=ignore", 1, "Out of office"},
		{"sender=MALLORY", 1, "mallory@evil.example"},
		{"sender=acme.example", 3, "ada@acme.example"},
		{"outcome=accept&sender=dana", 1, "Sandbox API keys"},
		{"outcome=review&sender=dana", 0, "No mail matches"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			code, _, body := b.get("/mail?" + tt.query)
			if code != http.StatusOK {
				t.Fatalf("%d\n%s", code, body)
			}
			if n := strings.Count(body, "<tr>") - 1; max(n, 0) != tt.rows || !strings.Contains(body, tt.want) {
				t.Errorf("%d rows (want %d), %q shown: %v\n%s", max(n, 0), tt.rows, tt.want, strings.Contains(body, tt.want), body)
			}
		})
	}
	if code, _, body := b.get("/mail?outcome=%3Cx%3E"); code != http.StatusBadRequest || !strings.Contains(body, "not an intake outcome") {
		t.Errorf("bad outcome: %d\n%s", code, body)
	}

	// No session: the browser is sent to sign in, and comes back here.
	code, h, _ := e.browser().get("/mail?outcome=ignore")
	if code != http.StatusSeeOther || h.Get("Location") != "/login?next="+url.QueryEscape("/mail?outcome=ignore") {
		t.Errorf("signed out: %d %s", code, h.Get("Location"))
	}
}

// TestMailPaging walks the log a page at a time, in the UI and the API:
// every email once, newest first, and the filter kept across pages.
func TestMailPaging(t *testing.T) {
	e := newEnv(t)
	var raws []string
	for i := range 7 {
		raws = append(raws, sampleMail("dana@acme.example", "keys "+string(rune('a'+i)), "Environment: sandbox\nScopes: accounts:read\nLabel: l"+string(rune('a'+i))+"\n", "dmarc=pass header.from=acme.example"))
	}
	e.intakeMail(t, raws...)

	var subjects []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		path := "/api/v1/mail?limit=3&sender=dana"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		code, out := e.api("viv", "GET", path, nil)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", path, code, out)
		}
		var l MailList
		data, _ := json.Marshal(out)
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatal(err)
		}
		if l.Total != 7 || l.Matched != 7 || l.Counts["accept"] != 7 || len(l.Mail) > 3 {
			t.Fatalf("page %d: total %d matched %d counts %v, %d entries", page, l.Total, l.Matched, l.Counts, len(l.Mail))
		}
		for _, m := range l.Mail {
			subjects = append(subjects, m.Subject)
		}
		if l.NextCursor == "" {
			break
		}
		cursor = l.NextCursor
	}
	if got := strings.Join(subjects, ","); got != "keys g,keys f,keys e,keys d,keys c,keys b,keys a" {
		t.Errorf("pages gave %s", got)
	}

	// The UI pages by 100: seven fit, and there is no "older" link.
	b := e.login("viv")
	if _, _, body := b.get("/mail?sender=dana"); strings.Count(body, "<tr>") != 8 || strings.Contains(body, "Older mail") {
		t.Errorf("UI page:\n%s", body)
	}
}

// TestMailAPI: the JSON shape, bearer-token auth and the API's errors.
func TestMailAPI(t *testing.T) {
	e := newEnv(t)
	mailLogFixture(t, e)

	code, out := e.api("viv", "GET", "/api/v1/mail?outcome=accept", nil)
	if code != http.StatusOK {
		t.Fatalf("%d %v", code, out)
	}
	mail, _ := out["mail"].([]any)
	if len(mail) != 1 || out["total"] != float64(4) || out["matched"] != float64(1) {
		t.Fatalf("answer %v", out)
	}
	m := mail[0].(map[string]any)
	for _, k := range []string{"ref", "at", "from", "subject", "message_id", "outcome", "moved_to", "uid", "size", "requests"} {
		if _, ok := m[k]; !ok {
			t.Errorf("entry lacks %q: %v", k, m)
		}
	}
	if m["from"] != "dana@acme.example" || m["outcome"] != "accept" || m["moved_to"] != "Processed" || len(m["requests"].([]any)) != 1 {
		t.Errorf("entry %v", m)
	}
	counts := out["counts"].(map[string]any)
	for _, o := range []string{"accept", "review", "ignore", "too-large"} {
		if counts[o] != float64(1) {
			t.Errorf("counts %v: want 1 %s", counts, o)
		}
	}
	if code, out := e.api("viv", "GET", "/api/v1/mail?outcome=ignore", nil); code != 200 || len(out["mail"].([]any)) != 1 || out["mail"].([]any)[0].(map[string]any)["requests"] == nil {
		t.Errorf("an email with no request lists requests as []: %d %v", code, out)
	}

	for _, tt := range []struct {
		user, query string
		status      int
		code        string
	}{
		{"", "", 401, "unauthorized"},
		{"viv", "limit=0", 400, "bad_request"},
		{"viv", "limit=100000", 400, "bad_request"},
		{"viv", "cursor=%21%21", 400, "bad_request"},
		{"viv", "outcome=" + url.QueryEscape("a b"), 400, "bad_request"},
		{"viv", "sender=" + strings.Repeat("a", 201), 400, "bad_request"},
	} {
		code, out := e.api(tt.user, "GET", "/api/v1/mail?"+tt.query, nil)
		if code != tt.status || out["code"] != tt.code || out["error"] == "" {
			t.Errorf("%s %q: %d %v, want %d %s", tt.user, tt.query, code, out, tt.status, tt.code)
		}
	}
}

// TestCleanMail: what an email wrote in its record is bounded and shown
// as one line of inert text.
func TestCleanMail(t *testing.T) {
	tests := []struct {
		name string
		in   MailEntry
		want MailEntry
	}{
		{"controls and bidi", MailEntry{Subject: "pay\x1b[31m\u202eman\r\nBcc: x", From: "a@b\x00.example"},
			MailEntry{Subject: "pay\uFFFD[31m⟨U+202E⟩man Bcc: x", From: "a@b\uFFFD.example", Requests: []string{}}},
		{"long subject", MailEntry{Subject: strings.Repeat("é", 400)}, MailEntry{Subject: strings.Repeat("é", maxSubjLen) + "…", Requests: []string{}}},
		{"request IDs only", MailEntry{Requests: []string{"KR-20261127-7QX4", "<a>", "../x"}}, MailEntry{Requests: []string{"KR-20261127-7QX4"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cleanMail(tt.in)
			if got.Subject != tt.want.Subject || got.From != tt.want.From || strings.Join(got.Requests, ",") != strings.Join(tt.want.Requests, ",") || got.Requests == nil {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestMailLogUnavailable: a server without a mail log says so.
func TestMailLogUnavailable(t *testing.T) {
	e := newEnv(t)
	e.srv.o.Mail = nil
	if code, out := e.api("viv", "GET", "/api/v1/mail", nil); code != http.StatusServiceUnavailable || out["code"] != "unavailable" {
		t.Errorf("%d %v", code, out)
	}
}
