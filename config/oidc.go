package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk/mailauth"
)

// OIDCCallbackPath is where the identity provider sends the browser back
// to the review UI; the default redirect_url is review.base_url + it.
const OIDCCallbackPath = "/login/oidc/callback"

// applyDefaults fills the keys left out, once single sign-on is on.
func (o *OIDC) applyDefaults(baseURL string) {
	if !o.Enabled() {
		return
	}
	if o.RedirectURL == "" && baseURL != "" {
		o.RedirectURL = strings.TrimRight(baseURL, "/") + OIDCCallbackPath
	}
	if o.Scopes == nil {
		o.Scopes = []string{"openid", "email", "profile"}
	}
	if o.RolesClaim == "" {
		o.RolesClaim = "groups"
	}
	if o.DisplayName == "" {
		o.DisplayName = "Sign in with single sign-on"
	}
}

// maxReauthAfter bounds review.oidc.reauth_after: past a day the check
// protects nothing that the session's own end does not.
const maxReauthAfter = 30 * 24 * time.Hour

// oidc checks review.local_login and review.oidc.
func (v *validator) oidc() {
	r := v.c.Review
	o := r.OIDC
	if !o.Enabled() {
		if !r.PasswordLogin() {
			v.bad("review.local_login", "false, and review.oidc.issuer is not set: nobody could sign in to the review UI (set up review.oidc, or keep local_login: true)")
		}
		if o.ClientID != "" || !o.ClientSecret.IsZero() || o.Roles.Count() > 0 {
			v.bad("review.oidc.issuer", "is empty while other review.oidc keys are set: single sign-on needs the identity provider's issuer URL")
		}
		return
	}
	if err := CheckIssuer(o.Issuer); err != nil {
		v.bad("review.oidc.issuer", "%v", err)
	}
	if strings.TrimSpace(o.ClientID) == "" {
		v.bad("review.oidc.client_id", "is required: the client (application) ID keydesk is registered under at the identity provider")
	}
	if o.ClientSecret.IsZero() {
		v.bad("review.oidc.client_secret", "is required (or client_secret_file): the secret the identity provider gave keydesk's client")
	}
	switch {
	case o.RedirectURL == "":
		v.bad("review.oidc.redirect_url", "is required: set it, or review.base_url (the default is base_url + %s)", OIDCCallbackPath)
	default:
		if err := checkRedirect(o.RedirectURL); err != nil {
			v.bad("review.oidc.redirect_url", "%v", err)
		}
	}
	if !slices.Contains(o.Scopes, "openid") {
		v.bad("review.oidc.scopes", "%v lacks openid: without it the provider sends no ID token", o.Scopes)
	}
	if strings.TrimSpace(o.RolesClaim) == "" || strings.Contains(o.RolesClaim, "..") || strings.HasPrefix(o.RolesClaim, ".") || strings.HasSuffix(o.RolesClaim, ".") {
		v.bad("review.oidc.roles_claim", "%q is not a claim name or a dotted path to one (realm_access.roles)", o.RolesClaim)
	}
	if o.Roles.Count() == 0 {
		v.bad("review.oidc.roles", "maps no group to a role: nobody signing in by single sign-on would get one (give viewer, approver or admin a list of groups)")
	}
	for _, rg := range []struct {
		role   string
		groups []string
	}{{"viewer", o.Roles.Viewer}, {"approver", o.Roles.Approver}, {"admin", o.Roles.Admin}} {
		for i, g := range rg.groups {
			if strings.TrimSpace(g) == "" {
				v.bad(fmt.Sprintf("review.oidc.roles.%s[%d]", rg.role, i), "is empty")
			}
		}
	}
	if o.ReauthAfter < 0 || o.ReauthAfter > maxReauthAfter {
		v.bad("review.oidc.reauth_after", "%s is out of range 0..720h (0: never asks)", o.ReauthAfter)
	}
	if len(o.DisplayName) > 100 {
		v.bad("review.oidc.display_name", "is longer than 100 characters")
	}
}

// CheckIssuer accepts an absolute https:// issuer URL, or http:// to a
// loopback host (a test provider).
func CheckIssuer(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute URL: write the identity provider's issuer, e.g. https://idp.example.com/realms/corp", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: an issuer has no user, query or fragment", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && mailauth.IsLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q: use https:// (http:// only for a loopback host)", raw)
	}
	return fmt.Errorf("%q: scheme %q, use https://", raw, u.Scheme)
}

// checkRedirect accepts an absolute https:// URL, or http:// to a
// loopback host, whose path is the callback's.
func checkRedirect(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme == "http" && !mailauth.IsLoopback(u.Hostname()):
		return fmt.Errorf("%q: use https:// (http:// only for a loopback host)", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme %q, use https://", raw, u.Scheme)
	case !strings.HasSuffix(u.Path, OIDCCallbackPath):
		return fmt.Errorf("%q: keydesk answers the provider at %s: the URL must end with it", raw, OIDCCallbackPath)
	}
	return nil
}
