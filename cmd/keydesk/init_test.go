package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/review/users"
)

// initTestKey is the contact's public key init is given in the tests.
var initTestKey = filepath.Join("testdata", "init", "contact.asc")

const initTestFpr = "B9CCB7B40795788920008F9E2A8EDAD07EB4FCA7"

// initFlags is a complete non-interactive answer set; secrets come from
// initSecretsEnv.
func initFlags() map[string]string {
	return map[string]string{
		"imap-address": "imap.buildmarkets.example:993", "imap-username": "keydesk@buildmarkets.example",
		"authserv-id": "mx.buildmarkets.example", "smtp-address": "smtp.buildmarkets.example:587",
		"smtp-from": "Buildmarkets Support <support@buildmarkets.example>", "support-address": "api-support@buildmarkets.example",
		"api-sandbox-url": "https://sandbox-api.buildmarkets.example", "api-production-url": "https://api.buildmarkets.example",
		"partner-id": "acme", "partner-name": "Acme Capital", "requesters": "*@acme.example,cto@acme-holdings.example",
		"contact-email": "sec@acme.example", "contact-key": initTestKey,
		"sandbox-api-key": "bm_key_acme_sandbox", "production-api-key": "bm_key_acme_production", "admin": "ops",
	}
}

var initSecretsEnv = map[string]string{
	"KEYDESK_IMAP_PASSWORD": "imap-secret-1", "KEYDESK_SMTP_PASSWORD": "smtp-secret-2",
	"KEYDESK_SANDBOX_API_SECRET": "sandbox-secret-3", "KEYDESK_PRODUCTION_API_SECRET": "production-secret-4",
	"KEYDESK_OIDC_CLIENT_SECRET": "oidc-secret-5",
}

func initArgv(dir string, flags map[string]string, extra ...string) []string {
	args := []string{dir, "--yes"}
	for _, k := range slicesSorted(flags) {
		args = append(args, "--"+k, flags[k])
	}
	return append(args, extra...)
}

func slicesSorted(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// runInitTest runs init with flags and the environment env, its output
// in the returned buffers.
func runInitTest(t *testing.T, args []string, env map[string]string, p *prompter) (stdout, stderr *bytes.Buffer, err error) {
	t.Helper()
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	err = runInit(context.Background(), initEnv{stdout: stdout, stderr: stderr, getenv: func(k string) string { return env[k] }, prompter: p, now: time.Now(), euid: os.Geteuid()}, args)
	return stdout, stderr, err
}

// TestInitAnswerProblems: without a terminal, init writes nothing while
// an answer is missing or wrong, and names the flag (or file flag and
// variable) of each.
func TestInitAnswerProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(f map[string]string, env map[string]string)
		wants []string
	}{
		{"missing addresses", func(f, _ map[string]string) { delete(f, "imap-address"); delete(f, "smtp-from") },
			[]string{"--imap-address: is required", "--smtp-from: is required"}},
		{"missing secrets", func(_, env map[string]string) {
			delete(env, "KEYDESK_IMAP_PASSWORD")
			delete(env, "KEYDESK_SANDBOX_API_SECRET")
		},
			[]string{"--imap-password-file or $KEYDESK_IMAP_PASSWORD: is required", "--sandbox-api-secret-file or $KEYDESK_SANDBOX_API_SECRET: is required"}},
		{"smtp login without its password", func(f, env map[string]string) { f["smtp-username"] = "relay"; delete(env, "KEYDESK_SMTP_PASSWORD") },
			[]string{"--smtp-password-file or $KEYDESK_SMTP_PASSWORD"}},
		{"bad values", func(f, _ map[string]string) {
			f["imap-address"], f["partner-id"], f["requesters"] = "imap.example", "Acme Corp", "*@acme, bob"
			f["api-production-url"], f["imap-security"] = "http://api.buildmarkets.example", "ssl"
		}, []string{`--imap-address: "imap.example" is not host:port`, `--partner-id: "Acme Corp" must be`,
			`--requesters: "*@acme": give a whole domain name`, `"bob" is not one bare email address`,
			`--api-production-url: "http://api.buildmarkets.example" would send API secrets in clear text`, `--imap-security: "ssl" is not tls`}},
		{"clear text to a remote host", func(f, _ map[string]string) { f["smtp-security"] = "none" },
			[]string{"--smtp-security: none sends the password in clear text"}},
		{"no environment, nobody to sign in", func(f, _ map[string]string) {
			delete(f, "sandbox-api-key")
			delete(f, "production-api-key")
			f["admin"] = ""
		},
			[]string{"the partner needs at least one environment", "--admin, --oidc-issuer: name a local admin"}},
		{"oidc half given", func(f, env map[string]string) {
			f["oidc-issuer"] = "https://idp.example.com/realms/corp"
			delete(env, "KEYDESK_OIDC_CLIENT_SECRET")
		},
			[]string{"--oidc-client-id: is required", "--oidc-client-secret-file or $KEYDESK_OIDC_CLIENT_SECRET", "--oidc-admin-group: is required"}},
		{"contact key not a public key", func(f, _ map[string]string) { f["contact-key"] = filepath.Join("testdata", "init", "contact.key.asc") },
			[]string{"--contact-key: testdata/init/contact.key.asc: holds a PRIVATE key"}},
		{"a variable in an answer", func(f, _ map[string]string) { f["imap-username"] = "${USER}" },
			[]string{"--imap-username: holds ${"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, env := initFlags(), map[string]string{}
			for k, v := range initSecretsEnv {
				env[k] = v
			}
			tc.mod(f, env)
			dir := filepath.Join(t.TempDir(), "kd")
			_, _, err := runInitTest(t, initArgv(dir, f), env, nil)
			if err == nil {
				t.Fatal("init accepted it")
			}
			for _, w := range append(tc.wants, "nothing written") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
			if exists(dir) {
				t.Errorf("init made %s though it refused", dir)
			}
		})
	}
}

