package review

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/review/users"
)

// Single sign-on is an OpenID Connect relying party: the authorization
// code flow with PKCE (S256), state and nonce.
//
//   - The pending login (state → nonce, next page, expiry; one use) is in
//     the sessions bucket under oidcPrefix, keyed by the state's SHA-256,
//     so any review instance behind a load balancer can finish a login
//     another began.
//   - It is bound to the browser that began it by a short-lived cookie
//     (SameSite=Lax: the provider's redirect back is a cross-site
//     navigation): the record holds the cookie's digest, and the PKCE
//     verifier is derived from the cookie and the state, never stored. A
//     code and state handed to someone else's browser (login CSRF) are
//     refused, and a bucket dump yields no verifier.
//   - No access or refresh token is kept: the ID token is verified
//     (issuer, audience, expiry, nonce), its claims are read, and the
//     session ends when the ID token does.

// OIDCOptions configure single sign-on (review.oidc).
type OIDCOptions struct {
	// Issuer is the identity provider's issuer URL.
	Issuer string
	// ClientID and ClientSecret are keydesk's client at the provider.
	ClientID     string
	ClientSecret keydesk.Secret
	// RedirectURL is this UI's /login/oidc/callback as the provider knows it.
	RedirectURL string
	// Scopes asked for; default openid, email, profile.
	Scopes []string
	// RolesClaim names the claim (a dotted path for a nested one) listing
	// the person's groups; default groups.
	RolesClaim string
	// Roles maps each role to the groups that give it.
	Roles map[users.Role][]string
	// ReauthAfter: an approval needs a sign-in at the provider newer than
	// this. 0: never asks.
	ReauthAfter time.Duration
	// DisplayName is the button's words.
	DisplayName string
	// HTTPClient talks to the provider; nil: one with a 10s timeout.
	HTTPClient *http.Client
	// DiscoveryTimeout bounds the fetch of the discovery document; default 10s.
	DiscoveryTimeout time.Duration
}

const (
	// oidcPrefix keys pending logins in the sessions bucket.
	oidcPrefix = "oidc."
	// loginTTL is how long a person has at the provider.
	loginTTL = 10 * time.Minute
	// reauthParam asks /login/oidc for a fresh sign-in (prompt=login).
	reauthParam = "reauth"
)

// pendingLogin is a login begun and not yet finished.
type pendingLogin struct {
	// Browser is the SHA-256 of the binding cookie.
	Browser string    `json:"browser"`
	Nonce   string    `json:"nonce"`
	Next    string    `json:"next"`
	Expires time.Time `json:"expires"`
	Reauth  bool      `json:"reauth,omitempty"`
}

// relyingParty holds the provider's discovered configuration, fetched on
// first use and again after a failure, so that a provider down at start
// stops neither keydesk nor the break-glass accounts.
type relyingParty struct {
	o OIDCOptions

	mu       sync.Mutex
	provider *oidc.Provider
	lastErr  error
}

func newRelyingParty(o OIDCOptions) *relyingParty {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.DiscoveryTimeout <= 0 {
		o.DiscoveryTimeout = 10 * time.Second
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	if o.RolesClaim == "" {
		o.RolesClaim = "groups"
	}
	if o.DisplayName == "" {
		o.DisplayName = "Sign in with single sign-on"
	}
	return &relyingParty{o: o}
}

// ErrProviderUnavailable is returned while the identity provider's
// discovery document cannot be fetched.
var ErrProviderUnavailable = errors.New("review: the identity provider is unavailable")

func (rp *relyingParty) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, rp.o.HTTPClient)
}

// discover returns the provider, fetching its discovery document if no
// earlier call succeeded.
func (rp *relyingParty) discover(ctx context.Context) (*oidc.Provider, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.provider != nil {
		return rp.provider, nil
	}
	dctx, cancel := context.WithTimeout(ctx, rp.o.DiscoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(rp.ctx(dctx), rp.o.Issuer)
	if err != nil {
		rp.lastErr = err
		return nil, fmt.Errorf("%w: discovery of %s: %w", ErrProviderUnavailable, rp.o.Issuer, err)
	}
	rp.provider, rp.lastErr = p, nil
	return p, nil
}

// down reports whether the last discovery failed (and none succeeded).
func (rp *relyingParty) down() bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.provider == nil && rp.lastErr != nil
}

func (rp *relyingParty) oauth2(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID: rp.o.ClientID, ClientSecret: rp.o.ClientSecret.Reveal(),
		RedirectURL: rp.o.RedirectURL, Endpoint: p.Endpoint(), Scopes: rp.o.Scopes,
	}
}

// Discover fetches the identity provider's discovery document now (it
// is otherwise fetched at the first sign-in). nil without single sign-on.
func (s *Server) Discover(ctx context.Context) error {
	if s.rp == nil {
		return nil
	}
	_, err := s.rp.discover(ctx)
	return err
}

