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
		{mod + "/intake", []string{mod + "/bmapi", mod + "/batch"}},
		{mod + "/delivery", []string{mod + "/bmapi"}},
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
