package review

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// inThread adds an entry to a request's thread as intake or delivery
// would.
func (e *env) inThread(id string, kind keydesk.ThreadKind, from, messageID, text string) {
	e.t.Helper()
	_, err := e.q.AppendThread(context.Background(), keydesk.ThreadEntry{
		ID: keydesk.EntryID(id, messageID, text), RequestID: id, At: e.clock.Now(), Kind: kind,
		From: from, Subject: "Re: API keys please", MessageID: messageID, Text: text,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(time.Second)
}

// withProposal is a request whose partner proposed a change in a reply.
func withProposal(p keydesk.Proposal) func(*keydesk.Request) {
	return func(r *keydesk.Request) {
		p.From, p.MessageID, p.ID = "dev@acme.example", "<reply-"+r.SourceMessageID[1:], "prop-"+keydesk.EntryID(r.SourceMessageID)
		p.At = r.SourceDate.Add(10 * time.Minute)
		r.Proposal = &p
		r.Flags = append(r.Flags, keydesk.FlagProposedChange)
	}
}

func (e *env) thread(id string) []keydesk.ThreadEntry {
	e.t.Helper()
	th, err := e.q.Thread(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return th
}

// staffEvents are the staff audit events about a request.
func (e *env) staffEvents(id, action string) []queue.AuditEntry {
	e.t.Helper()
	all, err := e.q.Audit(context.Background(), queue.AuditQuery{Kind: "staff", Ref: id})
	if err != nil {
		e.t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(a queue.AuditEntry) bool { return a.Action != action })
}

func TestNotes(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	for _, tc := range []struct {
		name, user, text string
		code             int
		errCode          string
	}{
		{"a viewer may not", "viv", "looks fine", http.StatusForbidden, "forbidden"},
		{"empty", "alice", "  ", http.StatusBadRequest, "bad_request"},
		{"too long", "alice", strings.Repeat("x", maxNote+1), http.StatusBadRequest, "bad_request"},
		{"a control character", "alice", "hi \x1b[31mthere", http.StatusBadRequest, "bad_request"},
		{"a secret", "alice", "the old key was bm_secret_abc123, revoke it", http.StatusBadRequest, "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.api(tc.user, "POST", "/api/v1/requests/"+r.ID+"/notes", map[string]string{"text": tc.text})
			if code != tc.code || out["code"] != tc.errCode {
				t.Fatalf("note: %d %v, want %d %s", code, out, tc.code, tc.errCode)
			}
		})
	}
	if th := e.thread(r.ID); len(th) != 0 {
		t.Fatalf("refused notes reached the thread: %+v", th)
	}
	code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/notes", map[string]string{"text": "Called Dana: they meant accounts:read only.\nWaiting for their reply."})
	if code != http.StatusOK || out["message"] != "Note added." {
		t.Fatalf("note: %d %v", code, out)
	}
	th := e.thread(r.ID)
	if len(th) != 1 || th[0].Kind != keydesk.ThreadNote || th[0].From != "alice" || th[0].Text != "Called Dana: they meant accounts:read only.\nWaiting for their reply." {
		t.Fatalf("thread after a note: %+v", th)
	}
	testenv.Eventually(t, 10*time.Second, "the note's audit event", func() bool { return len(e.staffEvents(r.ID, "note")) == 1 })
	if ev := e.staffEvents(r.ID, "note")[0]; ev.Actor != "alice" || !strings.Contains(ev.Change, "Called Dana") {
		t.Fatalf("audit event: %+v", ev)
	}
	if n := len(outboxMessages(t, e.q)); n != 0 {
		t.Fatalf("a note sent %d emails; notes never leave keydesk", n)
	}
}

func TestStaffReply(t *testing.T) {
	e := newEnv(t)
	r := e.request(func(r *keydesk.Request) { r.Subject = "Sandbox API keys for our backend" }, "")
	e.inThread(r.ID, keydesk.ThreadEmailOut, "support@buildmarkets.ai", "<"+r.ID+".ack@buildmarkets.ai>", "We received your request.")
	e.inThread(r.ID, keydesk.ThreadEmailIn, "dev@acme.example", "<second@acme.example>", "Any news?")
	e.inThread(r.ID, keydesk.ThreadNote, "bob", "", "they are impatient")
	// Message-IDs no header can carry are left out, not sent to delivery,
	// which would refuse the whole reply.
	e.inThread(r.ID, keydesk.ThreadEmailIn, "dev@acme.example", "<two words@acme.example>", "hostile 1")
	e.inThread(r.ID, keydesk.ThreadEmailIn, "dev@acme.example", "<x@acme.example>\r\nBcc: all@evil.example", "hostile 2")
	unknown := e.request(func(r *keydesk.Request) {
		r.Partner, r.Requester, r.Flags = "", "spoof@evil.example", []keydesk.Flag{keydesk.FlagUnknownSender}
	}, "")

	for _, tc := range []struct {
		name, user, id string
		body           any
		code           int
		errCode        string
	}{
		{"a viewer may not", "viv", r.ID, map[string]string{"text": "hello"}, http.StatusForbidden, "forbidden"},
		{"an API secret", "alice", r.ID, map[string]string{"text": "Your secret is bm_secret_AbC-123_x"}, http.StatusBadRequest, "secret"},
		{"a private key", "alice", r.ID, map[string]string{"text": "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF"}, http.StatusBadRequest, "secret"},
		{"another address", "alice", r.ID, map[string]string{"text": "hello", "to": "attacker@evil.example"}, http.StatusBadRequest, "bad_request"},
		{"empty", "alice", r.ID, map[string]string{"text": ""}, http.StatusBadRequest, "bad_request"},
		{"too long", "alice", r.ID, map[string]string{"text": strings.Repeat("y", maxReply+1)}, http.StatusBadRequest, "bad_request"},
		{"an unknown sender", "alice", unknown.ID, map[string]string{"text": "hello"}, http.StatusConflict, "unknown_sender"},
		{"no such request", "alice", "KR-20261127-ZZZZ", map[string]string{"text": "hello"}, http.StatusNotFound, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.api(tc.user, "POST", "/api/v1/requests/"+tc.id+"/reply", tc.body)
			if code != tc.code || out["code"] != tc.errCode {
				t.Fatalf("reply: %d %v, want %d %s", code, out, tc.code, tc.errCode)
			}
		})
	}
	if n := len(outboxMessages(t, e.q)); n != 0 {
		t.Fatalf("refused replies queued %d emails", n)
	}
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/reply", map[string]string{"text": "Hello Dana, your request waits for a second approver; we will be quick."}); code != http.StatusOK {
		t.Fatalf("reply: %d %v", code, out)
	}
	e.clock.Add(time.Minute)
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/reply", map[string]string{"text": "A second word."}); code != http.StatusOK {
		t.Fatalf("second reply: %d %v", code, out)
	}
	msgs := outboxMessages(t, e.q)
	if len(msgs) != 2 || msgs[0].ID == msgs[1].ID {
		t.Fatalf("two replies queued %d emails (IDs must differ): %+v", len(msgs), msgs)
	}
	m := msgs[0]
	wantRefs := []string{r.SourceMessageID, "<" + r.ID + ".ack@buildmarkets.ai>", "<second@acme.example>"}
	if m.Kind != keydesk.KindStaffReply || !slices.Equal(m.To, []string{"dev@acme.example"}) || m.RequestID != r.ID ||
		m.InReplyTo != r.SourceMessageID || !slices.Equal(m.References, wantRefs) || m.Subject != "Re: Sandbox API keys for our backend" ||
		!strings.HasPrefix(m.ID, r.ID+".staff-reply.") {
		t.Fatalf("reply email: %+v\nreferences %q, want %q", m, m.References, wantRefs)
	}
	for _, want := range []string{"Hello Dana, your request waits", "Request:     " + r.ID, "Environment: sandbox",
		"Scopes:      accounts:read, trading:read", "Label:       sandbox-backend", "Status:      waiting for review by our support team",
		"For anything about this request, reply to this email.", "Kind regards,\nBuildmarkets Partner Support\n"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("the reply lacks %q:\n%s", want, m.Text)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the replies' audit events", func() bool { return len(e.staffEvents(r.ID, "reply")) == 2 })
}