// pkceVerifier derives the PKCE verifier of a login from its browser
// cookie and state: only the browser that began it can finish it, and
// nothing stored is enough to redeem a code.
func pkceVerifier(cookie, state string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte("keydesk pkce\x00" + state))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) loginCookieName() string {
	if s.o.InsecureCookie {
		return "keydesk_oidc"
	}
	return "__Host-keydesk_oidc"
}

func (s *Server) setLoginCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: s.loginCookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: !s.o.InsecureCookie, SameSite: http.SameSiteLaxMode,
	})
}

// getOIDCLogin begins a login at the provider: GET /login/oidc?next=…
// (&reauth=1 asks the provider for a fresh sign-in).
func (s *Server) getOIDCLogin(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if s.rp == nil {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	ctx := r.Context()
	// Each start writes a pending login: bounded per client address.
	if !s.ssoStarts.allow("", clientIP(r), s.now()) {
		w.Header().Set("Retry-After", "10")
		s.renderLogin(w, http.StatusTooManyRequests, pageData{Next: next, Error: "Too many sign-in attempts from this address. Wait a minute and try again."})
		return
	}
	p, err := s.rp.discover(ctx)
	if err != nil {
		s.log.Warn("review: single sign-on unavailable", "issuer", s.rp.o.Issuer, "err", err)
		s.renderLogin(w, http.StatusServiceUnavailable, pageData{Next: next, Error: s.ssoDownText()})
		return
	}
	cookie, state, nonce := randomToken(), randomToken(), randomToken()
	pl := pendingLogin{
		Browser: sessionKey(cookie), Nonce: nonce, Next: next,
		Expires: s.now().UTC().Add(loginTTL), Reauth: r.URL.Query().Get(reauthParam) != "",
	}
	if _, err := s.pendingLogins().Create(ctx, oidcPrefix+sessionKey(state), &pl); err != nil {
		s.renderError(w, r, nil, asError("", fmt.Errorf("review: store pending login: %w", err)))
		return
	}
	s.setLoginCookie(w, cookie, int(loginTTL.Seconds()))
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(pkceVerifier(cookie, state))}
	if pl.Reauth {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	http.Redirect(w, r, s.rp.oauth2(p).AuthCodeURL(state, opts...), http.StatusSeeOther)
}

func (s *Server) ssoDownText() string {
	t := "Single sign-on is unavailable: the identity provider does not answer. Try again in a minute"
	if !s.o.PasswordLoginOff {
		t += "; a break-glass account can sign in with its password below"
	}
	return t + "."
}

// loginFailure is a callback refused: Msg for the person, Why for the
// log and audit trail.
type loginFailure struct {
	Status int
	Msg    string
	Why    string
	err    error
}

func (f *loginFailure) Error() string { return f.Why }

func refuse(status int, msg, why string, err error) *loginFailure {
	return &loginFailure{Status: status, Msg: msg, Why: why, err: err}
}

// getOIDCCallback finishes a login: GET /login/oidc/callback.
func (s *Server) getOIDCCallback(w http.ResponseWriter, r *http.Request) {
	if s.rp == nil {
		http.NotFound(w, r)
		return
	}
	id, next, f := s.finishLogin(r)
	// The binding cookie has done its work either way.
	s.setLoginCookie(w, "", -1)
	if f != nil {
		s.actions.Inc("login-refused")
		s.log.Warn("review: single sign-on refused", "why", f.Why, "err", f.err, "ip", clientIP(r))
		if id != nil {
			s.audit(r.Context(), staff{Name: id.Name, Subject: id.Subject}, "login-refused", "", f.Why+" from "+clientIP(r))
		}
		s.renderLogin(w, f.Status, pageData{Next: next, Error: f.Msg})
		return
	}
	// A sign-in again (re-authentication, or after a session ended)
	// replaces the session the browser had.
	if c, err := r.Cookie(s.cookieName()); err == nil && c.Value != "" && len(c.Value) <= 128 {
		_ = s.sessions().Purge(r.Context(), sessionKey(c.Value))
	}
	if err := s.newSSOSession(r.Context(), w, id); err != nil {
		s.renderError(w, r, nil, asError("", err))
		return
	}
	s.actions.Inc("login")
	s.audit(r.Context(), staff{Name: id.Name, Subject: id.Subject}, "login", "", fmt.Sprintf("single sign-on as %s (%s) from %s", id.Role, id.Subject, clientIP(r)))
	s.log.Info("review: login", "user", id.Name, "subject", id.Subject, "role", id.Role, "ip", clientIP(r))
	// The session cookie is SameSite=Strict, and browsers withhold it on
	// the rest of a redirect chain that began at the provider's site: a
	// page of this site moves on instead (a meta refresh: no script).
	s.render(w, http.StatusOK, "login", pageData{Title: "Signed in", Continue: next})
}

// identity is a person as the provider vouched for them.
type identity struct {
	Name    string // the email, or the subject when the provider gives none
	Subject string
	Email   string
	Person  string
	Role    users.Role
	AuthAt  time.Time // on this server's clock
	Expires time.Time // on this server's clock
}

// finishLogin checks the callback against its pending login and the
// provider, and returns who signed in. A refusal comes with the identity
// when the provider vouched for one (no role), for the audit trail.
func (s *Server) finishLogin(r *http.Request) (*identity, string, *loginFailure) {
	ctx := r.Context()
	q := r.URL.Query()
	start := "Start again from the sign-in page."
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		return nil, "", refuse(http.StatusBadRequest, "This sign-in answer has no valid state. "+start, "no state", nil)
	}
	key := oidcPrefix + sessionKey(state)
	pl, rev, err := s.pendingLogins().Get(ctx, key)
	if err != nil {
		return nil, "", refuse(http.StatusBadRequest, "This sign-in is unknown, already used or expired. "+start, "unknown or used state", err)
	}
	// One use, whatever comes next: of two callbacks with one state, the
	// second finds nothing.
	if err := s.pendingLogins().Delete(ctx, key, rev); err != nil {
		return nil, "", refuse(http.StatusBadRequest, "This sign-in is already used. "+start, "state replayed", err)
	}
	c, err := r.Cookie(s.loginCookieName())
	if err != nil || subtle.ConstantTimeCompare([]byte(sessionKey(c.Value)), []byte(pl.Browser)) != 1 {
		return nil, pl.Next, refuse(http.StatusBadRequest, "This sign-in was not started in this browser, so it was refused. "+start, "login cookie missing or not the one that began it", nil)
	}
	if s.now().After(pl.Expires) {
		return nil, pl.Next, refuse(http.StatusBadRequest, "This sign-in took longer than 10 minutes. "+start, "login expired", nil)
	}
	if e := q.Get("error"); e != "" {
		return nil, pl.Next, refuse(http.StatusUnauthorized, "The identity provider did not sign you in ("+clip(e, 64)+"). "+start, "provider error "+clip(e, 64)+": "+clip(q.Get("error_description"), 200), nil)
	}
	id, f := s.redeem(ctx, q.Get("code"), pkceVerifier(c.Value, state), pl)
	return id, pl.Next, f
}

