package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/config"
)

func TestPartnersReloadKeepsRegistryOnError(t *testing.T) {
	saved := contactKeyChecker
	contactKeyChecker = nil // key files here are placeholders; checking them is crypto's test
	t.Cleanup(func() { contactKeyChecker = saved })

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
	ps, err := newPartnerSource(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
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