func TestAssign(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	other := e.request(nil, "")
	for _, tc := range []struct {
		name, user string
		body       any
		code       int
		errCode    string
	}{
		{"a viewer may not", "viv", map[string]string{"user": "viv"}, http.StatusForbidden, "forbidden"},
		{"no such staff member", "alice", map[string]string{"user": "mallory"}, http.StatusBadRequest, "bad_request"},
		{"no user named", "alice", map[string]string{}, http.StatusBadRequest, "bad_request"},
		{"a stale revision", "alice", map[string]any{"user": "bob", "revision": r.Revision + 7}, http.StatusConflict, "conflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.api(tc.user, "POST", "/api/v1/requests/"+r.ID+"/assign", tc.body)
			if code != tc.code || out["code"] != tc.errCode {
				t.Fatalf("assign: %d %v, want %d %s", code, out, tc.code, tc.errCode)
			}
		})
	}
	if got := e.get(r.ID).Assignee; got != "" {
		t.Fatalf("refused assignments set the assignee to %q", got)
	}
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/assign", map[string]any{"user": "bob", "revision": r.Revision}); code != 200 || out["assignee"] != "bob" {
		t.Fatalf("assign bob: %d %v", code, out)
	}
	if code, out := e.api("alice", "POST", "/api/v1/requests/"+other.ID+"/assign", map[string]any{"user": "alice"}); code != 200 || out["assignee"] != "alice" {
		t.Fatalf("assign alice: %d %v", code, out)
	}
	_, list := e.api("bob", "GET", "/api/v1/requests?assignee=me", nil)
	if ids := listIDs(list); !slices.Equal(ids, []string{r.ID}) {
		t.Fatalf("bob's requests: %v, want [%s]", ids, r.ID)
	}
	_, list = e.api("bob", "GET", "/api/v1/requests?assignee=alice", nil)
	if ids := listIDs(list); !slices.Equal(ids, []string{other.ID}) {
		t.Fatalf("alice's requests: %v, want [%s]", ids, other.ID)
	}
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/assign", map[string]string{"user": ""}); code != 200 || out["assignee"] != "" {
		t.Fatalf("unassign: %d %v", code, out)
	}
	h, err := e.q.History(context.Background(), r.ID, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, ev := range h {
		if ev.Action == "assign" {
			notes = append(notes, ev.Actor+": "+ev.Change)
		}
	}
	if want := []string{"alice: assigned to bob (via API)", "bob: unassigned (was bob) (via API)"}; !slices.Equal(notes, want) {
		t.Fatalf("audit trail of the assignment: %q, want %q", notes, want)
	}
}

