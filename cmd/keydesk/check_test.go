package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/review/users"
)

// TestCheckWarnsOfExampleMaterial: the examples as published hold the
// example signing key, passwords, API secrets and users; check warns of
// each, by name, passes without --strict and fails with it. The same
// files with material of one's own give no warning.
func TestCheckWarnsOfExampleMaterial(t *testing.T) {
	if len(roleChecks["batch"]) < 2 {
		t.Skip("no OpenPGP checks are wired into this build")
	}
	published := []string{
		"WARNING users.yaml: users[0]: alice has the password_hash and token_sha256 of the example users",
		"WARNING users.yaml: users[1]: bob has the password_hash and token_sha256 of the example users",
		"WARNING users.yaml: users[2]: carol has the password_hash and token_sha256 of the example users",
		"WARNING keydesk.yaml: signing_key.file: keys/keydesk-signing.EXAMPLE.asc is the EXAMPLE key published with keydesk (2635A50210293C7C27A49ECE8950DAFEFABC7EE3)",
		"WARNING keydesk.yaml: imap.password: is the example IMAP password",
		"WARNING keydesk.yaml: smtp.password: is the example SMTP password",
		"WARNING keydesk.yaml: signing_key.passphrase: is the example signing key passphrase",
		"WARNING partners.yaml: partners[0].environments.sandbox.api_secret: is the example API secret",
		"WARNING partners.yaml: partners[0].environments.production.api_secret: is the example API secret",
		"WARNING partners.yaml: partners[1].environments.sandbox.api_secret: is the example API secret",
	}
	tests := []struct {
		name   string
		own    bool // replace every example secret, key and user with one's own
		strict bool
		want   []string // the lines on stderr, each by its start
		fail   bool
	}{
		{name: "published", want: append(published, "", "10 warning(s): keydesk runs, but fix them before real use (--strict fails on them).")},
		{name: "published, strict", strict: true, fail: true, want: append(published, "", "10 warning(s): keydesk runs, but fix them before real use (--strict fails on them).")},
		{name: "own material, strict", own: true, strict: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, examplesDir, dir)
			if tc.own {
				replaceExampleMaterial(t, dir)
			}
			batchEnv(t, dir)
			var out, errOut bytes.Buffer
			err := check(context.Background(), &out, &errOut, checkOptions{config: filepath.Join(dir, "keydesk.yaml"), now: exampleNow, strict: tc.strict})
			if ee, ok := err.(exitError); tc.fail != (ok && ee.code == 1) || !tc.fail && err != nil {
				t.Fatalf("check: %v, want failure %v\n%s", err, tc.fail, errOut.String())
			}
			got := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
			if errOut.Len() == 0 {
				got = nil
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines on stderr, want %d:\n%s", len(got), len(tc.want), errOut.String())
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d:\n%s\nwant it to start\n%s", i, got[i], w)
				}
			}
			if !strings.HasSuffix(strings.TrimSpace(out.String()), "keydesk.yaml: ok") && !tc.fail {
				t.Errorf("no ok line:\n%s", out.String())
			}
		})
	}
}

// replaceExampleMaterial gives a copy of the examples a signing key,
// passwords, API secrets and a user of its own.
func replaceExampleMaterial(t *testing.T, dir string) {
	t.Helper()
	priv, _, _, err := crypto.GenerateKey("keydesk", "support@buildmarkets.example", crypto.Curve25519, []byte("own-passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	hash, err := users.HashPassword("own-password", users.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"keys/keydesk-signing.EXAMPLE.asc":           priv,
		"secrets/imap-password":                      "own-imap-password",
		"secrets/smtp-password":                      "own-smtp-password",
		"secrets/signing-passphrase":                 "own-passphrase",
		"partner-credentials/acme-sandbox-secret":    "own-acme-sandbox-secret",
		"partner-credentials/acme-production-secret": "own-acme-production-secret",
		"partner-credentials/globex-sandbox-secret":  "own-globex-sandbox-secret",
		"users.yaml": "users:\n  - {name: dana, role: admin, password_hash: \"" + hash + "\", token_sha256: " + users.TokenDigest("own-token") + "}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckTellsEverythingAtOnce: a typo in keydesk.yaml, a missing
// secret file and a bad partner, found in one run, each once.
func TestCheckTellsEverythingAtOnce(t *testing.T) {
	dir := t.TempDir()
	copyDir(t, examplesDir, dir)
	editFiles(t, dir, map[string][][2]string{
		"keydesk.yaml":  {{"  schedule:", "  shedule:"}, {"password_file: secrets/smtp-password", "password_file: secrets/nowhere"}},
		"partners.yaml": {{`"*@acme.example"`, `"*@acme"`}},
	})
	batchEnv(t, dir)
	var out, errOut bytes.Buffer
	err := runCheck(&out, &errOut, filepath.Join(dir, "keydesk.yaml"), nil, exampleNow)
	if ee, ok := err.(exitError); !ok || ee.code != 1 {
		t.Fatalf("check: %v, want exit 1", err)
	}
	var problems []string
	for line := range strings.Lines(errOut.String()) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "WARNING ") && !strings.Contains(line, " found.") && !strings.Contains(line, "warning(s)") {
			problems = append(problems, line)
		}
	}
	// The line of the typo in the example file as it is now.
	cfgText, _ := os.ReadFile(filepath.Join(dir, "keydesk.yaml"))
	typoLine := 1 + bytes.Count(cfgText[:bytes.Index(cfgText, []byte("  shedule:"))], []byte("\n"))
	want := []string{
		"keydesk.yaml: smtp.password_file: open " + filepath.Join(dir, "secrets/nowhere") + ": no such file or directory",
		fmt.Sprintf("keydesk.yaml: batch.shedule: unknown key (line %d); did you mean schedule?", typoLine),
		`partners.yaml: partners[0].requesters[0]: "*@acme": the domain must be a full domain name`,
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(errOut.String(), "3 problem(s) found.") {
		t.Errorf("no count of 3 problems:\n%s", errOut.String())
	}
}