// TestInitFiles: what init writes, each file's mode and owner: secrets
// 0600 in 0700 directories, the service user's; the rest readable by its
// group and not writable by it. Every secret is in its own file, and in
// no other.
func TestInitFiles(t *testing.T) {
	for _, serviceUser := range []string{"", "nobody"} {
		t.Run("service user "+serviceUser, func(t *testing.T) {
			var uid, gid int
			if serviceUser != "" {
				u, err := user.Lookup(serviceUser)
				if os.Geteuid() != 0 || err != nil {
					t.Skip("needs root and a user nobody")
				}
				uid, _ = strconv.Atoi(u.Uid)
				gid, _ = strconv.Atoi(u.Gid)
			}
			dir := filepath.Join(t.TempDir(), "kd")
			extra := []string{"--data-dir", "data"}
			if serviceUser != "" {
				extra = append(extra, "--service-user", serviceUser)
			}
			f := initFlags()
			f["smtp-username"] = "keydesk@buildmarkets.example"
			stdout, stderr, err := runInitTest(t, initArgv(dir, f, extra...), initSecretsEnv, nil)
			if err != nil {
				t.Fatalf("init: %v\n%s\n%s", err, stdout, stderr)
			}
			checkInitModes(t, dir, serviceUser != "", uid, gid)
			checkInitSecrets(t, dir)
		})
	}
}