func listIDs(list map[string]any) []string {
	var ids []string
	rs, _ := list["requests"].([]any)
	for _, x := range rs {
		ids = append(ids, x.(map[string]any)["id"].(string))
	}
	return ids
}

func TestProposal(t *testing.T) {
	narrower := keydesk.Proposal{Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "sandbox-backend"}
	wider := keydesk.Proposal{Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead, keydesk.ScopeTradingWrite}, Label: "sandbox-backend"}
	tests := []struct {
		name     string
		proposal keydesk.Proposal
		decision string
		scopes   []keydesk.Scope // after the decision
		widened  bool            // alice widened it: she cannot approve
		email    []string        // in the outcome email
	}{
		{"accept a narrowing change", narrower, "accept", narrower.Scopes, false,
			[]string{"We have made the change you asked for", "Scopes:      accounts:read\n", "Your request now reads:"}},
		{"accept a widening change", wider, "accept", wider.Scopes, true,
			[]string{"We have made the change you asked for", "Scopes:      accounts:read, trading:read, trading:write"}},
		{"refuse a change", wider, "refuse", []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead}, false,
			[]string{"We have not made the change you asked for", "Our support team kept your request as it was:", "Scopes:      accounts:read, trading:read\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.request(withProposal(tt.proposal), "")
			_, got := e.api("viv", "GET", "/api/v1/requests/"+r.ID, nil)
			pc, _ := got["proposed_change"].(map[string]any)
			diff, _ := pc["diff"].([]any)
			if len(diff) != 1 || diff[0].(map[string]any)["field"] != "scopes" || pc["from"] != "dev@acme.example" {
				t.Fatalf("GET shows proposed_change %v", got["proposed_change"])
			}
			if code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/approve", nil); code != http.StatusConflict || out["code"] != "proposal_pending" {
				t.Fatalf("approved with a change undecided: %d %v", code, out)
			}
			if code, out := e.api("viv", "POST", "/api/v1/requests/"+r.ID+"/proposal/"+tt.decision, nil); code != http.StatusForbidden {
				t.Fatalf("a viewer decides a proposal: %d %v", code, out)
			}
			if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/proposal/"+tt.decision, map[string]any{"revision": r.Revision + 3}); code != http.StatusConflict || out["code"] != "conflict" {
				t.Fatalf("a stale decision: %d %v", code, out)
			}
			code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/proposal/"+tt.decision, map[string]any{"revision": r.Revision})
			if code != http.StatusOK || !strings.Contains(out["message"].(string), "the requester is told") {
				t.Fatalf("%s: %d %v", tt.decision, code, out)
			}
			if code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/proposal/"+tt.decision, nil); code != http.StatusConflict || out["code"] != "no_proposal" {
				t.Fatalf("a second decision: %d %v", code, out)
			}
			after := e.get(r.ID)
			if after.State != keydesk.StatePendingReview || after.Proposal != nil || after.HasFlag(keydesk.FlagProposedChange) || !slices.Equal(after.Scopes, tt.scopes) {
				t.Fatalf("after %s: state %s proposal %v flags %v scopes %v, want scopes %v", tt.decision, after.State, after.Proposal, after.Flags, after.Scopes, tt.scopes)
			}
			if slices.Contains(after.WidenedBy, "alice") != tt.widened {
				t.Fatalf("widened_by %v, want alice there: %v", after.WidenedBy, tt.widened)
			}
			code, out = e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
			if tt.widened {
				if code != http.StatusForbidden || out["code"] != "own_widening" {
					t.Fatalf("alice approves the widening she accepted: %d %v", code, out)
				}
			} else if code != http.StatusOK || out["state"] != "approved" {
				t.Fatalf("approve after %s: %d %v", tt.decision, code, out)
			}
			msgs := outboxMessages(t, e.q)
			if len(msgs) != 1 {
				t.Fatalf("outbox holds %d emails, want the one outcome", len(msgs))
			}
			m := msgs[0]
			if m.Kind != keydesk.KindProposalOutcome || m.ID != r.ID+".proposal-outcome."+r.Proposal.ID || !slices.Equal(m.To, []string{"dev@acme.example"}) ||
				m.InReplyTo != r.Proposal.MessageID || m.Subject != "Re: API keys please" {
				t.Fatalf("outcome email: %+v", m)
			}
			for _, want := range tt.email {
				if !strings.Contains(m.Text, want) {
					t.Errorf("the outcome email lacks %q:\n%s", want, m.Text)
				}
			}
			h, err := e.q.History(context.Background(), r.ID, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(h, func(a queue.AuditEntry) bool { return a.Action == tt.decision+"-proposal" && a.Actor == "alice" }) {
				t.Fatalf("no %s-proposal event by alice in %+v", tt.decision, h)
			}
		})
	}
	t.Run("no proposal", func(t *testing.T) {
		e := newEnv(t)
		r := e.request(nil, "")
		if code, out := e.api("alice", "POST", "/api/v1/requests/"+r.ID+"/proposal/accept", nil); code != http.StatusConflict || out["code"] != "no_proposal" {
			t.Fatalf("accept without a proposal: %d %v", code, out)
		}
	})
}

