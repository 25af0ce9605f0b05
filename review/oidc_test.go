package review

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/oidctest"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/review/users"
	"github.com/chromedp/chromedp"
)

// The people of the test identity provider: two approvers, an admin who
// is also in the viewers' group, and one whose groups give no role.
var idpPeople = []oidctest.Person{
	{ID: "sub-alice", Username: "alice", Password: "alice-idp-pw", Email: "alice@corp.example", Groups: []string{"staff", "keydesk-approvers"}},
	{ID: "sub-bob", Username: "bob", Password: "bob-idp-pw", Email: "bob@corp.example", Groups: []string{"keydesk-approvers"}},
	{ID: "sub-adam", Username: "adam", Password: "adam-idp-pw", Email: "adam@corp.example", Groups: []string{"keydesk-viewers", "keydesk-admins"}},
	{ID: "sub-eve", Username: "eve", Password: "eve-idp-pw", Email: "eve@corp.example", Groups: []string{"marketing"}},
	{ID: "sub-una", Username: "una", Password: "una-idp-pw", Email: "una@corp.example", EmailUnverified: true, Groups: []string{"keydesk-approvers"}},
}

func idpPassword(user string) string {
	for _, p := range idpPeople {
		if p.Username == user {
			return p.Password
		}
	}
	return ""
}

// ssoEnv is a review server whose single sign-on goes to a real
// in-process OpenID Provider; mod changes the review options further.
func ssoEnv(t testing.TB, po oidctest.Options, mod func(*Options)) (*env, *oidctest.Provider) {
	t.Helper()
	if po.People == nil {
		po.People = idpPeople
	}
	idp := oidctest.Start(t, po)
	claim := po.GroupsClaim
	e := newEnvOn(t, queuetest.Open(t), func(o *Options) {
		o.OIDC = &OIDCOptions{
			Issuer: idp.Issuer, ClientID: idp.ClientID(), ClientSecret: keydesk.NewSecret([]byte(idp.ClientSecret())),
			RolesClaim: claim, DiscoveryTimeout: 5 * time.Second,
			Roles: map[users.Role][]string{
				users.Viewer: {"keydesk-viewers"}, users.Approver: {"keydesk-approvers"}, users.Admin: {"keydesk-admins"},
			},
		}
		if mod != nil {
			mod(o)
		}
	})
	// The callback's address is known once the test server listens; no
	// request has been served yet.
	e.srv.rp.o.RedirectURL = e.ts.URL + "/login/oidc/callback"
	idp.SetRedirectURIs(e.srv.rp.o.RedirectURL)
	e.idp = idp
	return e, idp
}

// fetch sends one request to any host with the browser's cookies, not
// following redirects.
func (b *browser) fetch(method, u string, form url.Values) (int, http.Header, string) {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return b.do(req)
}

// toIdP begins a sign-in at path (/login/oidc?...) and returns the
// provider's authorization URL it redirects to.
func (b *browser) toIdP(path string) string {
	b.e.t.Helper()
	code, h, body := b.get(path)
	if code != http.StatusSeeOther {
		b.e.t.Fatalf("GET %s: %d, want a redirect to the provider\n%s", path, code, body)
	}
	return h.Get("Location")
}

