package deploy

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/review/users"
)

// manifests is the output of one kustomize build, by kind and name.
type manifests map[string]map[string]map[string]any

// kustomize builds the kustomization at dir of fsys, as `kubectl apply
// -k` does (kustomize's own loader, its load restrictions).
func kustomize(t *testing.T, fsys filesys.FileSystem, dir string) manifests {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	out := manifests{}
	for _, d := range decodeDocs(t, dir, b) {
		kind, _ := d["kind"].(string)
		name, _ := get(d, "metadata", "name").(string)
		if d["apiVersion"] == nil || kind == "" || name == "" {
			t.Fatalf("%s: a document without apiVersion, kind or metadata.name", dir)
		}
		if out[kind] == nil {
			out[kind] = map[string]map[string]any{}
		}
		out[kind][name] = d
	}
	return out
}

// memCopy copies deploy/kubernetes into an in-memory file system at
// /kubernetes, for a test to change without touching the tree.
func memCopy(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir("kubernetes", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile("/"+filepath.ToSlash(p), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// editMem replaces old with new in the file p of fsys, which must hold it.
func editMem(t *testing.T, fsys filesys.FileSystem, p, old, new string) {
	t.Helper()
	b, err := fsys.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s no longer holds %q: update the test", p, old)
	}
	if err := fsys.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1))); err != nil {
		t.Fatal(err)
	}
}

// overlays lists deploy/kubernetes/overlays/*.
func overlays(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob("kubernetes/overlays/*/kustomization.yaml")
	if len(dirs) < 2 {
		t.Fatalf("overlays %v: want production and staging at least", dirs)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// podSecrets lists the Secrets a pod template mounts.
func podSecrets(pod any) map[string]bool {
	out := map[string]bool{}
	vols, _ := get(pod, "volumes").([]any)
	for _, v := range vols {
		if s, ok := get(v, "secret", "secretName").(string); ok {
			out[s] = true
		}
	}
	return out
}

// partnerSecrets are the partners' API secrets a pod mounts, and the
// *_SECRET_FILE variables its containers set.
func partnerSecrets(pod any) (secrets, vars []string) {
	for s := range podSecrets(pod) {
		if strings.HasPrefix(s, "keydesk-partner-") {
			secrets = append(secrets, s)
		}
	}
	cs, _ := get(pod, "containers").([]any)
	for _, c := range cs {
		for _, e := range containerEnv(c) {
			if strings.HasSuffix(e[0], "_SECRET_FILE") {
				vars = append(vars, e[0])
			}
		}
	}
	slices.Sort(secrets)
	slices.Sort(vars)
	return secrets, vars
}

// containerEnv returns a container's env entries as name, value (a
// value from a ConfigMap key as "configmap:NAME:KEY").
func containerEnv(c any) [][2]string {
	var out [][2]string
	env, _ := get(c, "env").([]any)
	for _, e := range env {
		n, _ := get(e, "name").(string)
		v, _ := get(e, "value").(string)
		if ref := get(e, "valueFrom", "configMapKeyRef"); ref != nil {
			v = fmt.Sprintf("configmap:%v:%v", get(ref, "name"), get(ref, "key"))
		}
		out = append(out, [2]string{n, v})
	}
	return out
}

// TestKubernetesOverlays builds every overlay and checks what the kit
// promises: a Deployment per role, non-root and read-only, with probes
// and memory limits, each mounting only its own secrets; the partners' API
// secrets on batch alone; the setup Job running nats-setup; an Ingress
// with TLS for the overlay's host, to the review Service; a default-deny
// NetworkPolicy; the overlay's image.
func TestKubernetesOverlays(t *testing.T) {
	for _, dir := range overlays(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := kustomize(t, filesys.MakeFsOnDisk(), dir)
			for kind, n := range map[string]int{"Namespace": 1, "Job": 1, "Service": 1, "Ingress": 1, "ConfigMap": 3, "Deployment": len(roles)} {
				if len(m[kind]) != n {
					t.Errorf("%d %s, want %d", len(m[kind]), kind, n)
				}
			}
			if len(m["NetworkPolicy"]) < 2 {
				t.Errorf("%d NetworkPolicies: want default-deny and what each role may reach", len(m["NetworkPolicy"]))
			}
			if d := m["NetworkPolicy"]["default-deny"]; d == nil || !slices.Contains(toStrings(get(d, "spec", "policyTypes")), "Ingress") || !slices.Contains(toStrings(get(d, "spec", "policyTypes")), "Egress") {
				t.Error("no default-deny NetworkPolicy for both directions")
			}
			for _, role := range roles {
				checkRoleDeployment(t, m, role)
			}
			checkSetupJob(t, m)
			checkIngress(t, m)
		})
	}
}