// redeem exchanges the code, verifies the ID token and reads the person.
func (s *Server) redeem(ctx context.Context, code, verifier string, pl *pendingLogin) (*identity, *loginFailure) {
	p, err := s.rp.discover(ctx)
	if err != nil {
		return nil, refuse(http.StatusServiceUnavailable, s.ssoDownText(), "provider unavailable", err)
	}
	if code == "" || len(code) > 2048 {
		return nil, refuse(http.StatusBadRequest, "The identity provider's answer has no code. Start again from the sign-in page.", "no code", nil)
	}
	rctx := s.rp.ctx(ctx)
	tok, err := s.rp.oauth2(p).Exchange(rctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, refuse(http.StatusBadGateway, "The identity provider refused to complete the sign-in. Start again from the sign-in page.", "code exchange failed", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, refuse(http.StatusBadGateway, "The identity provider sent no ID token.", "no id_token", nil)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: s.rp.o.ClientID}).Verify(rctx, raw)
	if err != nil {
		return nil, refuse(http.StatusUnauthorized, "The identity provider's answer could not be verified. Start again from the sign-in page.", "id token not valid", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pl.Nonce)) != 1 {
		return nil, refuse(http.StatusUnauthorized, "The identity provider's answer belongs to another sign-in. Start again from the sign-in page.", "nonce mismatch", nil)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, refuse(http.StatusBadGateway, "The identity provider's answer could not be read.", "id token claims", err)
	}
	id, f := s.identityOf(idt, claims)
	if f != nil {
		return id, f
	}
	groups, found := claimStrings(claims, s.rp.o.RolesClaim)
	if !found {
		// Providers leave large or optional claims out of the ID token
		// and answer them at userinfo.
		if ui, err := p.UserInfo(rctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
			var uc map[string]any
			if ui.Claims(&uc) == nil {
				groups, _ = claimStrings(uc, s.rp.o.RolesClaim)
			}
		} else if err != nil {
			s.log.Warn("review: userinfo", "issuer", s.rp.o.Issuer, "err", err)
		}
	}
	id.Role = s.roleOf(groups)
	if id.Role == "" {
		return id, refuse(http.StatusForbidden, fmt.Sprintf("You signed in as %s, but none of your groups at the identity provider gives a role in keydesk. Ask an admin to add you to one of: %s.", id.Name, strings.Join(s.allGroups(), ", ")),
			"no group of "+s.rp.o.RolesClaim+" maps to a role", nil)
	}
	return id, nil
}

