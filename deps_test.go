package keydesk_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestImportRules holds the dependency rules of DESIGN.md: imports that
// must never exist, checked on the full (transitive) dependency lists.
func TestImportRules(t *testing.T) {
	const mod = "github.com/buildmarkets/keydesk"
	rules := []struct {
		pkg       string
		forbidden []string // module-local package paths or prefixes of third-party ones
	}{
		{mod, []string{mod + "/", "github.com/nats-io/", "github.com/emersion/", "github.com/ProtonMail/", "net/http", "net/smtp", "crypto/tls", "os/exec"}},
		{mod + "/queue", []string{mod + "/intake", mod + "/review", mod + "/batch", mod + "/delivery", mod + "/bmapi", mod + "/crypto"}},
		{mod + "/review", []string{mod + "/crypto", mod + "/bmapi", mod + "/batch", "github.com/ProtonMail/"}},
		{mod + "/intake", []string{mod + "/bmapi", mod + "/batch", mod + "/config"}},
		{mod + "/delivery", []string{mod + "/bmapi", mod + "/config"}},
		// Configuration stays at the edge: main turns the config sections
		// into each package's options (docs/architecture.md).
		{mod + "/batch", []string{mod + "/config"}},
		{mod + "/bmapi", []string{mod + "/config"}},
		{mod + "/crypto", []string{mod + "/config"}},
		{mod + "/mailauth", []string{mod + "/config"}},
		// observe reads the queue and the partner registry and alerts
		// through the outbox: it never creates keys or touches them.
		{mod + "/observe", []string{mod + "/config", mod + "/bmapi", mod + "/crypto", mod + "/batch", mod + "/delivery", mod + "/intake", mod + "/review"}},
		// notify runs in the review role: it reads requests and posts to a
		// chat and the outbox; it touches no key and calls no API.
		{mod + "/notify", []string{mod + "/config", mod + "/bmapi", mod + "/crypto", mod + "/batch", mod + "/delivery", mod + "/intake", mod + "/review", "github.com/ProtonMail/"}},
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			pattern := r.pkg + "/..."
			if r.pkg == mod {
				pattern = mod // the domain alone, not the whole module
			}
			out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pattern).CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "matched no packages") {
					t.Fatalf("%s does not exist yet", r.pkg)
				}
				t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			if !slices.Contains(deps, r.pkg) {
				t.Fatalf("package %s not found: %s", r.pkg, out)
			}
			for _, dep := range deps {
				if dep == r.pkg || (r.pkg != mod && strings.HasPrefix(dep, r.pkg+"/")) {
					continue // the package itself and its own subpackages
				}
				for _, f := range r.forbidden {
					if dep == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s depends on %s, which DESIGN.md forbids", r.pkg, dep)
					}
				}
			}
		})
	}
}

// TestOnlyQueueImportsNATS holds the storage rule: JetStream is reached
// through queue's typed methods, so no other package (tests and internal/
// helpers aside) imports the NATS client.
func TestOnlyQueueImportsNATS(t *testing.T) {
	const mod = "github.com/buildmarkets/keydesk"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		if pkg == mod+"/queue" || strings.HasPrefix(pkg, mod+"/internal/") {
			continue
		}
		checked++
		for _, imp := range fields[1:] {
			if imp == "github.com/nats-io/nats.go" || strings.HasPrefix(imp, "github.com/nats-io/nats.go/") {
				t.Errorf("%s imports %s: use queue's typed methods instead", pkg, imp)
			}
		}
	}
	if checked == 0 {
		t.Fatalf("no package listed: %s", out)
	}
}
