package review

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/chromedp/chromedp"
)

// sampleMail is a partner's email as Outlook would send it.
func sampleMail(from, subject, body, authres string) string {
	return "Return-Path: <" + from + ">\r\n" +
		"Authentication-Results: mx.buildmarkets.ai; spf=pass smtp.mailfrom=" + keydesk.AddressDomain(from) + "; dkim=pass header.d=" + keydesk.AddressDomain(from) + "; " + authres + "\r\n" +
		"From: Dana Developer <" + from + ">\r\n" +
		"To: support@buildmarkets.ai\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Fri, 27 Nov 2026 08:41:07 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@" + keydesk.AddressDomain(from) + ">\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.ReplaceAll(body, "\n", "\r\n")
}

// TestBrowser drives the UI in a real headless Chromium: sign in, open
// the queue, open a request, approve it, see its new state, then the
// batches, mail and audit pages. Screenshots of each page land in
// testdata/artifacts/.
func TestBrowser(t *testing.T) {
	e := newEnv(t)
	e.reg.Partners = append(e.reg.Partners, &keydesk.Partner{
		ID: "northwind", Name: "Northwind Markets", Requesters: []string{"*@northwind.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: "platform@northwind.example", Fingerprint: "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678",
			KeyExpires: e.clock.Now().Add(12 * 24 * time.Hour)},
	})
	e.request(func(r *keydesk.Request) {
		r.Environment, r.Label = keydesk.Production, "prod-trading-engine"
		r.Scopes = []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingWrite, keydesk.ScopeMarketdataRead}
		r.Flags = []keydesk.Flag{keydesk.FlagProduction}
	}, "")
	target := e.request(func(r *keydesk.Request) {
		r.Subject = "Sandbox API keys for our backend"
	}, sampleMail("dana@acme.example", "Sandbox API keys for our backend",
		"Hi Buildmarkets support,\n\nCould you please generate a key pair for us?\n\nEnvironment: sandbox\nScopes: accounts:read, trading:read\nLabel: sandbox-backend\n\nThanks,\nDana\n", "dmarc=pass header.from=acme.example"))
	e.request(func(r *keydesk.Request) {
		r.Partner, r.Requester, r.Label = "northwind", "cto@northwind.example", "nw-keys-admin"
		r.Scopes = []keydesk.Scope{keydesk.ScopeKeysManage}
		r.Flags = []keydesk.Flag{keydesk.FlagKeysManage, keydesk.FlagForwarded}
	}, "")
	e.request(func(r *keydesk.Request) {
		r.Partner, r.Requester, r.Label = "", "ceo@acme-payments.example", "urgent-prod"
		r.Environment = keydesk.Production
		r.Flags = []keydesk.Flag{keydesk.FlagUnknownSender, keydesk.FlagDMARCNotPassed}
	}, "")
	done := e.request(func(r *keydesk.Request) { r.State = keydesk.StateApproved; r.Label = "sandbox-reporting" }, "")
	_ = done
	e.clock.Add(3*time.Hour + 17*time.Minute)

	c := startChromium(t, e.ts.URL+"/queue")
	ctx, shot, text := c.ctx, c.shot, c.text

	// Signed out, the queue sends us to the login page.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`input[name=username]`))); err != nil {
		t.Fatalf("login page: %v", err)
	}
	shot("login.png")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password("alice")),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.queue`)),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.HasSuffix(loc, "/queue") {
		t.Fatalf("after sign-in the browser is at %s", loc)
	}
	// Signed in, a link to the login page sends the browser on to next. A
	// next of "/<tab>/host/x" would leave the site (the browser drops the
	// tab and reads "//host/x"): it must land on the queue instead.
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<!doctype html><title>elsewhere</title><h1 id=elsewhere>another site</h1>"))
	}))
	defer elsewhere.Close()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.ts.URL+"/login?next=/%09/"+strings.TrimPrefix(elsewhere.URL, "http://")+"/x"),
		// Whichever page the redirect leads to: the queue or the other site.
		chromedp.WaitVisible(chromedp.CSS(`table.queue, h1#elsewhere`)),
	); err != nil {
		t.Fatalf("login link with a hostile next: %v", err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != e.ts.URL+"/queue" {
		t.Fatalf("a login link with next=/%%09/host/x took the browser to %s, want %s/queue", loc, e.ts.URL)
	}
	// Waiting for me: high severity first, then the oldest: the keys:manage
	// request (a scope Northwind is not allowed) heads the queue, ahead of
	// the production one that is older but flagged for information only.
	if first := text(`table.queue tbody tr:first-child td.label`); first != "nw-keys-admin" {
		t.Fatalf("first row = %q", first)
	}
	shot("queue.png")

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/requests/`+target.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section.mail pre.body`)),
	); err != nil {
		t.Fatalf("open request: %v", err)
	}
	if st := text(`h1 .state`); st != "pending_review" {
		t.Fatalf("state before = %q", st)
	}
	if body := text(`section.mail pre.body`); !strings.Contains(body, "Label: sandbox-backend") {
		t.Fatalf("the email body is not shown: %q", body)
	}
	shot("request.png")

	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if st := text(`h1 .state`); st != "approved" {
		t.Fatalf("state after approving = %q", st)
	}
	if n := text(`p.notice`); !strings.Contains(n, "Approved") {
		t.Fatalf("notice = %q", n)
	}
	if hist := text(`table.history`); !strings.Contains(hist, "alice") || !strings.Contains(hist, "pending_review → approved") {
		t.Fatalf("history after approving: %q", hist)
	}
	shot("request-approved.png")
	if got := e.get(target.ID); got.State != keydesk.StateApproved || !got.ApprovedBy("alice") {
		t.Fatalf("stored: %s %v", got.State, got.Approvals)
	}

	// The other pages render for a person too.
	if _, err := e.q.RequestBatch(context.Background(), "ada"); err != nil {
		t.Fatal(err)
	}
	mailLogFixture(t, e)
	for _, p := range []struct{ path, sel, file string }{
		{"/batches", "table.batches", "batches.png"},
		{"/mail", "table.mail-log", "mail.png"},
		{"/audit", "table.audit", "audit.png"},
	} {
		if err := chromedp.Do(ctx, chromedp.Navigate(e.ts.URL+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel))); err != nil {
			t.Fatalf("%s: %v", p.path, err)
		}
		shot(p.file)
		if p.path == "/mail" {
			// The hostile subject is text on the page, not markup.
			if subj := text(`table.mail-log tbody tr:nth-child(3) td.subject`); !strings.HasPrefix(subj, `<script>alert("x")</script><b>urgent</b>`) {
				t.Fatalf("mail page, third row subject: %q", subj)
			}
			if n := text(`ul.counts li:first-child`); n != "all 4" {
				t.Fatalf("mail page count: %q", n)
			}
		}
	}
	if hist := text(`table.audit`); !strings.Contains(hist, "login") || !strings.Contains(hist, target.ID) {
		t.Fatalf("audit page: %q", hist)
	}
}

