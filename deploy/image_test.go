package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/internal/testenv"
)

// environWithout is the test's environment less the named variables.
func environWithout(names ...string) []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// TestMakeStampsVersion: `make build` and `make image` stamp the
// checkout's `git describe` into the binary, the image's build argument
// and its tag, and `make push` pushes that tag to the registry IMAGE names.
func TestMakeStampsVersion(t *testing.T) {
	git := testenv.LookPath(t, "git", "git")
	mk := testenv.LookPath(t, "make", "make")
	out, err := exec.Command(git, "-C", "..", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	v := strings.TrimSpace(string(out))
	cmd := exec.Command(mk, "-n", "-C", "..", "build", "push", "IMAGE=registry.example.com/team/keydesk")
	cmd.Env = environWithout("VERSION", "MAKEFLAGS")
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n: %v\n%s", err, got)
	}
	for _, want := range []string{
		`go build -trimpath -ldflags "-X main.version=` + v + `" -o keydesk ./cmd/keydesk`,
		"docker build -f deploy/Dockerfile --build-arg VERSION=" + v + " -t registry.example.com/team/keydesk:" + v + " .",
		"docker push registry.example.com/team/keydesk:" + v,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("make -n build push lacks\n%s\nit runs:\n%s", want, got)
		}
	}
}

// TestImageVersionStamp: the Dockerfile's -X main.version names a real
// string variable of cmd/keydesk (a wrong name links silently and stamps
// nothing), and a binary built so says its version.
func TestImageVersionStamp(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`-X main\.([A-Za-z_]+)=\$\{VERSION\}`).FindStringSubmatch(string(b))
	if m == nil || !strings.Contains(string(b), "\nARG VERSION") {
		t.Fatal(`Dockerfile does not stamp ARG VERSION with -X main.NAME=${VERSION}`)
	}
	fset := token.NewFileSet()
	files, _ := filepath.Glob("../cmd/keydesk/*.go")
	found := false
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if af.Name.Name == "main" {
			found = found || declaresStringVar(af, m[1])
		}
	}
	if !found {
		t.Fatalf("cmd/keydesk declares no package-level string variable %s for -X main.%s", m[1], m[1])
	}
	testenv.Short(t)
	bin := filepath.Join(t.TempDir(), "keydesk")
	const stamp = "v0.0.0-stamp-test"
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main."+m[1]+"="+stamp, "-o", bin, "../cmd/keydesk")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "keydesk "+stamp+" ") {
		t.Fatalf("keydesk version: %v: %q, want it to start %q", err, out, "keydesk "+stamp)
	}
}

// declaresStringVar reports whether f declares, at package level, a
// variable name of type string (or initialised with a string literal).
func declaresStringVar(f *ast.File, name string) bool {
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name != name {
					continue
				}
				if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "string" {
					return true
				}
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						return true
					}
				}
			}
		}
	}
	return false
}
