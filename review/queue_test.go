package review

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

func TestWaitingFor(t *testing.T) {
	approved := []keydesk.Approval{{By: "alice"}}
	for _, tc := range []struct {
		name     string
		state    keydesk.State
		assignee string
		approved []keydesk.Approval
		want     bool
	}{
		{"pending, nobody on it", keydesk.StatePendingReview, "", nil, true},
		{"pending, assigned to me", keydesk.StatePendingReview, "alice", nil, true},
		{"pending, assigned to someone else", keydesk.StatePendingReview, "bob", nil, false},
		{"pending, I approved (four eyes)", keydesk.StatePendingReview, "", approved, false},
		{"pending, someone else approved", keydesk.StatePendingReview, "", []keydesk.Approval{{By: "bob"}}, true},
		{"received", keydesk.StateReceived, "", nil, false},
		{"approved", keydesk.StateApproved, "alice", nil, false},
		{"blocked", keydesk.StateBlocked, "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &keydesk.Request{State: tc.state, Assignee: tc.assignee, Approvals: tc.approved}
			if got := waitingFor(r, "alice"); got != tc.want {
				t.Fatalf("waitingFor = %v, want %v", got, tc.want)
			}
			if got := inView("mine", r, "alice"); got != tc.want {
				t.Fatalf("inView(mine) = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSearchMatch(t *testing.T) {
	reg := &keydesk.Registry{Partners: []*keydesk.Partner{{ID: "acme", Name: "Acme Capital"}}}
	r := &keydesk.Request{ID: "KR-20261127-7QX4", Partner: "acme", Label: "prod-trading-engine", Requester: "dana@acme.example"}
	unknown := &keydesk.Request{ID: "KR-20261127-AB12", Label: "urgent", Requester: "ceo@payments.example"}
	for _, tc := range []struct {
		name, q string
		r       *keydesk.Request
		why     string // "": no match
	}{
		{"ID, any case", "kr-20261127-7qx4", r, "ID"},
		{"part of an ID", "7qx", r, "ID"},
		{"label substring", "TRADING", r, "label"},
		{"sender address", "dana@", r, "sender"},
		{"sender domain matches the sender before the partner", "acme.example", r, "sender"},
		{"partner name", "capital", r, "partner Acme Capital"},
		{"partner name, any case", "acme cap", r, "partner Acme Capital"},
		{"no match", "northwind", r, ""},
		{"unknown sender by address", "payments", unknown, "sender"},
		{"unknown sender has no partner name", "capital", unknown, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why, ok := searchMatch(tc.r, reg, strings.ToLower(tc.q))
			if ok != (tc.why != "") || why != tc.why {
				t.Fatalf("searchMatch(%q) = %q, %v; want %q", tc.q, why, ok, tc.why)
			}
		})
	}
}

func TestFlagSeverity(t *testing.T) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	reg := &keydesk.Registry{Partners: []*keydesk.Partner{{ID: "acme", AllowedScopes: []keydesk.Scope{keydesk.ScopeAccountsRead}}}}
	for _, tc := range []struct {
		name  string
		r     keydesk.Request
		flags string // codes as shown, in order
		top   string
	}{
		{"production alone is information", keydesk.Request{Partner: "acme", Environment: keydesk.Production, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}},
			"production:info", "info"},
		{"unknown sender and DMARC stand out from production", keydesk.Request{Environment: keydesk.Production,
			Flags: []keydesk.Flag{keydesk.FlagProduction, keydesk.FlagDMARCNotPassed}},
			"unknown-sender:high dmarc-not-passed:high production:info", "high"},
		{"keys:manage outside the allowed scopes", keydesk.Request{Partner: "acme", Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}},
			"scope-not-allowed:high keys-manage:info", "high"},
		{"a proposed change and a duplicate are medium", keydesk.Request{Partner: "acme", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead},
			Flags: []keydesk.Flag{keydesk.FlagDuplicate}, Proposal: &keydesk.Proposal{}},
			"proposed-change:medium duplicate:medium", "medium"},
		{"forwarded is medium, before information", keydesk.Request{Partner: "acme", Environment: keydesk.Production, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead},
			Flags: []keydesk.Flag{keydesk.FlagProduction, keydesk.FlagForwarded}},
			"forwarded:medium production:info", "medium"},
		{"a flag the page does not know is information", keydesk.Request{Partner: "acme", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead},
			Flags: []keydesk.Flag{"something-new", keydesk.FlagNeedsReview}},
			"needs-review:medium something-new:info", "medium"},
		{"no flags", keydesk.Request{Partner: "acme", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := riskFlags(&tc.r, reg, now)
			var got []string
			for _, f := range fl {
				got = append(got, f.Code+":"+f.Level)
			}
			if strings.Join(got, " ") != tc.flags {
				t.Fatalf("flags = %q, want %q", strings.Join(got, " "), tc.flags)
			}
			if top := topSeverity(fl).Class(); top != tc.top {
				t.Fatalf("top severity = %q, want %q", top, tc.top)
			}
		})
	}
}