func checkRoleDeployment(t *testing.T, m manifests, role string) {
	d := m["Deployment"]["keydesk-"+role]
	if d == nil {
		t.Errorf("no Deployment keydesk-%s", role)
		return
	}
	pod := get(d, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true || get(pod, "automountServiceAccountToken") != false {
		t.Errorf("%s: the pod must run as non-root without a service account token", role)
	}
	c := get(pod, "containers", 0)
	args := strings.Join(toStrings(get(c, "args")), " ")
	if !strings.Contains(args, "--roles "+role) || !strings.Contains(args, "/etc/keydesk/config/"+role+".yaml") {
		t.Errorf("%s: args %q do not run the role with its own config", role, args)
	}
	if img, _ := get(c, "image").(string); !strings.Contains(img, "/keydesk:") {
		t.Errorf("%s: image %q: the overlay must name the registry's image and tag", role, img)
	}
	sc := get(c, "securityContext")
	if get(sc, "allowPrivilegeEscalation") != false || get(sc, "readOnlyRootFilesystem") != true || !slices.Contains(toStrings(get(sc, "capabilities", "drop")), "ALL") {
		t.Errorf("%s: container security context %v", role, sc)
	}
	if get(c, "resources", "limits", "memory") == nil || get(c, "resources", "requests", "cpu") == nil {
		t.Errorf("%s: no resource limits", role)
	}
	if get(c, "livenessProbe", "httpGet", "path") != "/healthz" || get(c, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("%s: probes must be /healthz (liveness) and /readyz (readiness)", role)
	}
	// Least exposure: only batch holds the signing key, only review the
	// staff hashes, each role its own NATS identity.
	secrets := podSecrets(pod)
	if secrets["keydesk-signing"] != (role == "batch") || secrets["keydesk-users"] != (role == "review") || !secrets["keydesk-nats-"+role] {
		t.Errorf("%s mounts secrets %v", role, secrets)
	}
	// Only batch calls the Buildmarkets API: only it mounts the partners'
	// credentials and names them to partners.yaml.
	ps, vars := partnerSecrets(pod)
	if (len(ps) > 0) != (role == "batch") || (len(vars) > 0) != (role == "batch") || len(ps) != len(vars) {
		t.Errorf("%s mounts partner secrets %v and sets %v: the partners' API credentials are batch's alone, one variable each", role, ps, vars)
	}
	cm, _ := get(pod, "volumes", 0, "configMap", "name").(string)
	if !strings.HasPrefix(cm, "keydesk-config-") || m["ConfigMap"][cm] == nil {
		t.Errorf("%s: config volume %q is not the generated, hash-named keydesk-config", role, cm)
	}
}

func checkSetupJob(t *testing.T, m manifests) {
	for name, j := range m["Job"] {
		pod := get(j, "spec", "template", "spec")
		if args := toStrings(get(pod, "containers", 0, "args")); len(args) == 0 || args[0] != "nats-setup" {
			t.Errorf("Job %s runs %v, want keydesk nats-setup", name, args)
		}
		if ps, vars := partnerSecrets(pod); len(ps)+len(vars) > 0 {
			t.Errorf("Job %s gets the partners' API credentials %v %v", name, ps, vars)
		}
		if s := podSecrets(pod); !s["keydesk-nats-admin"] || len(s) != 1 {
			t.Errorf("Job %s mounts %v, want the NATS admin identity alone", name, s)
		}
	}
}

func checkIngress(t *testing.T, m manifests) {
	var host string
	for name, cm := range m["ConfigMap"] {
		if strings.HasPrefix(name, "keydesk-site-") {
			host, _ = get(cm, "data", "host").(string)
		}
	}
	if host == "" || host == "keydesk.example.invalid" {
		t.Errorf("the overlay sets no host (keydesk-site): %q", host)
	}
	ing := m["Ingress"]["keydesk-review"]
	rule := get(ing, "spec", "rules", 0)
	if get(rule, "host") != host || !slices.Contains(toStrings(get(ing, "spec", "tls", 0, "hosts")), host) || get(ing, "spec", "tls", 0, "secretName") == nil {
		t.Errorf("Ingress: rule host %v, TLS %v: want TLS for %s", get(rule, "host"), get(ing, "spec", "tls"), host)
	}
	backend := get(rule, "http", "paths", 0, "backend", "service")
	svc := m["Service"][fmt.Sprint(get(backend, "name"))]
	if svc == nil {
		t.Fatalf("Ingress points at %v, which is no Service", get(backend, "name"))
	}
	if get(svc, "spec", "selector", "app.kubernetes.io/component") != "review" {
		t.Errorf("Ingress points at %v, which selects %v, not review", get(backend, "name"), get(svc, "spec", "selector"))
	}
	port := get(backend, "port", "name")
	found := false
	for _, p := range get(svc, "spec", "ports").([]any) {
		found = found || get(p, "name") == port && get(p, "targetPort") == "http"
	}
	if !found {
		t.Errorf("Ingress port %v is not a port of the review Service to its http port", port)
	}
}

// TestKubernetesConfigChangeRollsEveryRole: the config is generated with
// its content's hash in its name, so a change gives every Deployment a new
// pod template (Kubernetes rolls them all: a reload without SIGHUP),
// naming a ConfigMap that the build holds; the setup Job, whose template
// cannot change, is left alone.
func TestKubernetesConfigChangeRollsEveryRole(t *testing.T) {
	fsys := memCopy(t)
	const overlay = "/kubernetes/overlays/production"
	before := kustomize(t, fsys, overlay)
	editMem(t, fsys, "/kubernetes/base/config/partners.yaml", `requesters: ["*@acme.example"]`, `requesters: ["*@acme.example", "cto@acme-holdings.example"]`)
	after := kustomize(t, fsys, overlay)
	for _, role := range roles {
		name := "keydesk-" + role
		b, a := get(before["Deployment"][name], "spec", "template"), get(after["Deployment"][name], "spec", "template")
		if reflect.DeepEqual(a, b) {
			t.Errorf("%s: the pod template did not change with the config: no rollout", name)
		}
		cm, _ := get(a, "spec", "volumes", 0, "configMap", "name").(string)
		if cm == get(b, "spec", "volumes", 0, "configMap", "name") || after["ConfigMap"][cm] == nil {
			t.Errorf("%s: config volume %q after the change", name, cm)
		}
		if !strings.Contains(fmt.Sprint(get(after["ConfigMap"][cm], "data", "partners.yaml")), "cto@acme-holdings.example") {
			t.Errorf("%s: its ConfigMap %s lacks the change", name, cm)
		}
	}
	if !reflect.DeepEqual(before["Job"], after["Job"]) {
		t.Error("the setup Job changed with the roles' config: its template cannot be updated in place")
	}
}

// TestKubernetesPartnerEnvironmentByOneFile: a partner environment is one
// component file in the overlay (and its name in the overlay's list):
// with it, the batch Deployment mounts that environment's Secret and sets
// the variable partners.yaml reads, pointing into the mount; no other
// workload gets any partner secret.
func TestKubernetesPartnerEnvironmentByOneFile(t *testing.T) {
	fsys := memCopy(t)
	const overlay = "/kubernetes/overlays/production"
	b, err := fsys.ReadFile(overlay + "/partner-credentials/acme-sandbox/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The file as an operator writes it, copied from an existing one.
	globex := strings.NewReplacer("acme-sandbox", "globex-sandbox", "ACME_SANDBOX_SECRET_FILE", "GLOBEX_SANDBOX_SECRET_FILE").Replace(string(b))
	if err := fsys.WriteFile(overlay+"/partner-credentials/globex-sandbox/kustomization.yaml", []byte(globex)); err != nil {
		t.Fatal(err)
	}
	editMem(t, fsys, overlay+"/kustomization.yaml", "  - partner-credentials/acme-production\n", "  - partner-credentials/acme-production\n  - partner-credentials/globex-sandbox\n")
	m := kustomize(t, fsys, overlay)
	for kind, objs := range map[string]map[string]map[string]any{"Deployment": m["Deployment"], "Job": m["Job"]} {
		for name, o := range objs {
			pod := get(o, "spec", "template", "spec")
			ps, vars := partnerSecrets(pod)
			if name != "keydesk-batch" {
				if len(ps)+len(vars) > 0 {
					t.Errorf("%s %s gets partner secrets %v %v", kind, name, ps, vars)
				}
				continue
			}
			want := []string{"keydesk-partner-acme-production", "keydesk-partner-acme-sandbox", "keydesk-partner-globex-sandbox"}
			if !slices.Equal(ps, want) || !slices.Contains(vars, "GLOBEX_SANDBOX_SECRET_FILE") || len(vars) != len(want) {
				t.Errorf("batch mounts %v and sets %v: want %v and a variable each", ps, vars, want)
			}
			checkSecretFileInMount(t, pod, "GLOBEX_SANDBOX_SECRET_FILE", "keydesk-partner-globex-sandbox")
		}
	}
}

// checkSecretFileInMount: the variable names a file inside the mount of
// the Secret.
func checkSecretFileInMount(t *testing.T, pod any, variable, secret string) {
	t.Helper()
	var vol, file string
	for _, v := range get(pod, "volumes").([]any) {
		if get(v, "secret", "secretName") == secret {
			vol, _ = get(v, "name").(string)
		}
	}
	c := get(pod, "containers", 0)
	for _, e := range containerEnv(c) {
		if e[0] == variable {
			file = e[1]
		}
	}
	for _, vm := range get(c, "volumeMounts").([]any) {
		if get(vm, "name") == vol && path.Dir(file) == get(vm, "mountPath") {
			return
		}
	}
	t.Errorf("%s=%s is not a file of the mount of %s (volume %q)", variable, file, secret, vol)
}

// TestKubernetesConfigs loads each role's keydesk.yaml from the built
// production overlay as keydesk would, with the files it names put in
// place (example keys and certificates, stand-in secrets) and the
// environment of the role's Deployment: every key is known and valid,
// the contact key matches its pinned fingerprint, batch's signing key
// opens and batch has every partner's API credentials, which no other
// role holds.
func TestKubernetesConfigs(t *testing.T) {
	m := kustomize(t, filesys.MakeFsOnDisk(), "kubernetes/overlays/production")
	root := t.TempDir()
	re := strings.NewReplacer("/etc/keydesk/", root+"/etc/keydesk/")
	put := func(p, content string) {
		p = re.Replace(p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	put("/etc/keydesk/nats/ca.crt", read("examples/tls/ca.pem"))
	put("/etc/keydesk/nats/tls.crt", read("examples/tls/intake.pem"))
	put("/etc/keydesk/nats/tls.key", read("examples/tls/intake-key.pem"))
	put("/etc/keydesk/secrets/imap-password", "stand-in")
	put("/etc/keydesk/secrets/smtp-password", "stand-in")
	put("/etc/keydesk/signing/keydesk-signing.asc", read("examples/keys/keydesk-signing.EXAMPLE.asc"))
	put("/etc/keydesk/signing/passphrase", "example-only-not-secret")
	put("/etc/keydesk/users/users.yaml", read("examples/users.yaml"))
	put("/etc/keydesk/contacts/acme.asc", read("examples/keys/acme.asc"))
	configMaps := map[string]map[string]any{}
	for name, cm := range m["ConfigMap"] {
		data, _ := get(cm, "data").(map[string]any)
		configMaps[name] = data
		if strings.HasPrefix(name, "keydesk-config-") || strings.HasPrefix(name, "keydesk-setup-config-") {
			for f, v := range data {
				put("/etc/keydesk/config/"+f, re.Replace(v.(string)))
			}
		}
	}
	for _, role := range append([]string{"admin"}, roles...) {
		t.Run(role, func(t *testing.T) {
			if role != "admin" {
				c := get(m["Deployment"]["keydesk-"+role], "spec", "template", "spec", "containers", 0)
				for _, e := range containerEnv(c) {
					if ref, ok := strings.CutPrefix(e[1], "configmap:"); ok {
						name, key, _ := strings.Cut(ref, ":")
						e[1] = fmt.Sprint(configMaps[name][key])
					}
					if strings.HasSuffix(e[0], "_SECRET_FILE") {
						put(e[1], "stand-in")
					}
					t.Setenv(e[0], re.Replace(e[1]))
				}
			}
			checkRoleConfig(t, role, re.Replace("/etc/keydesk/config/"+role+".yaml"))
		})
	}
}

func checkRoleConfig(t *testing.T, role, path string) {
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%s.yaml: %v", role, err)
	}
	if cfg.NATS.SkipSetup != (role != "admin") {
		t.Errorf("%s.yaml: nats.skip_setup %v: only admin makes streams", role, cfg.NATS.SkipSetup)
	}
	// nats/accounts.conf lets each role user subscribe to its own inbox
	// prefix only.
	if want := "_INBOX_" + role; cfg.NATS.InboxPrefix != want {
		t.Errorf("%s.yaml: nats.inbox_prefix %q, want %q", role, cfg.NATS.InboxPrefix, want)
	}
	if role != "admin" && cfg.Review.BaseURL != "https://keydesk.buildmarkets.example" {
		t.Errorf("%s.yaml: review.base_url %q, want the overlay's host", role, cfg.Review.BaseURL)
	}
	if role != "admin" {
		checkRolePartners(t, role, cfg)
	}
	switch role {
	case "intake":
		if cfg.IMAP.Address == "" || cfg.IMAP.Security != mailauth.SecurityTLS {
			t.Errorf("intake.yaml: imap %+v", cfg.IMAP.MailServer)
		}
	case "delivery":
		if cfg.SMTP.Address == "" || cfg.SMTP.Security == mailauth.SecurityNone {
			t.Errorf("delivery.yaml: smtp %+v", cfg.SMTP.MailServer)
		}
	case "batch":
		s, err := crypto.LoadSigner(cfg.Path(cfg.SigningKey.File), cfg.SigningKey.Passphrase)
		if err != nil {
			t.Fatalf("batch.yaml: signing key: %v", err)
		}
		s.Close()
	case "review":
		if _, err := users.Load(cfg.Path(cfg.Review.UsersFile)); err != nil {
			t.Errorf("review.yaml: %v", err)
		}
	}
	// A role's config names only the secrets that role needs.
	if role != "intake" && !cfg.IMAP.Password.IsZero() {
		t.Errorf("%s.yaml holds the IMAP password", role)
	}
	if role != "delivery" && !cfg.SMTP.Password.IsZero() {
		t.Errorf("%s.yaml holds the SMTP password", role)
	}
	if role != "batch" && cfg.SigningKey.File != "" {
		t.Errorf("%s.yaml names the signing key", role)
	}
}

func checkRolePartners(t *testing.T, role string, cfg *config.Config) {
	reg, err := config.LoadPartners(cfg.Path(cfg.PartnersFile), crypto.Checker{}, time.Now())
	if err != nil {
		t.Fatalf("partners.yaml: %v", err)
	}
	if err := config.CheckCredentials(cfg.Path(cfg.PartnersFile), reg); (err == nil) != (role == "batch") {
		t.Errorf("%s: partners' API credentials: %v; want them all on batch, none elsewhere", role, err)
	}
	for _, p := range reg.Partners {
		for env, pe := range p.Environments {
			if role != "batch" && !pe.APISecret.IsZero() {
				t.Errorf("%s holds %s's %s API secret", role, p.ID, env)
			}
		}
	}
}
