package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/config"
)

func TestPartnersReloadKeepsRegistryOnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "acme.asc"), []byte("key"), 0o600)
	partner := func(id string) string {
		return `
  - id: ` + id + `
    requesters: ["*@` + id + `.example"]
    technical_contact: {email: sec@` + id + `.example, pgp_key_file: acme.asc, fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567"}
    environments: {sandbox: {api_key: k, api_secret: s}}`
	}
	pf := filepath.Join(dir, "partners.yaml")
	os.WriteFile(pf, []byte("partners:"+partner("acme")), 0o600)
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "keydesk.yaml")
	var logs bytes.Buffer
	ps, err := newPartnerSource(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil) // placeholder key files: checking them is crypto's test
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ps.Current().Partner("acme"); !ok {
		t.Fatal("acme not loaded")
	}

	os.WriteFile(pf, []byte("partners:"+partner("acme")+partner("globex")+"\n  - id: BAD!\n"), 0o600)
	if err := ps.Reload(); err == nil {
		t.Fatal("a broken partners.yaml was accepted")
	}
	if _, ok := ps.Current().Partner("globex"); ok {
		t.Fatal("a refused file replaced the registry")
	}
	if _, ok := ps.Current().Partner("acme"); !ok {
		t.Fatal("the registry in force was lost")
	}
	if !strings.Contains(logs.String(), "partners reload refused") || !strings.Contains(logs.String(), "partners[2].id") {
		t.Fatalf("the refusal and its problems must be logged:\n%s", logs.String())
	}

	os.WriteFile(pf, []byte("partners:"+partner("acme")+partner("globex")), 0o600)
	if err := ps.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := ps.Current().Partner("globex"); !ok {
		t.Fatal("a good file was not taken")
	}
}

// TestBatchRequiresCredentials: the other roles run on a partners.yaml
// without API credentials; the batch role refuses to start on one, and a
// reload that drops credentials keeps its registry in force.
func TestBatchRequiresCredentials(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "acme.asc"), []byte("key"), 0o600)
	partner := func(id, env string) string {
		return `
  - id: ` + id + `
    requesters: ["*@` + id + `.example"]
    technical_contact: {email: sec@` + id + `.example, pgp_key_file: acme.asc, fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567"}
    environments: {sandbox: ` + env + `}`
	}
	const full, bare = "{api_key: k, api_secret: s}", "{auto_approve: true}"
	pf := filepath.Join(dir, "partners.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(pf, []byte("partners:"+s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "keydesk.yaml")
	mkApp := func() (*app, *bytes.Buffer) {
		t.Helper()
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		ps, err := newPartnerSource(cfg, log, nil) // placeholder key files
		if err != nil {
			t.Fatalf("a partners.yaml without credentials must load for the other roles: %v", err)
		}
		return &app{cfg: cfg, log: log, partners: ps}, &logs
	}
	const missing = "partners.yaml: partners[1].environments.sandbox.api_secret: is required by the batch role (or api_secret_file)"

	// Without credentials: review (no requirement) runs, batch refuses to start.
	write(partner("acme", bare) + partner("globex", bare))
	review, _ := mkApp()
	if err := review.partners.Reload(); err != nil {
		t.Errorf("reload without credentials refused where no role needs them: %v", err)
	}
	_, err := startBatch(context.Background(), review)
	if err == nil || !strings.Contains(err.Error(), "batch: the batch role needs every partner environment's API credentials") ||
		!strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "partners[0].environments.sandbox.api_key: is required by the batch role") {
		t.Fatalf("batch started without credentials, or did not list them: %v", err)
	}

	// With credentials, batch takes the registry; a reload that drops some is refused.
	write(partner("acme", full) + partner("globex", full))
	a, logs := mkApp()
	if err := requireCredentials(a); err != nil {
		t.Fatal(err)
	}
	before := a.partners.Current()
	write(partner("acme", full) + partner("globex", bare) + partner("initech", full))
	if err := a.partners.Reload(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("reload dropping globex's credentials: %v", err)
	}
	if a.partners.Current() != before {
		t.Fatal("a registry without the batch role's credentials replaced the one in force")
	}
	if pe := a.partners.Current().Partners[1].Environments["sandbox"]; pe.APISecret.Reveal() != "s" {
		t.Fatal("globex's credentials in force were lost")
	}
	if !strings.Contains(logs.String(), "partners reload refused") || !strings.Contains(logs.String(), "partners[1].environments.sandbox.api_secret") {
		t.Fatalf("the refusal and the missing credentials must be logged:\n%s", logs.String())
	}
	write(partner("acme", full) + partner("globex", full) + partner("initech", full))
	if err := a.partners.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.partners.Current().Partner("initech"); !ok {
		t.Fatal("a file with every credential was not taken")
	}
}
