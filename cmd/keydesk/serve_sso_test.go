package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/oidctest"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestServeSSO runs `keydesk serve --roles review` with review.oidc and
// local_login false while the identity provider is down: it starts, its
// sign-in page says single sign-on is unavailable, passwords are refused;
// once the provider answers, a person signs in through it with the role
// their group maps to in keydesk.yaml.
func TestServeSSO(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	idp := oidctest.Start(t, oidctest.Options{People: []oidctest.Person{
		{ID: "sub-alice", Username: "alice", Password: "alice-idp-pw", Email: "alice@corp.example", Groups: []string{"keydesk-approvers"}},
	}})
	idp.SetDown(true)
	dir := t.TempDir()
	writeAcmeAndAda(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	cryptotest.WriteFile(t, dir, "secrets/oidc-client-secret", idp.ClientSecret()+"\n")
	listen := testenv.FreeAddr(t)
	base := "http://" + listen
	idp.SetRedirectURIs(base + "/login/oidc/callback")
	cfgPath := cryptotest.WriteFile(t, dir, "keydesk.yaml", `data_dir: data
review:
  listen: "`+listen+`"
  base_url: "`+base+`"
  local_login: false
  oidc:
    issuer: "`+idp.Issuer+`"
    client_id: `+idp.ClientID()+`
    client_secret_file: secrets/oidc-client-secret
    roles: {viewer: [everyone], approver: [keydesk-approvers]}
log: {format: json}
`)
	p := startProc(t, bin, listen, "serve", "--config", cfgPath, "--roles", "review")
	p.waitOK(t, "/readyz", 60*time.Second)

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	get := func(u string) (int, string, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}
	if code, _, body := get(base + "/login"); code != 200 || !strings.Contains(body, "Single sign-on is unavailable") || strings.Contains(body, `name="password"`) {
		t.Fatalf("sign-in page with the provider down: %d\n%s", code, body)
	}
	resp, err := c.PostForm(base+"/login", url.Values{"username": {"ada"}, "password": {"anything"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("password sign-in with local_login false: %d", resp.StatusCode)
	}

	idp.SetDown(false)
	code, auth, body := get(base + "/login/oidc?next=/queue")
	if code != http.StatusSeeOther || !strings.HasPrefix(auth, idp.Issuer+"/authorize?") {
		t.Fatalf("single sign-on once the provider is up: %d %s\n%s", code, auth, body)
	}
	cb, err := idp.SignIn(c, auth, "alice", "alice-idp-pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cb, base+"/login/oidc/callback?") {
		t.Fatalf("the provider sends the browser to %s", cb)
	}
	if code, _, body := get(cb); code != 200 {
		t.Fatalf("callback: %d\n%s", code, body)
	}
	if code, _, body := get(base + "/queue"); code != 200 || !strings.Contains(body, `<span class="user">alice@corp.example</span> <span class="role role-approver">`) {
		t.Fatalf("queue after single sign-on: %d\n%s", code, body)
	}
	p.stop(t, 60*time.Second)
}
