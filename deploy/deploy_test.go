package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

var roles = []string{"intake", "review", "batch", "delivery"}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeDocs(t, path, b)
}

// decodeDocs parses every document of YAML b, read from path.
func decodeDocs(t *testing.T, path string, b []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d == nil {
			t.Fatalf("%s: document %d is empty", path, len(docs)+1)
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// get walks a parsed document: get(d, "spec", "template", "spec").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

// TestYAMLFilesParse parses every YAML file of the kit.
func TestYAMLFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			yamlDocs(t, p)
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 15 {
		t.Fatalf("found only %d YAML files", n)
	}
}

func toStrings(v any) []string {
	var out []string
	s, _ := v.([]any)
	for _, x := range s {
		out = append(out, x.(string))
	}
	return out
}

// TestComposeFile checks the local stack: the 3-node cluster, each role as
// its own service with its own NATS identity, the mail servers, and every
// file it mounts present.
func TestComposeFile(t *testing.T) {
	c := yamlDocs(t, "compose.yaml")[0]
	services := get(c, "services").(map[string]any)
	for _, s := range []string{"nats-1", "nats-2", "nats-3", "setup", "intake", "review", "batch", "delivery", "fakeapi", "dovecot", "mailpit"} {
		if services[s] == nil {
			t.Errorf("compose.yaml: no service %s", s)
		}
	}
	for _, role := range roles {
		s := services[role]
		cmd := strings.Join(toStrings(get(s, "command")), " ")
		if !strings.Contains(cmd, "--roles "+role) {
			t.Errorf("%s: command %q", role, cmd)
		}
		if get(s, "environment", "KEYDESK_NATS_CERT") != "tls/"+role+".pem" {
			t.Errorf("%s: connects to NATS as %v, not as itself", role, get(s, "environment", "KEYDESK_NATS_CERT"))
		}
		if get(s, "environment", "KEYDESK_NATS_INBOX_PREFIX") != "_INBOX_"+role {
			t.Errorf("%s: replies under %v, not its own _INBOX_%s", role, get(s, "environment", "KEYDESK_NATS_INBOX_PREFIX"), role)
		}
		if get(s, "depends_on", "setup", "condition") != "service_completed_successfully" {
			t.Errorf("%s does not wait for setup", role)
		}
	}
	// One image for every keydesk service: the one `make image` builds,
	// from deploy/Dockerfile with the version stamped from VERSION.
	for _, name := range append([]string{"setup", "fakeapi"}, roles...) {
		s := services[name]
		if get(s, "image") != "keydesk:${VERSION:-local}" {
			t.Errorf("%s: image %v, want the one built here", name, get(s, "image"))
		}
		if name == "fakeapi" {
			continue
		}
		if get(s, "build", "dockerfile") != "deploy/Dockerfile" || get(s, "build", "args", "VERSION") != "${VERSION:-}" {
			t.Errorf("%s: build %v: want deploy/Dockerfile with the VERSION build argument", name, get(s, "build"))
		}
	}
	if cmd := toStrings(get(services["setup"], "command")); len(cmd) == 0 || cmd[0] != "nats-setup" {
		t.Errorf("setup runs %v, want keydesk nats-setup", cmd)
	}
	if get(services["setup"], "environment", "KEYDESK_NATS_CERT") != "tls/admin.pem" {
		t.Error("setup must run as the NATS admin")
	}
	if get(services["setup"], "environment", "KEYDESK_NATS_INBOX_PREFIX") != "_INBOX_admin" {
		t.Error("setup must take its replies under _INBOX_admin")
	}
	// The partners' API secrets are batch's alone: it alone gets batch.env,
	// and every other keydesk service has an empty directory over them.
	for _, name := range append([]string{"setup"}, roles...) {
		s := services[name]
		envFiles := toStrings(get(s, "env_file"))
		hidden := slices.Contains(toStrings(get(s, "tmpfs")), "/etc/keydesk/partner-credentials")
		if name == "batch" {
			if !slices.Equal(envFiles, []string{"./examples/batch.env"}) || hidden {
				t.Errorf("batch: env_file %v, tmpfs %v: it needs batch.env and the credentials", envFiles, get(s, "tmpfs"))
			}
			continue
		}
		if len(envFiles) > 0 || !hidden {
			t.Errorf("%s: env_file %v, tmpfs %v: the partners' API secrets must be hidden from it", name, envFiles, get(s, "tmpfs"))
		}
		for k := range asMap(get(s, "environment")) {
			if strings.HasSuffix(k, "_SECRET_FILE") {
				t.Errorf("%s sets %s", name, k)
			}
		}
	}
	for name, s := range services {
		for _, f := range toStrings(get(s, "env_file")) {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("%s: env_file %s: %v", name, f, err)
			}
		}
	}
	for name, s := range services {
		vols, _ := get(s, "volumes").([]any)
		for _, v := range vols {
			src, _, _ := strings.Cut(v.(string), ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
		for _, a := range toStrings(get(s, "command")) {
			if strings.HasPrefix(a, "/etc/keydesk/") {
				if _, err := os.Stat(filepath.Join("examples", strings.TrimPrefix(a, "/etc/keydesk/"))); err != nil {
					t.Errorf("%s names %s, which deploy/examples lacks", name, a)
				}
			}
		}
	}
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// TestDockerfile checks the image's promises where no container engine
// runs: a static build, a distroless base, a non-root user.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"CGO_ENABLED=0", "FROM gcr.io/distroless/static", "USER 65532:65532", "-trimpath", "./cmd/keydesk"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(s, "\nFROM ") < 1 || !strings.HasPrefix(strings.TrimSpace(s[strings.Index(s, "FROM "):]), "FROM golang:") {
		t.Error("Dockerfile is not a multi-stage build from a Go image")
	}
}

// TestSystemdUnits runs systemd-analyze verify on both units, the
// template as the intake instance and as the batch instance with its
// drop-in, which must print nothing: systemd only warns, and exits 0, on
// a bad directive.
func TestSystemdUnits(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	// The units start /usr/local/bin/keydesk, which verify wants to exist.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"keydesk.service", "keydesk@.service", "keydesk@batch.service.d/partner-credentials.conf"}
	units := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("systemd", f))
		if err != nil {
			t.Fatal(err)
		}
		units[f] = string(b)
		s := strings.ReplaceAll(string(b), "/usr/local/bin/keydesk", self)
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files[:2] {
		for _, want := range []string{"ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "User=keydesk", "ExecReload=/bin/kill -HUP $MAINPID", "\nLoadCredential=secrets:/etc/keydesk/secrets\n"} {
			if !strings.Contains(units[f], want) {
				t.Errorf("%s lacks %s", f, want)
			}
		}
	}
	// The partners' API secrets: the one-host unit runs batch; of the
	// template's instances, batch alone, through its drop-in.
	const partners = "\nLoadCredential=partner-credentials:/etc/keydesk/partner-credentials\n"
	for f, want := range map[string]bool{files[0]: true, files[1]: false, files[2]: true} {
		if strings.Contains(units[f], partners) != want {
			t.Errorf("%s loads the partners' API secrets: %v, want %v", f, !want, want)
		}
	}
	cmd := exec.Command(analyze, "verify", "--man=no", "keydesk.service", "keydesk@intake.service", "keydesk@batch.service")
	cmd.Dir = dir
	// The unit search path is the temp dir alone (the trailing colon adds
	// the built-in ones), so the batch instance is verified with its drop-in.
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDovecotConfig checks the compose stack's Dovecot config with the
// real doveconf.
func TestDovecotConfig(t *testing.T) {
	doveconf := testenv.LookPath(t, "doveconf", "dovecot-core")
	wd, _ := os.Getwd()
	b, err := os.ReadFile("compose/dovecot/dovecot.conf")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(
		"/etc/dovecot/tls/", filepath.Join(wd, "examples/tls")+"/",
		"/etc/dovecot/users", filepath.Join(wd, "compose/dovecot/users"),
	).Replace(string(b))
	p := filepath.Join(t.TempDir(), "dovecot.conf")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(doveconf, "-n", "-c", p).CombinedOutput()
	if err != nil {
		t.Fatalf("doveconf: %v\n%s", err, out)
	}
	for _, want := range []string{"ssl = required", "mailbox Processed", "mailbox Rejected"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("doveconf -n lacks %q:\n%s", want, out)
		}
	}
}