func TestThreadInAPI(t *testing.T) {
	e := newEnv(t)
	r := e.request(nil, "")
	e.inThread(r.ID, keydesk.ThreadEmailOut, "support@buildmarkets.ai", "<"+r.ID+".ack@buildmarkets.ai>", "We received your request.")
	e.inThread(r.ID, keydesk.ThreadEmailIn, "dev@acme.example", "<reply@acme.example>", "only accounts:read please \u202egnp.exe")
	if code, out := e.api("bob", "POST", "/api/v1/requests/"+r.ID+"/notes", map[string]string{"text": "asked Dana"}); code != 200 {
		t.Fatalf("note: %d %v", code, out)
	}
	_, got := e.api("viv", "GET", "/api/v1/requests/"+r.ID, nil)
	th, _ := got["thread"].([]any)
	var kinds []string
	for _, x := range th {
		kinds = append(kinds, x.(map[string]any)["kind"].(string))
	}
	if want := []string{"email_out", "email_in", "note"}; !slices.Equal(kinds, want) {
		t.Fatalf("thread kinds %v, want %v (oldest first)", kinds, want)
	}
	in := th[1].(map[string]any)
	if in["from"] != "dev@acme.example" || in["message_id"] != "<reply@acme.example>" || in["text"] != "only accounts:read please ⟨U+202E⟩gnp.exe" {
		t.Fatalf("the partner's email in the thread: %v", in)
	}
	for _, k := range []string{"kind", "assignee"} {
		if _, ok := got[k]; !ok {
			t.Errorf("GET lacks %q: %v", k, got)
		}
	}
	if got["kind"] != "issue" {
		t.Errorf("kind = %v, want issue", got["kind"])
	}
}