func checkInitModes(t *testing.T, dir string, owned bool, uid, gid int) {
	t.Helper()
	me := os.Geteuid()
	for _, tc := range []struct {
		rel    string
		mode   os.FileMode
		secret bool
	}{
		{".", 0o750 | os.ModeDir, false},
		{"keydesk.yaml", 0o640, false},
		{"partners.yaml", 0o640, false},
		{"users.yaml", 0o640, false},
		{"batch.env", 0o640, false},
		{"keys", 0o750 | os.ModeDir, false},
		{"keys/acme.asc", 0o640, false},
		{"keys/keydesk-signing.pub.asc", 0o644, false},
		{"keys/keydesk-signing.asc", 0o600, true},
		{"secrets", 0o700 | os.ModeDir, true},
		{"secrets/imap-password", 0o600, true},
		{"secrets/smtp-password", 0o600, true},
		{"secrets/signing-passphrase", 0o600, true},
		{"partner-credentials", 0o700 | os.ModeDir, true},
		{"partner-credentials/acme-sandbox-secret", 0o600, true},
		{"partner-credentials/acme-production-secret", 0o600, true},
	} {
		fi, err := os.Stat(filepath.Join(dir, tc.rel))
		if err != nil {
			t.Errorf("%s: %v", tc.rel, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		wantUID, wantGID := me, os.Getegid()
		if owned {
			wantGID = gid
			if tc.secret {
				wantUID = uid
			}
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != tc.mode || int(st.Uid) != wantUID || int(st.Gid) != wantGID {
			t.Errorf("%s is %v %d:%d; want %v %d:%d", tc.rel, fi.Mode(), st.Uid, st.Gid, tc.mode, wantUID, wantGID)
		}
	}
}

// checkInitSecrets: each secret is its file's whole content, and appears
// in no other file init wrote.
func checkInitSecrets(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"secrets/imap-password": "imap-secret-1", "secrets/smtp-password": "smtp-secret-2",
		"partner-credentials/acme-sandbox-secret": "sandbox-secret-3", "partner-credentials/acme-production-secret": "production-secret-4",
	}
	for rel, want := range files {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s holds %q (%v), want the secret given", rel, b, err)
		}
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		if err != nil || d.IsDir() || files[rel] != "" {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, s := range files {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret that belongs in its own file", rel)
			}
		}
		return nil
	})
}