// atIdP follows the authorization URL to the provider's login form,
// signs in as user and returns the callback URL the provider sends the
// browser back to (not yet followed).
func (b *browser) atIdP(authURL, user string) string {
	b.e.t.Helper()
	cb, err := b.e.idp.SignIn(b.c, authURL, user, idpPassword(user))
	if err != nil {
		b.e.t.Fatal(err)
	}
	return cb
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// ssoLogin signs in through the provider as user and lands on next.
func (e *env) ssoLogin(user, next string) *browser {
	e.t.Helper()
	b := e.browser()
	cb := b.atIdP(b.toIdP("/login/oidc?next="+url.QueryEscape(next)), user)
	code, _, body := b.fetch("GET", cb, nil)
	if code != http.StatusOK || !strings.Contains(body, `http-equiv="refresh" content="0; url=`+next+`"`) {
		e.t.Fatalf("callback for %s: %d\n%s", user, code, body)
	}
	if code, _, body := b.get(next); code != http.StatusOK {
		e.t.Fatalf("%s after signing in as %s: %d\n%s", next, user, code, body)
	}
	return b
}

// loginEvents are the staff audit events with action, of anyone.
func (e *env) loginEvents(action string) []keydesk.Event {
	e.t.Helper()
	e.srv.flushLogins(context.Background(), true)
	entries, err := e.q.Audit(context.Background(), queue.AuditQuery{Kind: "staff"})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []keydesk.Event
	for _, en := range entries {
		if en.Event.Action == action {
			out = append(out, en.Event)
		}
	}
	return out
}

// TestSSORoles: a person's groups, read from the configured claim of the
// ID token (or of userinfo when the ID token lacks it, as a string or a
// list, at a dotted path), give the highest role they map to; a person
// whose groups map to none gets a 403 that says to ask an admin, an audit
// event naming them, and no session.
func TestSSORoles(t *testing.T) {
	tests := []struct {
		name string
		po   oidctest.Options
	}{
		{"groups in the ID token", oidctest.Options{}},
		{"groups only at userinfo", oidctest.Options{GroupsInUserinfoOnly: true}},
		{"Keycloak realm roles", oidctest.Options{GroupsClaim: "realm_access.roles"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := ssoEnv(t, tc.po, nil)
			for user, want := range map[string]string{"alice": "approver", "adam": "admin"} {
				b := e.ssoLogin(user, "/queue")
				_, _, body := b.get("/queue")
				if !strings.Contains(body, `<span class="user">`+user+`@corp.example</span> <span class="role role-`+want+`">`) {
					t.Fatalf("%s: the queue does not show %s@corp.example as %s:\n%s", user, user, want, body)
				}
			}
			b := e.browser()
			cb := b.atIdP(b.toIdP("/login/oidc?next=/queue"), "eve")
			code, _, body := b.fetch("GET", cb, nil)
			if code != http.StatusForbidden || !strings.Contains(body, "none of your groups at the identity provider gives a role in keydesk. Ask an admin to add you to one of: keydesk-viewers, keydesk-approvers, keydesk-admins.") {
				t.Fatalf("eve: %d\n%s", code, body)
			}
			if code, h, _ := b.get("/queue"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
				t.Fatalf("eve has a session: GET /queue = %d %s", code, h.Get("Location"))
			}
			ev := e.loginEvents("login-refused")
			if len(ev) != 1 || ev[0].Actor != "eve@corp.example" || ev[0].Subject != "sub-eve" {
				t.Fatalf("refused sign-in in the audit trail: %+v", ev)
			}
			logins := e.loginEvents("login")
			if len(logins) != 2 || logins[0].Subject == "" || !strings.Contains(logins[0].Change, "single sign-on as") {
				t.Fatalf("sign-ins in the audit trail: %+v", logins)
			}
		})
	}
}

// TestSSOUnverifiedEmailRefused: four eyes counts people by email, so an
// email the provider has not verified gets no session.
func TestSSOUnverifiedEmailRefused(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, nil)
	b := e.browser()
	code, _, body := b.fetch("GET", b.atIdP(b.toIdP("/login/oidc"), "una"), nil)
	if code != http.StatusForbidden || !strings.Contains(body, "Your email at the identity provider is not verified") {
		t.Fatalf("una: %d\n%s", code, body)
	}
}