// TestQueueOrder: awaiting review first, high severity first, then
// medium, then the rest (information orders nothing), each the oldest
// first; then the rest, latest change first.
func TestQueueOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	reg := &keydesk.Registry{Partners: []*keydesk.Partner{{ID: "acme"}}}
	mk := func(id string, st keydesk.State, created, updated int, env keydesk.Environment, flags ...keydesk.Flag) *keydesk.Request {
		return &keydesk.Request{ID: id, State: st, Partner: "acme", Environment: env, Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead},
			Flags: flags, CreatedAt: t0.Add(time.Duration(created) * time.Minute), UpdatedAt: t0.Add(time.Duration(updated) * time.Minute)}
	}
	rs := []*keydesk.Request{
		mk("KR-20261127-AAA1", keydesk.StateApproved, 0, 50, keydesk.Sandbox),
		mk("KR-20261127-AAA2", keydesk.StatePendingReview, 6, 6, keydesk.Production),                              // info orders nothing
		mk("KR-20261127-AAA3", keydesk.StatePendingReview, 5, 5, keydesk.Sandbox, keydesk.FlagDMARCNotPassed),     // high, newer
		mk("KR-20261127-AAA4", keydesk.StatePendingReview, 3, 3, keydesk.Sandbox, keydesk.FlagDuplicate),          // medium
		mk("KR-20261127-AAA5", keydesk.StatePendingReview, 2, 2, keydesk.Sandbox, keydesk.FlagUnknownSender),      // high, older
		mk("KR-20261127-AAA6", keydesk.StateDelivered, 0, 60, keydesk.Sandbox),                                    // latest change
		mk("KR-20261127-AAA7", keydesk.StateReceived, 4, 4, keydesk.Sandbox),                                      // none
		mk("KR-20261127-AAA8", keydesk.StatePendingReview, 0, 0, keydesk.Sandbox, keydesk.FlagContactKeyExpiring), // medium, oldest
	}
	slices.SortFunc(rs, func(a, b *keydesk.Request) int {
		return keyOf(a, topSeverity(riskFlags(a, reg, t0))).compare(keyOf(b, topSeverity(riskFlags(b, reg, t0))))
	})
	var got []string
	for _, r := range rs {
		got = append(got, r.ID[len(r.ID)-1:])
	}
	if want := "5 3 8 4 7 2 6 1"; strings.Join(got, " ") != want {
		t.Fatalf("order = %s, want %s", strings.Join(got, " "), want)
	}
}

func TestAge(t *testing.T) {
	target := 4 * time.Hour
	for _, tc := range []struct {
		age         time.Duration
		words, want string
	}{
		{30 * time.Second, "under 1 min", ""},
		{45 * time.Minute, "45 min", ""},
		{3*time.Hour + 20*time.Minute, "3 h 20 min", ""},
		{4 * time.Hour, "4 h", ""},
		{4*time.Hour + time.Minute, "4 h 1 min", "age-over"},
		{8 * time.Hour, "8 h", "age-over"},
		{8*time.Hour + time.Minute, "8 h 1 min", "age-late"},
		{50 * time.Hour, "2 d 2 h", "age-late"},
		{72 * time.Hour, "3 d", "age-late"},
	} {
		t.Run(tc.words, func(t *testing.T) {
			if w := ageWords(tc.age); w != tc.words {
				t.Errorf("ageWords(%s) = %q, want %q", tc.age, w, tc.words)
			}
			if c := ageClass(tc.age, target); c != tc.want {
				t.Errorf("ageClass(%s) = %q, want %q", tc.age, c, tc.want)
			}
		})
	}
}