// identityOf reads who the person is, and when their sign-in and token
// are, from the ID token. The provider's times are turned into spans and
// laid on this server's clock, so that a skew between the two clocks
// neither shortens nor stretches a session.
func (s *Server) identityOf(idt *oidc.IDToken, claims map[string]any) (*identity, *loginFailure) {
	now := s.now().UTC()
	id := &identity{Subject: idt.Subject, Expires: now.Add(idt.Expiry.Sub(idt.IssuedAt)), AuthAt: now}
	if at, ok := claims["auth_time"].(float64); ok && at > 0 {
		if age := idt.IssuedAt.Sub(time.Unix(int64(at), 0)); age > 0 {
			id.AuthAt = now.Add(-age)
		}
	}
	email, _ := claims["email"].(string)
	email = strings.ToLower(strings.TrimSpace(email))
	if len(email) > 254 || strings.ContainsAny(email, " \t\r\n<>") {
		email = ""
	}
	// Without an email the person is named by the subject, prefixed so
	// that it can never be taken for a users.yaml name (which has no ':').
	id.Email, id.Name = email, "oidc:"+clip(idt.Subject, 128)
	if email != "" {
		id.Name = email
	}
	// Four eyes counts people by their email: it is what users.yaml ties a
	// token to, and what an admin knows of a colleague. An email the
	// provider says it has not verified could be anyone's, so it is refused.
	if v, ok := claims["email_verified"].(bool); ok && !v && email != "" {
		return id, refuse(http.StatusForbidden, "Your email at the identity provider is not verified, so keydesk cannot tell who you are. Verify it there, or ask an admin.", "email not verified", nil)
	}
	id.Person = email
	if email == "" {
		id.Person = s.rp.o.Issuer + "#" + idt.Subject
	}
	return id, nil
}

// claimStrings reads a claim by a dotted path (realm_access.roles) as a
// list of strings: the claim may be one string or a list.
func claimStrings(claims map[string]any, path string) ([]string, bool) {
	// A claim whose own name holds dots (https://corp.example/groups) is
	// taken whole before the path is walked.
	cur, ok := claims[path]
	if !ok {
		cur = walkClaim(claims, path)
	}
	switch v := cur.(type) {

	case string:
		return []string{v}, true
	case []any:
		out := make([]string, 0, min(len(v), 1000))
		for _, x := range v[:min(len(v), 1000)] {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out, true
	}
	return nil, false
}

// walkClaim follows a dotted path through nested objects; nil if absent.
func walkClaim(claims map[string]any, path string) any {
	var cur any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// roleOf is the highest role the groups give, or "" for none.
func (s *Server) roleOf(groups []string) users.Role {
	var best users.Role
	for _, role := range []users.Role{users.Viewer, users.Approver, users.Admin} {
		for _, g := range s.rp.o.Roles[role] {
			for _, have := range groups {
				if have == g {
					best = role
				}
			}
		}
	}
	return best
}

func (s *Server) allGroups() []string {
	var out []string
	for _, role := range []users.Role{users.Viewer, users.Approver, users.Admin} {
		out = append(out, s.rp.o.Roles[role]...)
	}
	return out
}

// needsReauth reports whether st signed in at the provider too long ago
// to approve (review.oidc.reauth_after).
func (s *Server) needsReauth(st staff) bool {
	if s.rp == nil || s.rp.o.ReauthAfter <= 0 || st.sess == nil || st.sess.Issuer == "" {
		return false
	}
	return s.now().Sub(st.sess.AuthAt) > s.rp.o.ReauthAfter
}

// ProviderInfo is what a provider's discovery document says, for
// `keydesk check --connect`.
type ProviderInfo struct {
	AuthURL, TokenURL string
	// PKCE lists code_challenge_methods_supported (empty: not said).
	PKCE []string
	// Claims lists claims_supported (empty: not said).
	Claims []string
}

// ProbeProvider fetches the provider's discovery document as the first
// sign-in would, and checks that the issuer it names is the one set.
func ProbeProvider(ctx context.Context, o OIDCOptions) (*ProviderInfo, error) {
	rp := newRelyingParty(o)
	p, err := rp.discover(ctx)
	if err != nil {
		return nil, err
	}
	var doc struct {
		PKCE   []string `json:"code_challenge_methods_supported"`
		Claims []string `json:"claims_supported"`
	}
	if err := p.Claims(&doc); err != nil {
		return nil, fmt.Errorf("review: discovery document of %s: %w", o.Issuer, err)
	}
	return &ProviderInfo{AuthURL: p.Endpoint().AuthURL, TokenURL: p.Endpoint().TokenURL, PKCE: doc.PKCE, Claims: doc.Claims}, nil
}