// chromium is a headless Chromium driven over the DevTools protocol, with
// what the browser tests do with it: screenshots into testdata/artifacts/
// and the text of an element.
type chromium struct {
	t   *testing.T
	ctx context.Context
}

// startChromium starts the browser on url; it stops with the test.
func startChromium(t *testing.T, url string) *chromium {
	t.Helper()
	path := testenv.LookPath(t, "chromium", "chromium")
	if err := os.MkdirAll(filepath.Join("testdata", "artifacts"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	// The first Run starts the browser and must not carry a timeout.
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(cancel)
	return &chromium{t: t, ctx: ctx}
}

// shot saves a full-page screenshot as testdata/artifacts/name.
func (c *chromium) shot(name string) {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "artifacts", name), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// text is the trimmed text of the first element matching sel.
func (c *chromium) text(sel string) string {
	c.t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		c.t.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// evalJS is the value of a JavaScript expression on the page.
func evalJS[T any](c *chromium, expr string) T {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// signIn fills the login form the browser is on and waits for the queue.
func (c *chromium) signIn(name string) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx,
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), name),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password(name)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.tabs`)),
	); err != nil {
		c.t.Fatalf("sign in as %s: %v", name, err)
	}
}

// TestBrowserQueue drives the queue page in headless Chromium: "Waiting
// for me" shows the signed-in person's rows, high severity first, with
// ages coloured against the target; the search finds a closed request by
// label and opens one by its KR-ID typed in lower case; an unknown
// sender's request offers no Approve but says why, in the queue and on
// its page. Screenshots land in testdata/artifacts/.
func TestBrowserQueue(t *testing.T) {
	e := newEnv(t)
	unknown := e.request(func(r *keydesk.Request) {
		r.Partner, r.Requester, r.Label = "", "ceo@acme-payments.example", "urgent-prod"
		r.Environment = keydesk.Production
		r.Flags = []keydesk.Flag{keydesk.FlagUnknownSender, keydesk.FlagDMARCNotPassed}
	}, "")
	e.clock.Add(3 * time.Hour)
	overdue := e.request(func(r *keydesk.Request) { r.Label = "sandbox-reporting" }, "")
	e.clock.Add(2 * time.Hour)
	fresh := e.request(func(r *keydesk.Request) {
		r.Label, r.Environment, r.Assignee = "prod-trading-engine", keydesk.Production, "alice"
	}, "")
	bobs := e.request(func(r *keydesk.Request) { r.Label = "bobs-integration"; r.Assignee = "bob" }, "")
	approved := e.request(func(r *keydesk.Request) {
		r.Label, r.Environment = "prod-half-approved", keydesk.Production
		r.Approvals = []keydesk.Approval{{By: "alice", At: e.clock.Now()}}
	}, "")
	archived := e.request(func(r *keydesk.Request) {
		r.Label, r.State, r.KeyID = "archived-backtest", keydesk.StateDelivered, "key-007"
	}, "")
	e.clock.Add(3 * time.Hour)

	c := startChromium(t, e.ts.URL+"/queue")
	c.signIn("alice")
	rows := func() []string {
		t.Helper()
		return evalJS[[]string](c, `[...document.querySelectorAll("table.queue tbody tr")].map(r => r.dataset.id)`)
	}
	// Waiting for me: pending, not approved by alice, hers or nobody's;
	// the unknown sender (high) first, then the oldest.
	if got, want := rows(), []string{unknown.ID, overdue.ID, fresh.ID}; !slices.Equal(got, want) {
		t.Fatalf("waiting for alice: %v, want %v (not %s, %s, %s)", got, want, bobs.ID, approved.ID, archived.ID)
	}
	if tab := c.text(`nav.tabs a.on`); tab != "Waiting for me 3" {
		t.Fatalf("the open tab reads %q", tab)
	}
	row := `tr[data-id="` + unknown.ID + `"]`
	if why := c.text(row + ` td.act`); why != "unknown sender: reject or cancel it" {
		t.Fatalf("the unknown sender's row says %q where Approve would be", why)
	}
	if n := evalJS[int](c, `document.querySelectorAll('`+row+` form[action$="/approve"]').length`); n != 0 {
		t.Fatalf("the unknown sender's row has %d Approve forms", n)
	}
	for id, class := range map[string]string{unknown.ID: "age-late", overdue.ID: "age-over", fresh.ID: ""} {
		got := evalJS[string](c, `document.querySelector('tr[data-id="`+id+`"] td.age').className`)
		if strings.TrimSpace(strings.TrimPrefix(got, "num age")) != class {
			t.Errorf("%s: age cell class %q, want %q", id, got, class)
		}
	}
	if age := c.text(`tr[data-id="` + unknown.ID + `"] td.age`); age != "8 h" {
		t.Errorf("the unknown sender's age reads %q", age)
	}
	c.shot("queue-waiting.png")

	// The search finds a delivered request by its label, and says why.
	search := func(q string, wait string) {
		t.Helper()
		evalJS[string](c, `document.querySelector('form.search input[name=q]').value = ""`)
		if err := chromedp.Do(c.ctx,
			chromedp.SendKeys(chromedp.CSS(`form.search input[name=q]`), q),
			chromedp.Submit(chromedp.CSS(`form.search input[name=q]`)),
			chromedp.WaitVisible(chromedp.CSS(wait)),
		); err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
	}
	search("BACKTEST", `p.searching`)
	if got := rows(); !slices.Equal(got, []string{archived.ID}) {
		t.Fatalf("search by label: %v, want %s", got, archived.ID)
	}
	if why := c.text(`td.id .why`); why != "matched label" {
		t.Fatalf("the result says %q", why)
	}
	c.shot("queue-search.png")

	// An exact KR-ID, in lower case, opens the request: an unknown sender,
	// so the page offers no Approve and says why.
	search(strings.ToLower(unknown.ID), `section.card p.noaction`)
	if loc, _ := chromedp.Run(c.ctx, chromedp.Location()); loc != e.ts.URL+"/requests/"+unknown.ID {
		t.Fatalf("search by ID landed on %s", loc)
	}
	if why := c.text(`p.noaction`); why != "Approve is not offered: unknown sender: reject or cancel it." {
		t.Fatalf("the request page says %q", why)
	}
	if n := evalJS[int](c, `document.querySelectorAll('form[action$="/approve"]').length`); n != 0 {
		t.Fatalf("the unknown sender's page has %d Approve forms", n)
	}
	if n := evalJS[int](c, `document.querySelectorAll('form[action$="/reject"]').length`); n != 1 {
		t.Fatalf("the unknown sender's page has %d Reject forms, want 1", n)
	}
	c.shot("request-unknown-sender.png")
}

// TestBrowserConversation drives a request's conversation in headless
// Chromium: the partner's correction shown as a diff and accepted (the
// fields change), a note, a reply to the requester (queued for them
// alone) and "Assign to me". Screenshots land in testdata/artifacts/.
func TestBrowserConversation(t *testing.T) {
	e := newEnv(t)
	r := e.request(withProposal(keydesk.Proposal{Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "sandbox-backend"}),
		sampleMail("dev@acme.example", "Sandbox API keys for our backend",
			"Hello,\n\nEnvironment: sandbox\nScopes: accounts:read, trading:read\nLabel: sandbox-backend\n\nDana\n", "dmarc=pass header.from=acme.example"))
	e.inThread(r.ID, keydesk.ThreadEmailOut, "support@buildmarkets.ai", "<"+r.ID+".ack@buildmarkets.ai>",
		"Hello,\n\nWe received your request for Buildmarkets API keys.\n\n  Request:     "+r.ID+"\n  Scopes:      accounts:read, trading:read\n")
	e.inThread(r.ID, keydesk.ThreadEmailIn, "dev@acme.example", "<re-"+r.ID+"@acme.example>",
		"Sorry, only accounts:read please.\n\nScopes: accounts:read\n\n> We received your request <b>for</b> Buildmarkets API keys.")
	e.clock.Add(25 * time.Minute)

	c := startChromium(t, e.ts.URL+"/requests/"+r.ID)
	if err := chromedp.Do(c.ctx,
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password("alice")),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`section.proposal table.diff`)),
	); err != nil {
		t.Fatalf("sign in to the request page: %v", err)
	}
	if d := c.text(`table.diff tbody`); !strings.Contains(d, "scopes") || !strings.Contains(d, "accounts:read, trading:read") {
		t.Fatalf("the diff reads %q", d)
	}
	if th := c.text(`ol.thread`); !strings.Contains(th, "Sorry, only accounts:read please.") || !strings.Contains(th, "<b>for</b>") {
		t.Fatalf("the thread reads %q (the partner's email must show as text)", th)
	}
	c.shot("conversation-proposal.png")

	// act opens the request page afresh (no notice), takes one action and
	// returns the notice it leads to.
	act := func(what string, steps ...chromedp.Action[chromedp.Void]) string {
		t.Helper()
		all := append([]chromedp.Action[chromedp.Void]{
			chromedp.Navigate(e.ts.URL + "/requests/" + r.ID),
			chromedp.WaitVisible(chromedp.CSS(`section.conversation`)),
		}, steps...)
		all = append(all, chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
		if err := chromedp.Do(c.ctx, all...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return c.text(`p.notice`)
	}
	if n := act("accept the change", chromedp.Click(chromedp.CSS(`form[action$="/proposal/accept"] button`))); !strings.Contains(n, "Change accepted") {
		t.Fatalf("notice after accepting: %q", n)
	}
	if s := c.text(`ul.scopelist`); !strings.Contains(s, "accounts:read") || strings.Contains(s, "trading:read") {
		t.Fatalf("the scopes after accepting: %q", s)
	}
	if st := c.text(`h1 .state`); st != "pending_review" {
		t.Fatalf("state after accepting: %q", st)
	}
	if n := act("write a note",
		chromedp.SendKeys(chromedp.CSS(`form.note-form textarea`), "Called Dana: accounts:read is all they need."),
		chromedp.Click(chromedp.CSS(`form.note-form button`))); n != "Note added." {
		t.Fatalf("notice after the note: %q", n)
	}
	if n := act("send a reply",
		chromedp.SendKeys(chromedp.CSS(`form.reply-form textarea`), "Hello Dana,\n\nDone: the request now asks for accounts:read only."),
		chromedp.Click(chromedp.CSS(`form.reply-form button`))); !strings.Contains(n, "Reply queued") {
		t.Fatalf("notice after the reply: %q", n)
	}
	if n := act("assign to me", chromedp.Click(chromedp.CSS(`button.assign-me`))); n != "Assignment saved." {
		t.Fatalf("notice after assigning: %q", n)
	}
	if a := c.text(`p.assignee`); a != "alice (you)" {
		t.Fatalf("assignee shown: %q", a)
	}
	if note := c.text(`ol.thread li.entry-note`); !strings.Contains(note, "alice") || !strings.Contains(note, "Called Dana") {
		t.Fatalf("the note in the thread: %q", note)
	}
	c.shot("conversation-after.png")

	got := e.get(r.ID)
	if got.Assignee != "alice" || got.Proposal != nil || keydesk.JoinScopes(got.Scopes) != "accounts:read" || got.State != keydesk.StatePendingReview {
		t.Fatalf("stored after the page's actions: %+v", got)
	}
	var kinds []keydesk.MessageKind
	for _, m := range outboxMessages(t, e.q) {
		kinds = append(kinds, m.Kind)
		if len(m.To) != 1 || m.To[0] != "dev@acme.example" {
			t.Errorf("%s goes to %v, want the requester alone", m.Kind, m.To)
		}
	}
	if len(kinds) != 2 || kinds[0] != keydesk.KindProposalOutcome || kinds[1] != keydesk.KindStaffReply {
		t.Fatalf("outbox kinds %v, want the proposal's outcome and the reply", kinds)
	}
}

// TestBrowserKeys drives the key's life in headless Chromium: the
// partner page shows the keys of both environments (each holding a
// key-001) with their age, who made them and which are due for rotation;
// a revocation asked there with a reason becomes a revoke request pending
// review, which two approvers approve (four eyes in production) and
// which asks the batch role to revoke at once; a rotation is asked from
// the same page; on a revocation whose label matched several keys a
// person picks one. Screenshots land in testdata/artifacts/.
func TestBrowserKeys(t *testing.T) {
	e := newKeysEnv(t)
	picky := e.request(func(r *keydesk.Request) {
		r.Kind, r.Label, r.Scopes = keydesk.KindRevoke, "", nil
		r.KeyCandidates, r.Reason = []string{"key-001", "key-010"}, "the laptop with our sandbox keys was stolen"
	}, "")

	c := startChromium(t, e.ts.URL+"/queue")
	c.signIn("alice")
	if err := chromedp.Do(c.ctx,
		chromedp.Click(chromedp.CSS(`header nav a[href="/partners"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.partners`)),
	); err != nil {
		t.Fatalf("partners page: %v", err)
	}
	if due := c.text(`tr[data-partner="acme"] td:nth-child(4)`); due != "2" {
		t.Fatalf("acme's keys due for rotation read %q, want 2", due)
	}
	c.shot("partners.png")
	if err := chromedp.Do(c.ctx,
		chromedp.Click(chromedp.CSS(`a[href="/partners/acme"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section#env-production table.keys`)),
	); err != nil {
		t.Fatalf("open acme: %v", err)
	}
	// Both environments hold a key-001, and they are two keys.
	sb, prod := `section#env-sandbox tr[data-key="key-001"]`, `section#env-production tr[data-key="key-001"]`
	if a, b := c.text(sb+` td.label`), c.text(prod+` td.label`); a != "sandbox-backend" || b != "prod-trading" {
		t.Fatalf("the two key-001 labels read %q and %q", a, b)
	}
	if age := c.text(sb + ` td.age`); age != "400 d" {
		t.Errorf("sandbox key-001 age %q", age)
	}
	if made := c.text(sb + ` td.madeby a`); made != "KR-20251022-BBBB" {
		t.Errorf("sandbox key-001 made by %q", made)
	}
	due := evalJS[[]string](c, `[...document.querySelectorAll("tr.due")].map(r => r.closest("section").dataset.env + "/" + r.dataset.key)`)
	if !slices.Equal(due, []string{"sandbox/key-001", "production/key-002"}) {
		t.Errorf("due for rotation: %v", due)
	}
	revoked := `section#env-sandbox tr[data-key="key-002"]`
	if st := c.text(revoked + ` td.status .state`); st != "revoked" {
		t.Errorf("sandbox key-002 status %q", st)
	}
	if n := evalJS[int](c, `document.querySelectorAll('`+revoked+` form').length`); n != 0 {
		t.Errorf("the revoked key offers %d forms", n)
	}
	c.shot("partner.png")

	// Revoke the production key-001 with a reason.
	if err := chromedp.Do(c.ctx,
		chromedp.Click(chromedp.CSS(prod+` details.revoke summary`)),
		chromedp.SendKeys(chromedp.CSS(prod+` details.revoke input[name=reason]`), "secret pasted in a public issue"),
		chromedp.Click(chromedp.CSS(prod+` details.revoke button`)),
		chromedp.WaitVisible(chromedp.CSS(`section.keylife`)),
	); err != nil {
		t.Fatalf("revoke from the partner page: %v", err)
	}
	if n := c.text(`p.notice`); !strings.HasPrefix(n, "Revocation asked") {
		t.Fatalf("notice %q", n)
	}
	if k := c.text(`dd.keyref`); k != "acme / production / key-001" {
		t.Fatalf("the key reads %q", k)
	}
	if l := c.text(`dd.keylabel`); l != "prod-trading" {
		t.Fatalf("the key's label reads %q", l)
	}
	loc, _ := chromedp.Run(c.ctx, chromedp.Location())
	id := loc[strings.LastIndex(loc, "/")+1:]
	if i := strings.IndexByte(id, '?'); i >= 0 {
		id = id[:i]
	}
	r := e.get(id)
	if r.KindOf() != keydesk.KindRevoke || r.State != keydesk.StatePendingReview || r.KeyRef().String() != "acme/production/key-001" || r.Reason != "secret pasted in a public issue" {
		t.Fatalf("stored: %+v", r)
	}
	c.shot("revoke-asked.png")

	// Four eyes: alice approves first, bob second.
	approve := func(want string) {
		t.Helper()
		if err := chromedp.Do(c.ctx,
			chromedp.Navigate(e.ts.URL+"/requests/"+id),
			chromedp.WaitVisible(chromedp.CSS(`section.keylife`)),
			chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		); err != nil {
			t.Fatalf("approve: %v", err)
		}
		if n := c.text(`p.notice`); !strings.HasPrefix(n, want) {
			t.Fatalf("notice after approving: %q, want %q", n, want)
		}
	}
	approve("Your approval is recorded")
	if n := len(revokeRuns(t, e)); n != 0 {
		t.Fatalf("%d revoke runs after one approval of two", n)
	}
	if err := chromedp.Do(c.ctx, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	c.signIn("bob")
	approve("Approved. The batch role revokes the key now.")
	if st := c.text(`h1 .state`); st != "approved" {
		t.Fatalf("state after the second approval: %q", st)
	}
	runs := revokeRuns(t, e)
	if len(runs) != 1 || runs[0].By != "bob" || runs[0].State != keydesk.BatchRequested {
		t.Fatalf("revoke runs: %+v", runs)
	}
	c.shot("revoke-approved.png")
	// The batch role's trigger shows on the Batches page as a person sees it.
	if err := chromedp.Do(c.ctx,
		chromedp.Click(chromedp.CSS(`header nav a[href="/batches"]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.batches`)),
	); err != nil {
		t.Fatalf("batches page: %v", err)
	}
	if row := c.text(`table.batches tbody tr:first-child`); !strings.Contains(row, runs[0].ID) || !strings.Contains(row, "revoke by bob") || !strings.Contains(row, "requested") {
		t.Fatalf("the batches page's first row reads %q", row)
	}

	// Rotate the sandbox key-001 from the partner page.
	if err := chromedp.Do(c.ctx,
		chromedp.Navigate(e.ts.URL+"/partners/acme"),
		chromedp.WaitVisible(chromedp.CSS(sb)),
	); err != nil {
		t.Fatalf("partner page again: %v", err)
	}
	if open := c.text(prod + ` td.status .sub a`); open != id {
		t.Errorf("the production key-001 shows the open revocation %q, want %s", open, id)
	}
	if err := chromedp.Do(c.ctx,
		chromedp.Click(chromedp.CSS(sb+` details.rotate summary`)),
		chromedp.SendKeys(chromedp.CSS(sb+` details.rotate input[name=reason]`), "older than the policy allows"),
		chromedp.Click(chromedp.CSS(sb+` details.rotate button`)),
		chromedp.WaitVisible(chromedp.CSS(`section.keylife`)),
	); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if n := c.text(`p.notice`); !strings.HasPrefix(n, "Rotation asked") {
		t.Fatalf("notice after rotate: %q", n)
	}
	if k := c.text(`dd.keyref`); k != "acme / sandbox / key-001" {
		t.Fatalf("the rotated key reads %q", k)
	}
	c.shot("rotate-asked.png")
	rots, err := e.q.List(context.Background(), queue.Filter{Partner: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	rots = slices.DeleteFunc(rots, func(x *keydesk.Request) bool { return x.KindOf() != keydesk.KindRotate })
	if len(rots) != 1 || rots[0].ReplacesKeyID != "key-001" || rots[0].Environment != keydesk.Sandbox || rots[0].Label != "sandbox-backend" || rots[0].State != keydesk.StatePendingReview {
		t.Fatalf("rotate requests: %+v", rots)
	}

	// Pick the key a revocation by label meant.
	if err := chromedp.Do(c.ctx,
		chromedp.Navigate(e.ts.URL+"/requests/"+picky.ID),
		chromedp.WaitVisible(chromedp.CSS(`table.candidates`)),
	); err != nil {
		t.Fatalf("open the request with candidates: %v", err)
	}
	if got := evalJS[[]string](c, `[...document.querySelectorAll("table.candidates tbody tr")].map(r => r.dataset.key)`); !slices.Equal(got, []string{"key-001", "key-010"}) {
		t.Fatalf("candidates shown: %v", got)
	}
	if why := c.text(`p.noaction`); !strings.Contains(why, "pick one first") {
		t.Fatalf("the approve refusal reads %q", why)
	}
	c.shot("revoke-candidates.png")
	if err := chromedp.Do(c.ctx,
		chromedp.Click(chromedp.CSS(`tr[data-key="key-010"] form.pick button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	); err != nil {
		t.Fatalf("pick: %v", err)
	}
	if k := c.text(`dd.keyref`); k != "acme / sandbox / key-010" {
		t.Fatalf("after the pick the key reads %q", k)
	}
	if got := e.get(picky.ID); got.KeyID != "key-010" || len(got.KeyCandidates) != 0 {
		t.Fatalf("stored after the pick: %q %v", got.KeyID, got.KeyCandidates)
	}
	c.shot("revoke-picked.png")
}