// TestSSOCallbackRefused: the provider's answer is taken once, in the
// browser that began the login, within its time: a replayed state, an
// unknown one, an answer without the login cookie, an answer carried to
// another browser (login CSRF), and a code from another login (PKCE) are
// all refused, and none makes a session.
func TestSSOCallbackRefused(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, nil)
	refused := func(t *testing.T, b *browser, cb, want string) {
		t.Helper()
		code, _, body := b.fetch("GET", cb, nil)
		if code < 400 || !strings.Contains(body, want) {
			t.Fatalf("callback: %d, want a refusal saying %q\n%s", code, want, body)
		}
		if code, _, _ := b.get("/queue"); code != http.StatusSeeOther {
			t.Fatalf("a refused callback made a session: GET /queue = %d", code)
		}
	}
	t.Run("replayed state", func(t *testing.T) {
		b := e.browser()
		cb := b.atIdP(b.toIdP("/login/oidc"), "alice")
		if code, _, body := b.fetch("GET", cb, nil); code != http.StatusOK {
			t.Fatalf("first use: %d\n%s", code, body)
		}
		b.get("/queue")
		if code, _, _ := b.post("/logout", nil); code != http.StatusSeeOther {
			t.Fatalf("logout: %d", code)
		}
		refused(t, b, cb, "This sign-in is unknown, already used or expired.")
	})
	t.Run("unknown state", func(t *testing.T) {
		b := e.browser()
		cb := mustURL(b.atIdP(b.toIdP("/login/oidc"), "alice"))
		q := cb.Query()
		q.Set("state", "forged-"+q.Get("state"))
		cb.RawQuery = q.Encode()
		refused(t, b, cb.String(), "This sign-in is unknown, already used or expired.")
	})
	t.Run("no login cookie", func(t *testing.T) {
		b := e.browser()
		cb := b.atIdP(b.toIdP("/login/oidc"), "alice")
		jar, _ := cookiejar.New(nil)
		b.c.Jar = jar
		refused(t, b, cb, "This sign-in was not started in this browser")
	})
	t.Run("answer carried to another browser", func(t *testing.T) {
		attacker, victim := e.browser(), e.browser()
		cb := attacker.atIdP(attacker.toIdP("/login/oidc"), "eve")
		victim.toIdP("/login/oidc") // the victim has a login cookie of their own
		refused(t, victim, cb, "This sign-in was not started in this browser")
	})
	t.Run("code of another login", func(t *testing.T) {
		a, b := e.browser(), e.browser()
		cbA := mustURL(a.atIdP(a.toIdP("/login/oidc"), "alice"))
		cbB := mustURL(b.atIdP(b.toIdP("/login/oidc"), "bob"))
		// a's state and cookie, b's code: the code was issued for b's
		// PKCE challenge, which a's verifier does not answer.
		q := cbA.Query()
		q.Set("code", cbB.Query().Get("code"))
		cbA.RawQuery = q.Encode()
		refused(t, a, cbA.String(), "The identity provider refused to complete the sign-in.")
	})
	t.Run("expired login", func(t *testing.T) {
		b := e.browser()
		cb := b.atIdP(b.toIdP("/login/oidc"), "alice")
		e.clock.Add(11 * time.Minute)
		refused(t, b, cb, "This sign-in took longer than 10 minutes.")
	})
}

// TestSSOPendingLoginShared: the pending login lives in NATS, so a second
// review instance on the same cluster finishes a login the first began.
func TestSSOPendingLoginShared(t *testing.T) {
	e, idp := ssoEnv(t, oidctest.Options{}, nil)
	other := newEnvOn(t, e.q, func(o *Options) {
		oo := e.srv.rp.o
		o.OIDC = &oo
		o.Now = e.clock.Now
	})
	_ = idp
	b := e.browser()
	cb := mustURL(b.atIdP(b.toIdP("/login/oidc"), "alice"))
	ob := other.browser()
	ob.c.Jar = b.c.Jar
	// The browser's cookies are the first instance's host's; the second
	// is another port of the same host, where cookies are shared too.
	code, _, body := ob.fetch("GET", other.ts.URL+cb.Path+"?"+cb.RawQuery, nil)
	if code != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("second instance finishing the login: %d\n%s", code, body)
	}
}

// productionRequest is a request under four eyes.
func (e *env) productionRequest() *keydesk.Request {
	return e.request(func(r *keydesk.Request) {
		r.Environment, r.Label = keydesk.Production, "prod-trading"
		r.Flags = []keydesk.Flag{keydesk.FlagProduction}
	}, "")
}