// TestListSearchAndPaging: kind, assignee and q narrow the list, and the
// cursor pages past 500 requests with a filter on.
func TestListSearchAndPaging(t *testing.T) {
	e := newEnv(t)
	const n = 520
	for i := range n {
		e.request(func(r *keydesk.Request) {
			r.Label = fmt.Sprintf("bulk-%03d", i)
			if i%2 == 1 {
				r.Kind = keydesk.KindRevoke
			}
		}, "")
	}
	special := e.request(func(r *keydesk.Request) { r.Label, r.Requester = "Trading-Engine", "Dana.Dev@Acme.example" }, "")
	e.reg.Partners = append(e.reg.Partners, &keydesk.Partner{ID: "northwind", Name: "Northwind Markets", Requesters: []string{"*@northwind.example"}})
	nw := e.request(func(r *keydesk.Request) { r.Partner, r.Requester = "northwind", "cto@northwind.example" }, "")

	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"a KR-ID, lower case", "q=" + strings.ToLower(special.ID), []string{special.ID}},
		{"a label, any case", "q=trading-ENGINE", []string{special.ID}},
		{"a sender", "q=dana.dev@acme", []string{special.ID}},
		{"a partner's name", "q=northwind+mark", []string{nw.ID}},
		{"a partner's ID", "q=NORTHWIND", []string{nw.ID}},
		{"nothing", "q=no-such-thing", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.api("viv", "GET", "/api/v1/requests?"+tc.query, nil)
			if ids := listIDs(out); code != 200 || !slices.Equal(ids, tc.want) {
				t.Fatalf("%s: %d %v, want %v", tc.query, code, ids, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, query string }{
		{"an unknown kind", "kind=steal"},
		{"a long q", "q=" + strings.Repeat("a", maxSearch+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, out := e.api("viv", "GET", "/api/v1/requests?"+tc.query, nil); code != http.StatusBadRequest || out["code"] != "bad_request" {
				t.Fatalf("%s: %d %v", tc.query, code, out)
			}
		})
	}

	// Every issue (261 of them: 260 bulk, special and nw), page by page.
	seen := map[string]bool{}
	pages := 0
	q := url.Values{"kind": {"issue"}, "limit": {"100"}}
	for {
		code, out := e.api("viv", "GET", "/api/v1/requests?"+q.Encode(), nil)
		if code != 200 {
			t.Fatalf("page %d: %d %v", pages, code, out)
		}
		pages++
		for _, id := range listIDs(out) {
			if seen[id] {
				t.Fatalf("%s on two pages", id)
			}
			seen[id] = true
		}
		next, _ := out["next_cursor"].(string)
		if next == "" {
			break
		}
		q.Set("cursor", next)
	}
	if len(seen) != n/2+2 || pages != 3 {
		t.Fatalf("kind=issue paged %d requests in %d pages, want %d in 3", len(seen), pages, n/2+2)
	}
	// Past 500 with the default page.
	code, first := e.api("viv", "GET", "/api/v1/requests", nil)
	next, _ := first["next_cursor"].(string)
	if code != 200 || len(listIDs(first)) != 500 || next == "" {
		t.Fatalf("first page: %d, %d requests, cursor %q", code, len(listIDs(first)), next)
	}
	_, second := e.api("viv", "GET", "/api/v1/requests?cursor="+next, nil)
	if got := len(listIDs(second)); got != n+2-500 || second["next_cursor"] != nil {
		t.Fatalf("second page: %d requests, cursor %v; want %d and none", got, second["next_cursor"], n+2-500)
	}
}

// TestConversationOnRequestPage: the request page shows the thread with
// the partner's email as text, the proposed change as a diff, and the
// forms; the forms work with the session's CSRF token.
func TestConversationOnRequestPage(t *testing.T) {
	e := newEnv(t)
	r := e.request(withProposal(keydesk.Proposal{Environment: keydesk.Sandbox, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, Label: "sandbox-backend"}), "")
	e.inThread(r.ID, keydesk.ThreadEmailIn, "dev@acme.example", "<reply@acme.example>", "<script>alert(1)</script> only accounts:read please")
	b := e.login("alice")
	code, _, body := b.get("/requests/" + r.ID)
	for _, want := range []string{`id="thread"`, "&lt;script&gt;alert(1)&lt;/script&gt; only accounts:read please", `class="diff"`,
		`action="/requests/` + r.ID + `/proposal/accept"`, `action="/requests/` + r.ID + `/notes"`, `action="/requests/` + r.ID + `/reply"`, "Assign to me"} {
		if !strings.Contains(body, want) {
			t.Errorf("the request page (%d) lacks %q", code, want)
		}
	}
	if strings.Contains(body, "<script>alert(1)") {
		t.Fatal("the partner's email reached the page as markup")
	}
	for _, step := range []struct {
		path string
		form url.Values
		done string
	}{
		{"/notes", url.Values{"text": {"checked with Dana"}}, "noted"},
		{"/assign", url.Values{"user": {"alice"}}, "assigned"},
		{"/proposal/accept", url.Values{}, "proposal-accepted"},
		{"/reply", url.Values{"text": {"Done: only accounts:read."}}, "replied"},
	} {
		code, h, body := b.post("/requests/"+r.ID+step.path, step.form)
		if code != http.StatusSeeOther || !strings.HasSuffix(h.Get("Location"), "?done="+step.done) {
			t.Fatalf("%s: %d %s\n%s", step.path, code, h.Get("Location"), body)
		}
		b.get(h.Get("Location"))
	}
	got := e.get(r.ID)
	if got.Assignee != "alice" || got.Proposal != nil || !slices.Equal(got.Scopes, []keydesk.Scope{keydesk.ScopeAccountsRead}) {
		t.Fatalf("after the page's forms: %+v", got)
	}
	// A refused reply comes back with its text kept, in the reply form
	// only, and the secret in it redacted.
	code, _, body = b.post("/requests/"+r.ID+"/reply", url.Values{"form": {"reply"}, "text": {"Dear Dana, here: bm_secret_x1"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "never sends a secret") {
		t.Fatalf("a reply with a secret from the page: %d", code)
	}
	if strings.Contains(body, "bm_secret_x1") || strings.Count(body, "Dear Dana, here: [redacted]") != 1 || !strings.Contains(body, `maxlength="8000" required>Dear Dana`) {
		t.Fatal("the refused reply's text is not kept in the reply form (and only there), with the secret redacted")
	}
	v := e.login("viv")
	if _, _, body := v.get("/requests/" + r.ID); strings.Contains(body, `/notes"`) || strings.Contains(body, "Assign to me") {
		t.Fatal("a viewer is offered the conversation's forms")
	}
}