var rowRE = regexp.MustCompile(`<tr class="[^"]*" data-id="(KR-[0-9A-Z-]+)"`)

// rowIDs are the request IDs of a queue page's rows, in order.
func rowIDs(page string) []string {
	var ids []string
	for _, m := range rowRE.FindAllStringSubmatch(page, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

var pagerRE = regexp.MustCompile(`href="(/queue\?[^"]+)" rel="(prev|next)"`)

func pagerLink(page, rel string) string {
	for _, m := range pagerRE.FindAllStringSubmatch(page, -1) {
		if m[2] == rel {
			return strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	return ""
}

// TestQueuePaging walks the queue past 500 requests, 100 a page, by the
// Next links, then back by Previous: every request is seen once, in the
// queue's order.
func TestQueuePaging(t *testing.T) {
	e := newEnv(t)
	const n = 612
	var want []string
	for i := range n {
		r := e.request(func(r *keydesk.Request) { r.Label = fmt.Sprintf("bulk-%03d", i) }, "")
		want = append(want, r.ID)
	}
	// One request changes place: it stands out, so it heads the queue.
	hot := e.request(func(r *keydesk.Request) { r.Flags = []keydesk.Flag{keydesk.FlagDMARCNotPassed} }, "")
	want = append([]string{hot.ID}, want...)
	b := e.login("alice")
	var got []string
	var pages []string
	path := "/queue"
	for path != "" {
		code, _, page := b.get(path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		ids := rowIDs(page)
		if len(ids) != queuePage && len(got)+len(ids) != len(want) {
			t.Fatalf("page %d has %d rows", len(pages)+1, len(ids))
		}
		if !strings.Contains(page, fmt.Sprintf("%d–%d of %d", len(got)+1, len(got)+len(ids), len(want))) {
			t.Fatalf("page %d does not say which rows it shows", len(pages)+1)
		}
		got = append(got, ids...)
		pages = append(pages, path)
		path = pagerLink(page, "next")
	}
	if len(pages) != 7 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, %d rows; first %v; want 7 pages of the %d requests in order", len(pages), len(got), got[:min(3, len(got))], len(want))
	}
	// Back from the last page: Previous shows the page before it.
	_, _, last := b.get(pages[6])
	prev := pagerLink(last, "prev")
	if prev == "" {
		t.Fatal("the last page has no Previous link")
	}
	_, _, page := b.get(prev)
	if ids := rowIDs(page); !slices.Equal(ids, want[500:600]) {
		t.Fatalf("Previous from the last page shows %d rows from %v, want rows 501-600", len(ids), ids[:1])
	}
	if pagerLink(page, "prev") == "" || pagerLink(page, "next") == "" {
		t.Fatal("a middle page lacks Previous or Next")
	}
	// A request approved meanwhile leaves the view; the next page goes on
	// after the same place rather than skipping a request.
	if code, _ := e.api("alice", "POST", "/api/v1/requests/"+want[150]+"/approve", nil); code != http.StatusOK {
		t.Fatalf("approve: %d", code)
	}
	_, _, page = b.get(pages[1])
	if ids := rowIDs(page); len(ids) != 100 || ids[0] != want[100] || ids[99] != want[200] {
		t.Fatalf("page 2 after one of its rows left: %d rows, %s … %s", len(ids), ids[0], ids[len(ids)-1])
	}
	if code, _, _ := b.get("/queue?after=bm90IGEgY3Vyc29y"); code != http.StatusBadRequest {
		t.Fatalf("a forged cursor: %d, want 400", code)
	}
}

// TestQueueViewsAndSearch: the tabs and their counts, "Waiting for me"
// per person, and the search box.
func TestQueueViewsAndSearch(t *testing.T) {
	e := newEnv(t)
	mine := e.request(func(r *keydesk.Request) { r.Label = "nobodys-request" }, "")
	bobs := e.request(func(r *keydesk.Request) { r.Label = "bobs-request"; r.Assignee = "bob" }, "")
	alices := e.request(func(r *keydesk.Request) { r.Label = "alices-request"; r.Assignee = "alice" }, "")
	approvedByAlice := e.request(func(r *keydesk.Request) {
		r.Label, r.Environment = "half-approved", keydesk.Production
		r.Approvals = []keydesk.Approval{{By: "alice", At: e.clock.Now()}}
	}, "")
	done := e.request(func(r *keydesk.Request) {
		r.Label = "closed-one"
		r.State = keydesk.StateDelivered
		r.Requester = "ops@acme.example"
	}, "")
	blocked := e.request(func(r *keydesk.Request) {
		r.Label = "blocked-one"
		r.State = keydesk.StateBlocked
		r.Assignee = "alice"
	}, "")

	b := e.login("alice")
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"waiting for alice", "/queue", []string{mine.ID, alices.ID}},
		{"all open", "/queue?view=open", []string{mine.ID, bobs.ID, alices.ID, approvedByAlice.ID, blocked.ID}},
		{"assigned to alice", "/queue?view=assigned", []string{alices.ID, blocked.ID}},
		{"everything, delivered", "/queue?view=all&state=delivered", []string{done.ID}},
		{"search by label, any state", "/queue?q=ONE", []string{done.ID, blocked.ID}},
		{"search by sender", "/queue?q=ops%40acme", []string{done.ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, page := b.get(tc.path)
			if code != http.StatusOK {
				t.Fatalf("%d", code)
			}
			got := rowIDs(page)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("rows %v, want %v", got, want)
			}
		})
	}
	_, _, page := b.get("/queue")
	for _, tab := range []string{`data-view="mine" class="on" aria-current="page">Waiting for me <b>2</b>`, `data-view="open">All open <b>5</b>`,
		`data-view="assigned">Assigned to me <b>2</b>`, `data-view="all">Everything <b>6</b>`} {
		if !strings.Contains(page, tab) {
			t.Errorf("queue page lacks the tab %s", tab)
		}
	}
	// Bob waits on his own and the unassigned one, and on the production
	// request alice approved first (four eyes).
	_, _, page = e.login("bob").get("/queue")
	if got, want := rowIDs(page), []string{mine.ID, bobs.ID, approvedByAlice.ID}; !slices.Equal(got, want) {
		t.Errorf("waiting for bob: %v, want %v", got, want)
	}

	// An exact ID, in any case, opens the request.
	code, h, _ := b.get("/queue?q=" + strings.ToLower(done.ID))
	if code != http.StatusSeeOther || h.Get("Location") != "/requests/"+done.ID {
		t.Fatalf("search for an exact ID: %d %s", code, h.Get("Location"))
	}
	// A partner's name matches, and the row says why.
	_, _, page = b.get("/queue?q=" + url.QueryEscape("acme capital"))
	if len(rowIDs(page)) != 6 || !strings.Contains(page, "matched partner Acme Capital") {
		t.Fatalf("search by partner name: %d rows, says why: %v", len(rowIDs(page)), strings.Contains(page, "matched partner"))
	}
	if code, _, _ := b.get("/queue?q=" + strings.Repeat("x", maxSearch+1)); code != http.StatusBadRequest {
		t.Fatalf("an over-long search: %d, want 400", code)
	}
}

// TestApproveOffered: wherever Approve is not offered the page says why,
// and the action refuses it with the same decision; where it is offered,
// the action goes through.
func TestApproveOffered(t *testing.T) {
	e := newEnv(t)
	browsers := map[string]*browser{"alice": e.login("alice"), "viv": e.login("viv")}
	for _, tc := range []struct {
		name   string
		user   string
		mod    func(r *keydesk.Request)
		reason string // "": offered
		code   string // the action's error code
	}{
		{"a clean request", "alice", nil, "", ""},
		{"unknown sender", "alice", func(r *keydesk.Request) { r.Partner = ""; r.Flags = []keydesk.Flag{keydesk.FlagUnknownSender} },
			"unknown sender: reject or cancel it", "unknown_partner"},
		{"missing fields", "alice", func(r *keydesk.Request) { r.Environment, r.Label = "", "" }, "no environment, label: correct it first", "incomplete"},
		{"a proposed change waits", "alice", func(r *keydesk.Request) {
			r.Proposal = &keydesk.Proposal{ID: "p1", From: "dev@acme.example", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}}
		}, "a proposed change waits for a decision", "proposal_pending"},
		{"already approved by the viewer", "alice", func(r *keydesk.Request) {
			r.Environment = keydesk.Production
			r.Approvals = []keydesk.Approval{{By: "alice"}}
		}, "you approved it: four eyes needs someone else", "already_approved"},
		{"widened by the viewer", "alice", func(r *keydesk.Request) { r.WidenedBy = []string{"alice"} }, "you widened it: another approver must approve", "own_widening"},
		{"widened by someone else", "alice", func(r *keydesk.Request) { r.WidenedBy = []string{"bob"} }, "", ""},
		{"a viewer", "viv", nil, "approving needs the approver role", "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(tc.mod, "")
			b := browsers[tc.user]
			_, _, page := b.get("/requests/" + r.ID)
			_, _, queue := b.get("/queue?view=all&q=" + url.QueryEscape(r.Label))
			row := queue[strings.Index(queue, `data-id="`+r.ID+`"`):]
			row = row[:strings.Index(row, "</tr>")]
			offered := strings.Contains(page, `action="/requests/`+r.ID+`/approve"`)
			inRow := strings.Contains(row, `action="/requests/`+r.ID+`/approve"`)
			if offered != (tc.reason == "") || inRow != offered {
				t.Fatalf("Approve offered on the page %v, in the queue row %v; want %v", offered, inRow, tc.reason == "")
			}
			if tc.reason != "" && (!strings.Contains(page, "is not offered: "+tc.reason+".") || !strings.Contains(row, tc.reason)) {
				t.Fatalf("the reason %q is not shown on the page and the row", tc.reason)
			}
			code, out := e.api(tc.user, "POST", "/api/v1/requests/"+r.ID+"/approve", nil)
			if tc.reason == "" {
				if code != http.StatusOK {
					t.Fatalf("offered, but the action answers %d %v", code, out)
				}
				return
			}
			if code < 400 || out["code"] != tc.code {
				t.Fatalf("not offered, and the action answers %d %v; want code %s", code, out, tc.code)
			}
		})
	}
}