// TestSSOFourEyesCountsPeople: a person approves once however they come:
// a second session of theirs, or an API token tied to them by person:,
// is refused the second approval; another person's makes it approved.
func TestSSOFourEyesCountsPeople(t *testing.T) {
	var tok string
	e, _ := ssoEnv(t, oidctest.Options{}, func(o *Options) {
		base := o.Users()
		var y strings.Builder
		y.WriteString("users:\n")
		_, t2, _ := users.NewCredentials()
		tok = t2
		for _, u := range append(base.All(), users.User{Name: "ci-alice", Role: users.Approver, TokenSHA256: users.TokenDigest(tok), Person: "Alice@corp.example"}) {
			for l := range strings.SplitSeq(strings.TrimRight(users.Entry(u), "\n"), "\n") {
				y.WriteString("  " + l + "\n")
			}
		}
		set, err := users.Parse("users.yaml", []byte(y.String()))
		if err != nil {
			t.Fatal(err)
		}
		o.Users = func() *users.Set { return set }
	})
	e.tokens["ci-alice"] = tok
	r := e.productionRequest()
	page := "/requests/" + r.ID
	a1 := e.ssoLogin("alice", page)
	if code, h, body := a1.post(page+"/approve", url.Values{"revision": {revOf(e, r.ID)}}); code != http.StatusSeeOther {
		t.Fatalf("first approval: %d %s\n%s", code, h.Get("Location"), body)
	}
	a2 := e.ssoLogin("alice", page)
	_, _, body := a2.get(page)
	if !strings.Contains(body, "you approved it: four eyes needs someone else") {
		t.Fatalf("alice's second session is offered Approve:\n%s", body)
	}
	code, _, body := a2.post(page+"/approve", url.Values{"revision": {revOf(e, r.ID)}})
	if code != http.StatusConflict || !strings.Contains(body, "you have already approved "+r.ID+" (as alice@corp.example)") {
		t.Fatalf("alice's second session approving: %d\n%s", code, body)
	}
	code, out := e.api("ci-alice", "POST", "/api/v1/requests/"+r.ID+"/approve", map[string]string{})
	if code != http.StatusConflict || out["code"] != "already_approved" {
		t.Fatalf("alice's tied token approving: %d %v", code, out)
	}
	if got := e.get(r.ID); got.State != keydesk.StatePendingReview || len(got.Approvals) != 1 || got.Approvals[0].Person != "alice@corp.example" {
		t.Fatalf("after alice's tries: %s %+v", got.State, got.Approvals)
	}
	b := e.ssoLogin("bob", page)
	if code, _, body := b.post(page+"/approve", url.Values{"revision": {revOf(e, r.ID)}}); code != http.StatusSeeOther {
		t.Fatalf("bob's approval: %d\n%s", code, body)
	}
	got := e.get(r.ID)
	if got.State != keydesk.StateApproved || got.LastEvent.Actor != "bob@corp.example" || got.LastEvent.Subject != "sub-bob" {
		t.Fatalf("after bob: %s, last event %+v", got.State, got.LastEvent)
	}
	// A note is a staff event of its own: it names the person with the
	// provider's subject too.
	if code, _, body := b.post(page+"/notes", url.Values{"text": {"called the partner back"}}); code != http.StatusSeeOther {
		t.Fatalf("bob's note: %d\n%s", code, body)
	}
	if notes := e.staffEvents(r.ID, "note"); len(notes) != 1 || notes[0].Actor != "bob@corp.example" || notes[0].Subject != "sub-bob" {
		t.Fatalf("the note in the audit trail: %+v", notes)
	}
	// The request's history names each person with the provider's subject.
	_, _, body = b.get(page)
	for _, who := range []string{"alice@corp.example <span class=\"muted small\" title=\"the identity provider's subject\">sub-alice</span>", ">sub-bob</span>"} {
		if !strings.Contains(body, who) {
			t.Fatalf("the history lacks %q:\n%s", who, body)
		}
	}
}

func revOf(e *env, id string) string { return strconv.FormatUint(e.get(id).Revision, 10) }

// TestSSOReauth: with reauth_after set, an approval by a person who
// signed in at the provider longer ago is refused with a link that sends
// them through the provider with prompt=login and max_age=0, back to the
// request; after that sign-in approving works.
func TestSSOReauth(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, func(o *Options) {
		o.OIDC.ReauthAfter = 30 * time.Minute
		o.SessionIdle = 2 * time.Hour
	})
	r := e.request(nil, "")
	page := "/requests/" + r.ID
	b := e.ssoLogin("alice", page)
	e.clock.Add(31 * time.Minute)
	_, _, body := b.get(page)
	link := `href="/login/oidc?reauth=1&amp;next=/requests/` + r.ID + `"`
	if !strings.Contains(body, link) || !strings.Contains(body, "your sign-in is older than 30m0s: sign in again to approve") {
		t.Fatalf("the request page offers no fresh sign-in:\n%s", body)
	}
	code, _, body := b.post(page+"/approve", url.Values{"revision": {revOf(e, r.ID)}})
	if code != http.StatusForbidden || !strings.Contains(body, "approving needs a fresh sign-in") {
		t.Fatalf("a stale sign-in approving: %d\n%s", code, body)
	}
	if st := e.get(r.ID).State; st != keydesk.StatePendingReview {
		t.Fatalf("state after a refused approval: %s", st)
	}
	auth := b.toIdP("/login/oidc?reauth=1&next=/requests/" + r.ID)
	q := mustURL(auth).Query()
	if q.Get("prompt") != "login" || q.Get("max_age") != "0" {
		t.Fatalf("the fresh sign-in does not ask the provider for one: %s", auth)
	}
	code, _, body = b.fetch("GET", b.atIdP(auth, "alice"), nil)
	if code != http.StatusOK || !strings.Contains(body, "url=/requests/"+r.ID) {
		t.Fatalf("fresh sign-in: %d\n%s", code, body)
	}
	b.get(page)
	if code, _, body := b.post(page+"/approve", url.Values{"revision": {revOf(e, r.ID)}}); code != http.StatusSeeOther {
		t.Fatalf("approving after the fresh sign-in: %d\n%s", code, body)
	}
	if st := e.get(r.ID).State; st != keydesk.StateApproved {
		t.Fatalf("state: %s", st)
	}
}

