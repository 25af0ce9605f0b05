package templates

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
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

// TestAlertGolden: the alerts whose whole wording is a template read
// exactly as their golden files (subject, blank line, body).
func TestAlertGolden(t *testing.T) {
	exp := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	contact := ContactKeyAlert{PartnerID: "acme", PartnerName: "Acme Capital", Email: "sec@acme.example",
		Fingerprint: "B6BF4C10D022F14EBA3137A969C75F86B834AC27", KeyFile: "keys/acme.asc", Expires: exp, DaysLeft: 10}
	expired := contact
	expired.Expires, expired.Expired, expired.DaysLeft = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), true, 0
	s := MustLoadEmbedded()
	for _, tc := range []struct {
		golden, tmpl string
		data         any
	}{
		{"alert-contact-key-soon", "alert-contact-key", contact},
		{"alert-contact-key-expired", "alert-contact-key", expired},
		{"alert-audit-size", "alert-audit-size", AuditSizeAlert{Msgs: 1234, Bytes: 54000, MaxBytes: 65536, Percent: 82,
			First: time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, err := s.AlertMailFrom(tc.tmpl, "alert.x", "support@example.com", tc.data)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tc.golden+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Subject + "\n\n" + out.Text; got != string(want) {
				t.Errorf("%s reads\n%s\nwant\n%s", tc.tmpl, got, want)
			}
			if out.Kind != keydesk.KindAlert || len(out.To) != 1 || out.To[0] != "support@example.com" || out.ID != "alert.x" {
				t.Errorf("outgoing %+v", out)
			}
		})
	}
}