// TestExamplesFollowSecretsConvention: every secret of the example
// configs is a file relative to the config's directory, under one of the
// directories the systemd units load whole (secrets/, partner-credentials/),
// and exists there, so the examples and the units agree without a line
// rewritten; no example names systemd's own credential paths.
func TestExamplesFollowSecretsConvention(t *testing.T) {
	secretKey := regexp.MustCompile(`^(password|passphrase|api_key|api_secret|token|client_secret|webhook_url)_file$`)
	loaded := map[string]bool{"secrets": true, "partner-credentials": true}
	var paths []string
	var walk func(n any, key string)
	walk = func(n any, key string) {
		switch v := n.(type) {
		case map[string]any:
			for k, c := range v {
				walk(c, k)
			}
		case []any:
			for _, c := range v {
				walk(c, key)
			}
		case string:
			if secretKey.MatchString(key) && !strings.HasPrefix(v, "${") {
				paths = append(paths, v)
			}
		}
	}
	configs, _ := filepath.Glob("examples/*.yaml")
	for _, f := range configs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "/run/credentials") {
			t.Errorf("%s names /run/credentials: name the secret relative to the config", f)
		}
		walk(yamlDocs(t, f)[0], "")
	}
	// partners.yaml names its API secrets through batch.env.
	b, err := os.ReadFile("examples/batch.env")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			paths = append(paths, v)
		}
	}
	if len(paths) < 6 {
		t.Fatalf("found only %d secret files in the examples: %v", len(paths), paths)
	}
	for _, p := range paths {
		dir, _, _ := strings.Cut(p, "/")
		if filepath.IsAbs(p) || !filepath.IsLocal(p) || !loaded[dir] {
			t.Errorf("secret file %s: want a path relative to the config, under secrets/ or partner-credentials/", p)
		}
		if _, err := os.Stat(filepath.Join("examples", p)); err != nil {
			t.Errorf("secret file %s: %v", p, err)
		}
	}
	for _, u := range []string{"systemd/keydesk.service", "systemd/keydesk@batch.service.d/partner-credentials.conf"} {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		for dir := range loaded {
			if dir == "secrets" && strings.Contains(u, ".d/") {
				continue
			}
			if !strings.Contains(string(b), "LoadCredential="+dir+":/etc/keydesk/"+dir+"\n") {
				t.Errorf("%s does not load /etc/keydesk/%s as the credentials %s_*", u, dir, dir)
			}
		}
	}
}