// TestSSOSessionEndsWithIDToken: when the ID token has ended, a page load
// goes back through the provider to the same page; a form says the
// sign-in expired and changes nothing.
func TestSSOSessionEndsWithIDToken(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, func(o *Options) { o.SessionIdle = 3 * time.Hour })
	r := e.request(nil, "")
	page := "/requests/" + r.ID
	b := e.ssoLogin("alice", page)
	form := b.csrf
	e.clock.Add(61 * time.Minute) // the test provider's ID tokens last an hour
	code, _, body := b.post(page+"/approve", url.Values{"revision": {revOf(e, r.ID)}, "csrf": {form}})
	if code != http.StatusUnauthorized || !strings.Contains(body, "Your sign-in has expired, so nothing was changed.") {
		t.Fatalf("POST after the ID token ended: %d\n%s", code, body)
	}
	if st := e.get(r.ID).State; st != keydesk.StatePendingReview {
		t.Fatalf("state: %s", st)
	}
	b = e.ssoLogin("alice", page)
	e.clock.Add(61 * time.Minute)
	code, h, _ := b.get(page)
	if code != http.StatusSeeOther || h.Get("Location") != "/login/oidc?next="+url.QueryEscape(page) {
		t.Fatalf("GET after the ID token ended: %d %s", code, h.Get("Location"))
	}
}

// TestSSOPasswordsOff: with review.local_login false the sign-in page
// shows only the single sign-on button and a correct password is refused.
func TestSSOPasswordsOff(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, func(o *Options) { o.PasswordLoginOff = true })
	b := e.browser()
	_, _, body := b.get("/login")
	if strings.Contains(body, `name="password"`) || !strings.Contains(body, `id="sso" href="/login/oidc?next=%2fqueue">Sign in with single sign-on</a>`) {
		t.Fatalf("login page:\n%s", body)
	}
	code, _, body := b.post("/login", url.Values{"username": {"alice"}, "password": {password("alice")}})
	if code != http.StatusForbidden || !strings.Contains(body, "Password sign-in is off here") {
		t.Fatalf("password sign-in: %d\n%s", code, body)
	}
	if code, _, _ := b.get("/queue"); code != http.StatusSeeOther {
		t.Fatalf("a refused password made a session: %d", code)
	}
	e.ssoLogin("bob", "/queue")
}

// TestSSOProviderDownAtStart: a provider that does not answer at start
// stops nothing: the sign-in page says single sign-on is unavailable and
// a break-glass password works; once the provider answers, the next
// single sign-on goes through.
func TestSSOProviderDownAtStart(t *testing.T) {
	idp := oidctest.Start(t, oidctest.Options{People: idpPeople})
	idp.SetDown(true)
	e := newEnvOn(t, queuetest.Open(t), func(o *Options) {
		o.OIDC = &OIDCOptions{Issuer: idp.Issuer, ClientID: idp.ClientID(), ClientSecret: keydesk.NewSecret([]byte(idp.ClientSecret())),
			Roles: map[users.Role][]string{users.Approver: {"keydesk-approvers"}}, DiscoveryTimeout: 5 * time.Second}
	})
	e.srv.rp.o.RedirectURL = e.ts.URL + "/login/oidc/callback"
	idp.SetRedirectURIs(e.srv.rp.o.RedirectURL)
	e.idp = idp
	if err := e.srv.Discover(context.Background()); err == nil {
		t.Fatal("discovery of a provider that is down succeeded")
	}
	b := e.browser()
	_, _, body := b.get("/login")
	if !strings.Contains(body, "Single sign-on is unavailable: the identity provider does not answer.") ||
		!strings.Contains(body, "a break-glass account can sign in with its password below") || !strings.Contains(body, `name="password"`) {
		t.Fatalf("login page with the provider down:\n%s", body)
	}
	if code, _, body := b.get("/login/oidc"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Single sign-on is unavailable") {
		t.Fatalf("single sign-on with the provider down: %d\n%s", code, body)
	}
	e.login("ada")
	idp.SetDown(false)
	e.ssoLogin("alice", "/queue")
}

