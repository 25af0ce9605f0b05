package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/internal/oidctest"
)

// TestCheckOIDC: `keydesk check` reports a broken review.oidc naming the
// key and the file, and `keydesk check --connect` reports the identity
// provider's discovery: ok while a real provider answers, FAIL with what
// to do when it does not.
func TestCheckOIDC(t *testing.T) {
	dir := t.TempDir()
	e, err := demo.StartEnv(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	idp := oidctest.Start(t, oidctest.Options{})
	path, err := e.WriteConfigAs("keydesk.yaml", "127.0.0.1:0", "@every 1h", config.NATS{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "oidc-client-secret"), []byte(idp.ClientSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The oidc block goes under review:, indented as users_file is.
	m := regexp.MustCompile(`(?m)^( +)users_file: users.yaml$`).FindSubmatch(orig)
	if m == nil {
		t.Fatalf("no review.users_file in\n%s", orig)
	}
	withOIDC := func(block string) {
		in := string(m[1])
		var b strings.Builder
		for line := range strings.Lines(block) {
			b.WriteString(in + line)
		}
		out := strings.Replace(string(orig), string(m[0]), string(m[0])+"\n"+strings.TrimRight(b.String(), "\n"), 1)
		if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := "oidc:\n  issuer: " + idp.Issuer + "\n  client_id: " + idp.ClientID() +
		"\n  client_secret_file: secrets/oidc-client-secret\n  redirect_url: http://127.0.0.1:8080/login/oidc/callback\n  roles: {approver: [keydesk-approvers]}\n"
	run := func(connect bool) (string, error) {
		var out, errOut bytes.Buffer
		err := check(context.Background(), &out, &errOut, checkOptions{config: path, now: time.Now(), connect: connect,
			timeout: 5 * time.Second, roles: []string{"review"}})
		return out.String() + errOut.String(), err
	}

	withOIDC(strings.Replace(good, "  roles: {approver: [keydesk-approvers]}\n", "  reauth_after: -5m\n", 1))
	out, err := run(false)
	for _, want := range []string{
		"keydesk.yaml: review.oidc.roles: maps no group to a role",
		"keydesk.yaml: review.oidc.reauth_after: -5m0s is out of range",
	} {
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("check of a broken review.oidc: %v; output lacks %q:\n%s", err, want, out)
		}
	}

	withOIDC(good)
	out, err = run(true)
	if want := "ok   oidc  " + idp.Issuer + " (discovery: sign-in at " + idp.Issuer + "/authorize"; err != nil || !strings.Contains(out, want) {
		t.Fatalf("check --connect with the provider up: %v; want a line starting %q:\n%s", err, want, out)
	}
	idp.SetDown(true)
	out, err = run(true)
	if want := "FAIL oidc  " + idp.Issuer + ": review: the identity provider is unavailable: discovery of " + idp.Issuer; err == nil || !strings.Contains(out, want) ||
		!strings.Contains(out, "; check review.oidc.issuer") {
		t.Fatalf("check --connect with the provider down: %v; want a line starting %q:\n%s", err, want, out)
	}
}