// TestAgeOnQueue: ages past review.age_target are amber, past twice it
// red, in words with the exact time as title.
func TestAgeOnQueue(t *testing.T) {
	e := newEnvOn(t, queuetest.Open(t), func(o *Options) { o.AgeTarget = time.Hour })
	old := e.request(func(r *keydesk.Request) { r.Label = "old" }, "")
	e.clock.Add(50 * time.Minute)
	mid := e.request(func(r *keydesk.Request) { r.Label = "mid" }, "")
	e.clock.Add(65 * time.Minute)
	fresh := e.request(func(r *keydesk.Request) { r.Label = "fresh" }, "")
	e.clock.Add(5 * time.Minute)
	_, _, page := e.login("alice").get("/queue")
	for _, tc := range []struct {
		r    *keydesk.Request
		want string
	}{
		{old, `<td class="num age age-late" title="received 2026-11-27 09:00:00Z">2 h</td>`},
		{mid, `<td class="num age age-over" title="received 2026-11-27 09:50:01Z">1 h 10 min</td>`},
		{fresh, `<td class="num age " title="received 2026-11-27 10:55:02Z">5 min</td>`},
	} {
		if !strings.Contains(page, tc.want) {
			t.Errorf("%s: the page lacks %s", tc.r.Label, tc.want)
		}
	}
}