// TestBrowserSSO drives single sign-on in a real headless Chromium: sign
// in through the provider's login page as approver A, approve a
// production request (four eyes: one of two), sign out; sign in as B and
// approve again: approved. A third person, whose groups map to no role,
// is refused with the page that says to ask an admin.
func TestBrowserSSO(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, nil)
	r := e.productionRequest()
	c := startChromium(t, e.ts.URL+"/requests/"+r.ID)
	ctx, shot, text := c.ctx, c.shot, c.text

	signIn := func(user string) {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(`a#sso`)),
			chromedp.Click(chromedp.CSS(`a#sso`)),
			chromedp.WaitVisible(chromedp.CSS(`input#username`)),
			chromedp.SendKeys(chromedp.CSS(`input#username`), user),
			chromedp.SendKeys(chromedp.CSS(`input#password`), idpPassword(user)),
			chromedp.Click(chromedp.CSS(`button#submit`)),
		); err != nil {
			loc, _ := chromedp.Run(c.ctx, chromedp.Location())
			html, _ := chromedp.Run(c.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("sign in as %s: %v at %s\n%s", user, err, loc, html)
		}
	}
	approve := func(user, wantNotice string) {
		t.Helper()
		signIn(user)
		if err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(`form[action$="/approve"] button`)),
			chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		); err != nil {
			t.Fatalf("approve as %s: %v", user, err)
		}
		if n := text(`p.notice`); !strings.Contains(n, wantNotice) {
			t.Fatalf("%s approving: notice %q, want %q", user, n, wantNotice)
		}
		if who := text(`header .who .user`); who != user+"@corp.example" {
			t.Fatalf("signed in as %q, want %s@corp.example", who, user)
		}
	}
	signOut := func() {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)),
			chromedp.WaitVisible(chromedp.CSS(`a#sso`)),
			chromedp.Navigate(e.ts.URL+"/requests/"+r.ID),
		); err != nil {
			t.Fatalf("sign out: %v", err)
		}
	}

	shot("sso-login.png")
	approve("alice", "Your approval is recorded: four eyes needs a second approver.")
	shot("sso-first-approval.png")
	signOut()
	approve("bob", "Approved.")
	if st := text(`h1 .state`); st != "approved" {
		t.Fatalf("state after the second person = %q", st)
	}
	got := e.get(r.ID)
	if len(got.Approvals) != 2 || got.Approvals[0].Person != "alice@corp.example" || got.Approvals[1].Person != "bob@corp.example" {
		t.Fatalf("approvals: %+v", got.Approvals)
	}
	signOut()
	signIn("eve")
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`p.error`))); err != nil {
		t.Fatalf("eve's refusal: %v", err)
	}
	if msg := text(`p.error`); !strings.Contains(msg, "none of your groups at the identity provider gives a role in keydesk. Ask an admin") {
		t.Fatalf("eve sees %q", msg)
	}
	shot("sso-no-role.png")
	if err := chromedp.Do(ctx, chromedp.Navigate(e.ts.URL+"/queue"), chromedp.WaitVisible(chromedp.CSS(`a#sso`))); err != nil {
		t.Fatalf("eve is signed in: %v", err)
	}
}

// TestSSOStartsBounded: each sign-in begun writes a pending login, so one
// address may begin 30 at once and then one a second.
func TestSSOStartsBounded(t *testing.T) {
	e, _ := ssoEnv(t, oidctest.Options{}, nil)
	b := e.browser()
	for i := range 30 {
		if code, _, body := b.get("/login/oidc"); code != http.StatusSeeOther {
			t.Fatalf("start %d: %d\n%s", i+1, code, body)
		}
	}
	code, h, body := b.get("/login/oidc")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, "Too many sign-in attempts from this address") {
		t.Fatalf("start 31: %d\n%s", code, body)
	}
	e.clock.Add(2 * time.Second)
	if code, _, _ := b.get("/login/oidc"); code != http.StatusSeeOther {
		t.Fatalf("a start after the wait: %d", code)
	}
	// The pending logins of abandoned starts are swept once expired.
	e.clock.Add(loginTTL + time.Minute)
	if _, err := e.srv.sweepSessions(context.Background()); err != nil {
		t.Fatal(err)
	}
	left, err := e.srv.pendingLogins().Scan(context.Background(), oidcPrefix)
	if err != nil || len(left) != 0 {
		t.Fatalf("pending logins after the sweep: %d, %v", len(left), err)
	}
}
