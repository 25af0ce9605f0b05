package templates

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverride(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "mail"), 0o755)
	os.WriteFile(filepath.Join(dir, "mail", "alert.tmpl"), []byte(`{{define "subject"}}ALERT {{.Title}}{{end}}{{define "body"}}custom {{.Text}}{{end}}`), 0o644)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.RenderMail("alert", map[string]string{"Title": "t", "Text": "x", "Action": "a"})
	if err != nil || m.Subject != "ALERT t" || m.Body != "custom x\n" {
		t.Fatalf("override: %+v %v", m, err)
	}
}

func TestBrokenOverrideFailsAtLoad(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "mail"), 0o755)
	os.WriteFile(filepath.Join(dir, "mail", "alert.tmpl"), []byte(`{{define "subject"}}{{.Title`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "alert.tmpl") {
		t.Fatalf("err = %v, want one naming alert.tmpl", err)
	}
}

func TestSubjectInjectionRefused(t *testing.T) {
	s := MustLoadEmbedded()
	_, err := s.RenderMail("alert", map[string]string{"Title": "x\r\nBcc: evil@example.com", "Text": "", "Action": ""})
	if err == nil {
		t.Fatal("a subject with a line break must be refused")
	}
}
