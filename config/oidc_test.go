package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOIDCConfig: single sign-on's keys load with their defaults, and each
// mistake is reported naming the file and the key.
func TestOIDCConfig(t *testing.T) {
	good := `review:
  base_url: https://keydesk.example.com
  oidc:
    issuer: https://idp.example.com/realms/corp
    client_id: keydesk
    client_secret_file: secrets/oidc-client-secret
    roles: {approver: [keydesk-approvers]}
`
	tests := []struct {
		name, yaml string
		// want is the problem expected, "" none.
		want string
	}{
		{"good", good, ""},
		{"no sso, passwords off", "review: {local_login: false}\n", "keydesk.yaml: review.local_login: false, and review.oidc.issuer is not set: nobody could sign in"},
		{"http issuer", strings.Replace(good, "https://idp", "http://idp", 1), "keydesk.yaml: review.oidc.issuer: \"http://idp.example.com/realms/corp\": use https://"},
		{"http loopback issuer", strings.Replace(good, "https://idp.example.com", "http://127.0.0.1:5556", 1), ""},
		{"no client id", strings.Replace(good, "client_id: keydesk", "client_id: \"\"", 1), "keydesk.yaml: review.oidc.client_id: is required"},
		{"no secret", strings.Replace(good, "    client_secret_file: secrets/oidc-client-secret\n", "", 1), "keydesk.yaml: review.oidc.client_secret: is required (or client_secret_file)"},
		{"no redirect", strings.Replace(good, "  base_url: https://keydesk.example.com\n", "", 1), "keydesk.yaml: review.oidc.redirect_url: is required: set it, or review.base_url"},
		{"no roles", strings.Replace(good, "    roles: {approver: [keydesk-approvers]}\n", "", 1), "keydesk.yaml: review.oidc.roles: maps no group to a role"},
		{"negative reauth", good + "    reauth_after: -1h\n", "keydesk.yaml: review.oidc.reauth_after: -1h0m0s is out of range"},
		{"sso, passwords off", strings.Replace(good, "review:\n", "review:\n  local_login: false\n", 1), ""},
		{"no openid scope", good + "    scopes: [email]\n", "keydesk.yaml: review.oidc.scopes: [email] lacks openid"},
		{"orphan keys", "review:\n  oidc: {client_id: keydesk}\n", "keydesk.yaml: review.oidc.issuer: is empty while other review.oidc keys are set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
				t.Fatal(err)
			}
			write(t, dir, "secrets/oidc-client-secret", "s3cret\n")
			p := write(t, dir, "keydesk.yaml", tc.yaml)
			c, err := load(p, env(nil))
			if c == nil {
				t.Fatalf("not loaded: %v", err)
			}
			var got []string
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					if strings.Contains(line, "review.") {
						got = append(got, line)
					}
				}
			}
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("refused: %v", got)
				}
				return
			}
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("problems %q, want one starting %q", got, tc.want)
			}
		})
	}
}

// TestOIDCDefaults: the keys left out take the documented defaults, and
// the secret is read from its file.
func TestOIDCDefaults(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "oidc-secret", "s3cret\n")
	p := write(t, dir, "keydesk.yaml", `review:
  base_url: https://keydesk.example.com/
  oidc:
    issuer: https://idp.example.com
    client_id: keydesk
    client_secret_file: oidc-secret
    reauth_after: 1h
    roles: {admin: [ops]}
`)
	c, err := load(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Review.OIDC
	if o.RedirectURL != "https://keydesk.example.com/login/oidc/callback" || o.RolesClaim != "groups" ||
		strings.Join(o.Scopes, " ") != "openid email profile" || o.DisplayName != "Sign in with single sign-on" ||
		o.ReauthAfter != time.Hour || o.ClientSecret.Reveal() != "s3cret" || !c.Review.PasswordLogin() {
		t.Fatalf("defaults: %+v, local login %v", o, c.Review.PasswordLogin())
	}
}
