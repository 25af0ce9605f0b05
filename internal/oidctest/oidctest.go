// Package oidctest runs a real OpenID Provider in process for tests: the
// op package of zitadel/oidc over its example in-memory storage, with
// keydesk's test people (each with groups), one confidential web client,
// a plain login page and a switch that makes the provider look down.
//
// It is imported by tests only, so no binary carries it.
package oidctest

import (
	"context"
	"crypto/rand"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Person is one account at the provider.
type Person struct {
	// ID is the subject (sub) the provider gives them.
	ID       string
	Username string
	Password string
	Email    string
	// EmailUnverified makes email_verified false.
	EmailUnverified bool
	// Groups go in the groups claim (Options.GroupsClaim).
	Groups []string
}

// Options configure a Provider.
type Options struct {
	// ClientID and ClientSecret of the one client; default keydesk and
	// keydesk-secret.
	ClientID, ClientSecret string
	People                 []Person
	// GroupsClaim is where the groups go: a claim name, or a dotted path
	// for a nested one (realm_access.roles). Default groups.
	GroupsClaim string
	// GroupsInUserinfoOnly leaves the groups out of the ID token, as
	// providers do with large claims: only userinfo answers them.
	GroupsInUserinfoOnly bool
}

// Provider is a running OpenID Provider.
type Provider struct {
	// Issuer is its issuer URL, http://127.0.0.1:PORT.
	Issuer string
	o      Options
	st     *store
	down   atomic.Bool

	mu        sync.Mutex
	redirects []string
}

// Start runs a provider until the test ends.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID = "keydesk"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "keydesk-secret"
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = "groups"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Issuer: "http://" + ln.Addr().String(), o: o}
	people := map[string]*storage.User{}
	for _, pe := range o.People {
		people[pe.ID] = &storage.User{
			ID: pe.ID, Username: pe.Username, Password: pe.Password, FirstName: pe.Username, LastName: "Test",
			Email: pe.Email, EmailVerified: !pe.EmailUnverified, PreferredLanguage: language.English,
		}
	}
	p.st = &store{Storage: storage.NewStorageWithClients(userStore(people), map[string]*storage.Client{}), p: p}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		t.Fatal(err)
	}
	prov, err := op.NewProvider(&op.Config{CryptoKey: key, CodeMethodS256: true, AuthMethodPost: true,
		SupportedUILocales: []language.Tag{language.English}},
		p.st, op.StaticIssuer(p.Issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	login := &loginPage{st: p.st, callback: op.AuthCallbackURL(prov)}
	mux.Handle("/login/username", op.NewIssuerInterceptor(prov.IssuerFromRequest).Handler(login))
	mux.Handle("/", prov)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "identity provider down for the test", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return p
}

// SetRedirectURIs sets the client's registered redirect URIs (known once
// the relying party listens).
func (p *Provider) SetRedirectURIs(uris ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirects = append([]string(nil), uris...)
}

// SetDown makes every request answer 503 (true) or be served (false).
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// ClientID and ClientSecret are the client's credentials.
func (p *Provider) ClientID() string     { return p.o.ClientID }
func (p *Provider) ClientSecret() string { return p.o.ClientSecret }

// store is the example storage with this package's client and the
// groups claim.
type store struct {
	*storage.Storage
	p *Provider
}

// client is a confidential web client whose ID token carries the
// userinfo claims (email, groups), as the big providers' do.
type client struct{ *storage.Client }

func (client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (client) IsScopeAllowed(scope string) bool     { return scope == "groups" }

func (s *store) client(id string) (op.Client, error) {
	if id != s.p.o.ClientID {
		return nil, fmt.Errorf("client %q not found", id)
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return client{storage.WebClient(id, s.p.o.ClientSecret, s.p.redirects...)}, nil
}

func (s *store) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	return s.client(id)
}

func (s *store) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if _, err := s.client(id); err != nil {
		return err
	}
	if secret != s.p.o.ClientSecret {
		return fmt.Errorf("invalid client secret")
	}
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *store) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, tr op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, tr, scopes); err != nil {
		return err
	}
	if !s.p.o.GroupsInUserinfoOnly {
		s.addGroups(ui, tr.GetSubject())
	}
	return nil
}

// SetUserinfoFromToken answers userinfo.
func (s *store) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(ui, ui.Subject)
	return nil
}

func (s *store) addGroups(ui *oidc.UserInfo, sub string) {
	for _, pe := range s.p.o.People {
		if pe.ID != sub {
			continue
		}
		if pe.EmailUnverified {
			// The storage leaves a false email_verified out.
			ui.AppendClaims("email_verified", false)
		}
		if pe.Groups == nil {
			continue
		}
		groups := append([]string(nil), pe.Groups...)
		name, rest, nested := strings.Cut(s.p.o.GroupsClaim, ".")
		if nested {
			ui.AppendClaims(name, map[string]any{rest: groups})
		} else {
			ui.AppendClaims(name, groups)
		}
	}
}

// userStore is the provider's people.
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User { return u[id] }
func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (userStore) ExampleClientID() string { return "service" }

// loginPage is the provider's sign-in form.
type loginPage struct {
	st       *store
	callback func(context.Context, string) string
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Test identity provider</title></head><body>
<h1>Test identity provider</h1>
{{if .Error}}<p id="error">{{.Error}}</p>{{end}}
<form method="post" action="/login/username">
<input type="hidden" name="id" value="{{.ID}}">
<label>Username <input id="username" name="username"></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="submit" type="submit">Sign in</button>
</form></body></html>`))

func (l *loginPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodGet {
		_ = loginTmpl.Execute(w, map[string]string{"ID": r.FormValue("authRequestID")})
		return
	}
	id := r.FormValue("id")
	if err := l.st.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginTmpl.Execute(w, map[string]string{"ID": id, "Error": err.Error()})
		return
	}
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
}

var authRequestRE = regexp.MustCompile(`name="id" value="([^"]+)"`)

// SignIn walks the provider's side of a sign-in as a browser would: from
// the authorization URL the relying party sent it to, through the login
// form as user, to the callback URL on the relying party, which it
// returns without following. c must keep cookies and not follow
// redirects.
func (p *Provider) SignIn(c *http.Client, authURL, user, password string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", err
	}
	var page string
	for range 5 {
		code, loc, body, err := send(c, "GET", u.String(), nil)
		if err != nil {
			return "", err
		}
		if code == http.StatusOK {
			page = body
			break
		}
		if code != http.StatusFound && code != http.StatusSeeOther {
			return "", fmt.Errorf("oidctest: provider at %s: %d %s", u, code, body)
		}
		if u, err = u.Parse(loc); err != nil {
			return "", err
		}
	}
	m := authRequestRE.FindStringSubmatch(page)
	if m == nil {
		return "", fmt.Errorf("oidctest: no login form at %s: %s", u, page)
	}
	login, _ := u.Parse("/login/username")
	code, loc, body, err := send(c, "POST", login.String(), url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	if err != nil || code != http.StatusFound {
		return "", fmt.Errorf("oidctest: sign in as %s: %d %v %s", user, code, err, body)
	}
	// The provider's own callback issues the code.
	next, _ := u.Parse(loc)
	code, loc, body, err = send(c, "GET", next.String(), nil)
	if err != nil || (code != http.StatusFound && code != http.StatusSeeOther) {
		return "", fmt.Errorf("oidctest: provider callback: %d %v %s", code, err, body)
	}
	return loc, nil
}

func send(c *http.Client, method, u string, form url.Values) (int, string, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return 0, "", "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("Location"), string(b), err
}