// TestInitWritesWhatLoads: the files init writes load as serve loads
// them, with the answers where they belong, the contact's fingerprint
// pinned from the key, and the partners' secrets reached through
// batch.env.
func TestInitWritesWhatLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kd")
	stdout, stderr, err := runInitTest(t, initArgv(dir, initFlags(), "--listen", "127.0.0.1:9443"), initSecretsEnv, nil)
	if err != nil {
		t.Fatalf("init: %v\n%s\n%s", err, stdout, stderr)
	}
	for _, w := range []string{"password (web UI):", "API token (CLI, API):", "fingerprint:", "/.well-known/openpgpkey/buildmarkets.example/hu/",
		"gpg --keyserver", "by phone", "keydesk.yaml: ok", "keydesk check --config " + filepath.Join(dir, "keydesk.yaml") + " --connect", "keydesk serve --config"} {
		if !strings.Contains(stdout.String(), w) {
			t.Errorf("init's output lacks %q:\n%s", w, stdout)
		}
	}
	if strings.Contains(stdout.String(), "nats-setup") {
		t.Errorf("init told a single host to run nats-setup")
	}
	cfg, err := config.Load(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Review.Listen != "127.0.0.1:9443" || cfg.IMAP.Password.Reveal() != "imap-secret-1" ||
		cfg.SMTP.Username != "keydesk@buildmarkets.example" || cfg.SMTP.Password.Reveal() != "smtp-secret-2" ||
		!slices.Equal(cfg.SenderAuth.TrustedAuthservIDs, []string{"mx.buildmarkets.example"}) ||
		!slices.Equal(cfg.SenderAuth.InternalDomains, []string{"buildmarkets.example"}) || cfg.Path(cfg.DataDir) != filepath.Join(dir, "data") {
		t.Errorf("keydesk.yaml: listen %s, smtp user %s, authserv %v, internal %v, data %s", cfg.Review.Listen, cfg.SMTP.Username,
			cfg.SenderAuth.TrustedAuthservIDs, cfg.SenderAuth.InternalDomains, cfg.Path(cfg.DataDir))
	}
	benv, err := os.ReadFile(filepath.Join(dir, "batch.env"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range parseEnvFile(benv) {
		t.Setenv(k, v)
	}
	reg, err := config.LoadPartners(filepath.Join(dir, "partners.yaml"), registryKeyChecker{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := reg.Partners[0]
	if p.ID != "acme" || p.TechnicalContact.Fingerprint != initTestFpr || len(p.Requesters) != 2 ||
		!p.Environments["sandbox"].AutoApprove || p.Environments["production"].AutoApprove ||
		p.Environments["production"].APISecret.Reveal() != "production-secret-4" {
		t.Errorf("partners.yaml: %+v", p)
	}
	set, err := users.Load(filepath.Join(dir, "users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenRE.FindStringSubmatch(stdout.String())
	if u, ok := set.ByToken(tok[1]); !ok || u.Name != "ops" || u.Role != users.Admin {
		t.Errorf("the token init printed is not ops's, an admin's: %+v %v", u, ok)
	}
}

// TestInitRefusesToReplace: a second init names the files it would
// replace and leaves them; --force replaces them (a new signing key).
func TestInitRefusesToReplace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kd")
	if _, _, err := runInitTest(t, initArgv(dir, initFlags()), initSecretsEnv, nil); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "keys", "keydesk-signing.asc")
	before, _ := os.ReadFile(key)
	_, _, err := runInitTest(t, initArgv(dir, initFlags()), initSecretsEnv, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "keydesk.yaml")) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a second init: %v; want a refusal naming keydesk.yaml and --force", err)
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("a refused init replaced the signing key")
	}
	if _, _, err := runInitTest(t, initArgv(dir, initFlags(), "--force"), initSecretsEnv, nil); err != nil {
		t.Fatalf("init --force: %v", err)
	}
	if after, _ := os.ReadFile(key); bytes.Equal(before, after) {
		t.Error("init --force kept the old signing key")
	}
}

// TestInitOIDC: with an OpenID Connect issuer, keydesk.yaml holds
// review.oidc as the single sign-on part reads it, the client secret is
// a file under secrets/, and without a local admin password sign-in is
// off.
func TestInitOIDC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kd")
	f := initFlags()
	f["admin"] = ""
	f["oidc-issuer"], f["oidc-client-id"], f["oidc-admin-group"] = "https://idp.example.com/realms/corp", "keydesk", "keydesk-admins"
	stdout, stderr, err := runInitTest(t, initArgv(dir, f), initSecretsEnv, nil)
	if err != nil {
		// The closing check passes too: with single sign-on, an empty
		// users.yaml is a valid start.
		t.Fatalf("init: %v\n%s\n%s", err, stdout, stderr)
	}
	cfg, err := config.Load(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatalf("keydesk.yaml does not load: %v", err)
	}
	if cfg.Review.PasswordLogin() || cfg.Review.OIDC.Issuer != f["oidc-issuer"] || cfg.Review.OIDC.ClientSecret.Reveal() != "oidc-secret-5" ||
		cfg.Review.OIDC.RedirectURL != cfg.Review.BaseURL+"/login/oidc/callback" {
		t.Errorf("loaded review: password login %v, oidc issuer %q, redirect %q", cfg.Review.PasswordLogin(), cfg.Review.OIDC.Issuer, cfg.Review.OIDC.RedirectURL)
	}
	data, err := os.ReadFile(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Review struct {
			LocalLogin *bool `yaml:"local_login"`
			OIDC       struct {
				Issuer, ClientID, ClientSecretFile, RolesClaim string
				Roles                                          map[string][]string
				Scopes                                         []string
				ReauthAfter                                    string
			} `yaml:"oidc"`
		} `yaml:"review"`
	}
	if err := yamlStrict(data, &doc); err != nil {
		t.Fatal(err)
	}
	o := doc.Review.OIDC
	if doc.Review.LocalLogin == nil || *doc.Review.LocalLogin || o.Issuer != f["oidc-issuer"] || o.ClientID != "keydesk" ||
		o.ClientSecretFile != "secrets/oidc-client-secret" || o.RolesClaim != "groups" || !slices.Equal(o.Roles["admin"], []string{"keydesk-admins"}) ||
		!slices.Equal(o.Scopes, []string{"openid", "email", "profile"}) || o.ReauthAfter != "1h" {
		t.Errorf("review in keydesk.yaml: local_login %v, oidc %+v", doc.Review.LocalLogin, o)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "secrets", "oidc-client-secret")); err != nil || strings.TrimSpace(string(b)) != "oidc-secret-5" {
		t.Errorf("secrets/oidc-client-secret: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "users.yaml")); !strings.Contains(string(b), "users: []") {
		t.Errorf("users.yaml without a local admin:\n%s", b)
	}
	if !strings.Contains(stdout.String(), "/login/oidc/callback") || strings.Contains(stdout.String(), "password (web UI)") {
		t.Errorf("init's output: want the callback to register and no password:\n%s", stdout)
	}
}

// yamlStrict decodes YAML with snake_case keys into out.
func yamlStrict(data []byte, out any) error {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return err
	}
	// The test struct's fields are named like the keys without their
	// underscores; yaml.v3 matches lower-cased field names.
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i < len(n.Content); i += 2 {
				if n.Content[i].Value != "local_login" {
					n.Content[i].Value = strings.ReplaceAll(n.Content[i].Value, "_", "")
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&n)
	return n.Decode(out)
}

// TestInitAsks: on a terminal init asks each question, offers defaults,
// asks again after a wrong answer, reads secrets without echo, and skips
// what flags answered.
func TestInitAsks(t *testing.T) {
	lines := []string{
		"",                                     // listen: default
		"https://keydesk.buildmarkets.example", // base URL
		"", "",                                 // data dir, NATS: defaults
		"imap.buildmarkets.example:993", "ssl", "", // IMAP security: wrong, then the default (tls)
		"keydesk@buildmarkets.example", "mx.buildmarkets.example",
		"smtp.buildmarkets.example:587", "", "", // SMTP security and username: defaults
		"Buildmarkets Support <support@buildmarkets.example>", "api-support@buildmarkets.example", "",
		"https://sandbox-api.buildmarkets.example", "https://api.buildmarkets.example",
		"Acme", "acme", "Acme Capital", "*@acme.example", "sec@acme.example", initTestKey,
		"bm_key_acme_sandbox", "", // auto-approve: yes
		"",     // no production
		"", "", // no single sign-on; the admin is "admin"
	}
	secrets := [][]byte{[]byte("imap-typed"), []byte("smtp-typed"), []byte("sandbox-typed")}
	var asked bytes.Buffer
	p := &prompter{in: bufio.NewReader(strings.NewReader(strings.Join(lines, "\n") + "\n")), out: &asked, readSecret: func() ([]byte, error) {
		if len(secrets) == 0 {
			return nil, errors.New("asked for one secret too many")
		}
		s := secrets[0]
		secrets = secrets[1:]
		return s, nil
	}}
	dir := filepath.Join(t.TempDir(), "kd")
	stdout, stderr := &bytes.Buffer{}, &bytes.Buffer{}
	err := runInit(context.Background(), initEnv{stdout: stdout, stderr: stderr, getenv: func(string) string { return "" }, prompter: p, now: time.Now(), euid: os.Geteuid()},
		[]string{dir, "--partner-name", "ignored-if-asked"})
	if err != nil {
		t.Fatalf("init: %v\nasked:\n%s\n%s", err, asked.String(), stderr)
	}
	for _, w := range []string{`"ssl" is not tls`, `"Acme" must be 1-40`, "IMAP password (not shown):", "Address the review UI and API listen on [127.0.0.1:8080]:",
		"its fingerprint, to be pinned: B9CC B7B4 0795 7889 2000 8F9E 2A8E DAD0 7EB4 FCA7"} {
		if !strings.Contains(asked.String(), w) {
			t.Errorf("the dialogue lacks %q:\n%s", w, asked.String())
		}
	}
	if strings.Contains(asked.String(), "Partner name") {
		t.Error("init asked for the partner's name, which a flag gave")
	}
	cfg, err := config.Load(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IMAP.Security != "tls" || cfg.SMTP.Username != "keydesk@buildmarkets.example" || cfg.SMTP.Password.Reveal() != "smtp-typed" ||
		cfg.Review.BaseURL != "https://keydesk.buildmarkets.example" || cfg.Review.Listen != "127.0.0.1:8080" {
		t.Errorf("keydesk.yaml from the dialogue: %+v %+v %+v", cfg.IMAP.MailServer, cfg.SMTP.MailServer, cfg.Review)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "partners.yaml")); !strings.Contains(string(b), `name: "ignored-if-asked"`) {
		t.Errorf("partners.yaml does not hold the name the flag gave:\n%s", b)
	}
}

// TestInitHelp: init --help names every flag and where each secret may
// come from.
func TestInitHelp(t *testing.T) {
	_, stderr, err := runInitTest(t, []string{"--help"}, nil, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("init --help: %v", err)
	}
	for _, w := range []string{"usage: keydesk init DIR", "-service-user user", "-force", "-yes", "-imap-password-file file", "KEYDESK_IMAP_PASSWORD",
		"-oidc-client-secret-file file", "KEYDESK_OIDC_CLIENT_SECRET", "-contact-key", "-listen", "-smtp-from"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("init --help lacks %q", w)
		}
	}
	if _, _, err := runInitTest(t, []string{}, nil, nil); !errors.Is(err, errUsage) {
		t.Errorf("init without DIR: %v, want the usage", err)
	}
}

