package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/config"
)

// TestCheckRoles: without the batch role's environment the examples'
// partners.yaml holds no API secret; check passes for the other roles and
// lists every missing secret for batch.
func TestCheckRoles(t *testing.T) {
	missing := []string{
		"partners.yaml: partners[0].environments.sandbox.api_secret: is required by the batch role (or api_secret_file)",
		"partners.yaml: partners[0].environments.production.api_secret: is required by the batch role (or api_secret_file)",
		"partners.yaml: partners[1].environments.sandbox.api_secret: is required by the batch role (or api_secret_file)",
	}
	tests := []struct {
		roles    string // the --roles flag; empty: the default, all
		batchEnv bool
		want     []string // problems; none: check passes
		ok       string   // the last line when it passes
	}{
		{roles: "", want: missing},
		{roles: "batch", want: missing},
		{roles: "review,batch", want: missing},
		{roles: "intake,review,delivery", ok: "keydesk-cluster.yaml: ok for delivery, review, intake"},
		{roles: "review", ok: "keydesk-cluster.yaml: ok for review"},
		{roles: "batch", batchEnv: true, ok: "keydesk-cluster.yaml: ok for batch"},
		{roles: "", batchEnv: true, ok: "keydesk-cluster.yaml: ok"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/env=%v", tc.roles, tc.batchEnv), func(t *testing.T) {
			if tc.batchEnv {
				batchEnv(t, examplesDir)
			}
			roles := roleOrder
			if tc.roles != "" {
				var err error
				if roles, err = parseRoles(tc.roles); err != nil {
					t.Fatal(err)
				}
			}
			var out, errOut bytes.Buffer
			err := runCheck(&out, &errOut, filepath.Join(examplesDir, "keydesk-cluster.yaml"), roles, exampleNow)
			if len(tc.want) == 0 {
				if err != nil || !strings.HasSuffix(strings.TrimSpace(out.String()), tc.ok) {
					t.Fatalf("check --roles %q: %v\n%s%s", tc.roles, err, out.String(), errOut.String())
				}
				return
			}
			if ee, ok := err.(exitError); !ok || ee.code != 1 {
				t.Fatalf("check --roles %q: %v, want exit 1", tc.roles, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("check --roles %q does not report %q; it says:\n%s", tc.roles, w, errOut.String())
				}
			}
			if !strings.Contains(errOut.String(), fmt.Sprintf("%d problem(s) found.", len(tc.want))) {
				t.Errorf("check --roles %q reports other problems:\n%s", tc.roles, errOut.String())
			}
		})
	}

	// What the roles but batch load: the same partners, no secret.
	reg, err := config.LoadPartners(filepath.Join(examplesDir, "partners.yaml"), nil, exampleNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range reg.Partners {
		for env, pe := range p.Environments {
			if !pe.APISecret.IsZero() {
				t.Errorf("without batch.env, %s %s carries an API secret", p.ID, env)
			}
		}
	}
	if err := cmdCheck(context.Background(), []string{"--roles", "review,audit"}); err == nil || !strings.Contains(err.Error(), `unknown role "audit"`) {
		t.Errorf("check --roles review,audit: %v", err)
	}
}

// TestCheckRolesSigningKey: the signing key is the batch role's; a config
// for another role need not name it.
func TestCheckRolesSigningKey(t *testing.T) {
	if len(roleChecks["batch"]) < 2 {
		t.Skip("no OpenPGP checks are wired into this build")
	}
	dir := t.TempDir()
	copyDir(t, examplesDir, dir)
	p := filepath.Join(dir, "keydesk-cluster.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	old := "signing_key:\n  file: keys/keydesk-signing.EXAMPLE.asc\n"
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("keydesk-cluster.yaml no longer contains %q: update the test", old)
	}
	if err := os.WriteFile(p, bytes.Replace(b, []byte(old), []byte("signing_key:\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	batchEnv(t, dir)
	for _, tc := range []struct {
		roles []string
		want  string
	}{
		{[]string{"review", "intake"}, ""},
		{[]string{"batch"}, "keydesk-cluster.yaml: signing_key.file: is required"},
		{nil, "keydesk-cluster.yaml: signing_key.file: is required"},
	} {
		var out, errOut bytes.Buffer
		err := runCheck(&out, &errOut, p, tc.roles, exampleNow)
		if tc.want == "" && err != nil || tc.want != "" && !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("check --roles %v: %v\n%s", tc.roles, err, errOut.String())
		}
	}
}
