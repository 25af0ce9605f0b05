package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// examplesDir is deploy/examples, what operators copy to start.
const examplesDir = "../../deploy/examples"

// exampleNow is a fixed clock: the example keys must pass on it, and the
// RSA contact key's expiry (2031) stays years away.
var exampleNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// batchEnv sets the variables of dir/batch.env, the batch role's
// environment, for the rest of the test.
func batchEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "batch.env"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("batch.env: %q is not NAME=value", line)
		}
		vars[k] = v
		t.Setenv(k, v)
	}
	return vars
}

// TestCheckAcceptsExamples runs `keydesk check` on every example config,
// with the batch role's environment (batch.env), as on a host running
// every role.
func TestCheckAcceptsExamples(t *testing.T) {
	configs, err := filepath.Glob(filepath.Join(examplesDir, "keydesk*.yaml"))
	if err != nil || len(configs) < 3 {
		t.Fatalf("example configs %v (%v): want keydesk.yaml, keydesk-cluster.yaml, keydesk-compose.yaml", configs, err)
	}
	for _, path := range configs {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			batchEnv(t, examplesDir)
			var out, errOut bytes.Buffer
			if err := runCheck(&out, &errOut, path, nil, exampleNow); err != nil {
				t.Fatalf("check refused the example: %v\n%s", err, errOut.String())
			}
			for _, want := range []string{
				"acme", "sec@acme.example", "B6BF4C10D022F14EBA3137A969C75F86B834AC27", "sandbox(auto),production",
				"globex", "platform-keys@globex.example", "6794F55219BBCC11E64CACF6523474A6140DC5DF",
				name + ": ok",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("check output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestCheckListsEveryProblem breaks a copy of the examples in several
// ways at once and checks that `keydesk check` fails naming each problem
// with its file and key.
func TestCheckListsEveryProblem(t *testing.T) {
	tests := []struct {
		name  string
		edits map[string][][2]string // file → old, new
		want  []string
	}{
		{
			name: "keydesk.yaml values",
			edits: map[string][][2]string{
				"keydesk.yaml": {
					{"security: tls                    #", "security: plain                  #"},
					{"  from: \"Buildmarkets Support <support@buildmarkets.example>\"\n", ""},
					{"base_url: https://api.buildmarkets.example", "base_url: http://api.buildmarkets.example"},
					{"replicas: 1 ", "replicas: 3 "},
					{"level: info ", "level: loud "},
				},
			},
			want: []string{
				"keydesk.yaml: imap.security:",
				"keydesk.yaml: smtp.from:",
				"keydesk.yaml: api.production.base_url:",
				"keydesk.yaml: nats.replicas:",
				"keydesk.yaml: log.level:",
			},
		},
		{
			name: "partners.yaml values",
			edits: map[string][][2]string{
				"partners.yaml": {
					{"\"*@acme.example\"", "\"*@acme\""},
					{"fingerprint: \"6794F55219BBCC11E64CACF6523474A6140DC5DF\"", "fingerprint: \"6794F552\""},
					{"allowed_scopes: [accounts:read,", "allowed_scopes: [acounts:read,"},
				},
			},
			want: []string{
				"partners.yaml: partners[0].requesters[0]:",
				"partners.yaml: partners[1].technical_contact.fingerprint:",
				"partners.yaml: partners[0].allowed_scopes[0]:",
			},
		},
		{
			name: "problems in both files at once",
			edits: map[string][][2]string{
				"keydesk.yaml":  {{"level: info ", "level: loud "}},
				"partners.yaml": {{"\"*@acme.example\"", "\"*@acme\""}},
			},
			want: []string{
				"keydesk.yaml: log.level:",
				"partners.yaml: partners[0].requesters[0]:",
			},
		},
		{
			name: "a wrong signing key passphrase",
			edits: map[string][][2]string{
				"secrets/signing-passphrase": {{"example-only-not-secret", "wrong-passphrase"}},
			},
			want: []string{"keydesk.yaml: signing_key.file:"},
		},
		{
			name: "a typo in a key",
			edits: map[string][][2]string{
				"keydesk.yaml": {{"  schedule:", "  shedule:"}},
			},
			want: []string{"keydesk.yaml: batch.shedule: unknown key"},
		},
		{
			name: "a key that does not match its pinned fingerprint",
			edits: map[string][][2]string{
				// acme's fingerprint pinned on globex's key file.
				"partners.yaml": {{"pgp_key_file: keys/globex.asc", "pgp_key_file: keys/acme.asc"}},
			},
			want: []string{"partners.yaml: partners[1].technical_contact.fingerprint:"},
		},
		{
			name: "a missing secret file",
			edits: map[string][][2]string{
				"batch.env": {
					{"ACME_PRODUCTION_SECRET_FILE=partner-credentials/acme-production-secret", "ACME_PRODUCTION_SECRET_FILE=partner-credentials/nowhere"},
				},
			},
			want: []string{"partners.yaml: partners[0].environments.production.api_secret_file:"},
		},
		{
			name: "a secret the batch role is not given",
			edits: map[string][][2]string{
				"batch.env":     {{"GLOBEX_SANDBOX_SECRET_FILE=partner-credentials/globex-sandbox-secret", ""}},
				"partners.yaml": {{"api_key: \"${ACME_PROD_KEY:-bm_key_acme_production_manager}\"", "api_key: \"\""}},
			},
			want: []string{
				"partners.yaml: partners[0].environments.production.api_key: is required by the batch role",
				"partners.yaml: partners[1].environments.sandbox.api_secret: is required by the batch role (or api_secret_file)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "a wrong signing key passphrase" && len(roleChecks["batch"]) < 2 {
				t.Skip("no OpenPGP checks are wired into this build")
			}
			dir := t.TempDir()
			copyDir(t, examplesDir, dir)
			editFiles(t, dir, tc.edits)
			batchEnv(t, dir)
			var out, errOut bytes.Buffer
			err := runCheck(&out, &errOut, filepath.Join(dir, "keydesk.yaml"), nil, exampleNow)
			if ee, ok := err.(exitError); !ok || ee.code != 1 {
				t.Fatalf("check: %v, want exit 1; stderr:\n%s", err, errOut.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("check does not report %q; it says:\n%s", want, errOut.String())
				}
			}
			if n := strings.Count(errOut.String(), "\n"); n < len(tc.want) {
				t.Errorf("fewer problem lines (%d) than problems (%d)", n, len(tc.want))
			}
			if strings.Contains(errOut.String(), "example-only-not-secret") || strings.Contains(errOut.String(), "wrong-passphrase") {
				t.Errorf("check printed a passphrase:\n%s", errOut.String())
			}
		})
	}
}

// TestBatchEnvNamesEverySecret: batch.env sets exactly the variables that
// partners.yaml reads its API secrets from.
func TestBatchEnvNamesEverySecret(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(examplesDir, "partners.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, m := range regexp.MustCompile(`api_secret_file: "\$\{([A-Z0-9_]+):-\}"`).FindAllStringSubmatch(string(b), -1) {
		used = append(used, m[1])
	}
	if n := len(regexp.MustCompile(`(?m)^\s*api_secret`).FindAllIndex(b, -1)); n != len(used) {
		t.Errorf("partners.yaml gives an API secret other than through a batch.env variable")
	}
	set := slices.Sorted(maps.Keys(batchEnv(t, examplesDir)))
	slices.Sort(used)
	if !slices.Equal(set, used) {
		t.Errorf("batch.env sets %v, partners.yaml reads %v", set, used)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// editFiles replaces, in each file of dir, each old text with its new
// one, once; a file that no longer holds an old text fails the test.
func editFiles(t *testing.T, dir string, edits map[string][][2]string) {
	t.Helper()
	for file, eds := range edits {
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, e := range eds {
			if !strings.Contains(s, e[0]) {
				t.Fatalf("%s no longer contains %q: update the test", file, e[0])
			}
			s = strings.Replace(s, e[0], e[1], 1)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