// TestREADMECommands: the README's command list names every command
// keydesk --help lists, and the old name of nats-setup only as such.
func TestREADMECommands(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, c := range commandTable() {
		if !c.hidden && !strings.Contains(readme, "\n    keydesk "+c.name+" ") && !strings.Contains(readme, "\n    keydesk "+c.name+"\n") {
			t.Errorf("README.md's Commands do not list keydesk %s", c.name)
		}
	}
	if strings.Contains(readme, "\n    keydesk setup ") {
		t.Error("README.md's Commands still list keydesk setup")
	}
	if !strings.Contains(readme, "## From demo to production") {
		t.Error("README.md has no section From demo to production")
	}
}

// TestInitServiceUserNeedsRoot: only root may give files to the service
// user; anyone else is told so before a question is asked.
func TestInitServiceUserNeedsRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kd")
	var out bytes.Buffer
	err := runInit(context.Background(), initEnv{stdout: &out, stderr: &out, getenv: func(string) string { return "" }, now: time.Now(), euid: 1000},
		initArgv(dir, initFlags(), "--service-user", "nobody"))
	if err == nil || !strings.Contains(err.Error(), "--service-user nobody: giving files to another user needs root") {
		t.Fatalf("init --service-user as uid 1000: %v", err)
	}
	if exists(dir) {
		t.Errorf("init made %s", dir)
	}
	if os.Geteuid() != 0 {
		return
	}
	if _, _, err := runInitTest(t, initArgv(dir, initFlags(), "--service-user", "no-such-user-kd"), initSecretsEnv, nil); err == nil ||
		!strings.Contains(err.Error(), `--service-user: user "no-such-user-kd": no such user`) {
		t.Errorf("init --service-user with an unknown user: %v", err)
	}
}

// TestInitCluster: with a NATS cluster's URL, keydesk.yaml asks for three
// replicas and the next steps start with nats-setup, before check
// --connect looks for the streams.
func TestInitCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kd")
	f := initFlags()
	f["nats-url"] = "tls://nats-1.buildmarkets.example:4222,tls://nats-2.buildmarkets.example:4222"
	stdout, stderr, err := runInitTest(t, initArgv(dir, f), initSecretsEnv, nil)
	if err != nil {
		t.Fatalf("init: %v\n%s\n%s", err, stdout, stderr)
	}
	cfg, err := config.Load(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != f["nats-url"] || cfg.NATS.Replicas != 3 {
		t.Errorf("nats in keydesk.yaml: %+v", cfg.NATS)
	}
	out := stdout.String()
	setup, connect := strings.Index(out, "keydesk nats-setup --config"), strings.Index(out, "--connect")
	if setup < 0 || connect < setup {
		t.Errorf("the next steps do not run nats-setup before check --connect:\n%s", out)
	}
}
