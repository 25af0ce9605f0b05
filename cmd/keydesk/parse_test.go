package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/intake/parse"
)

var parseNow = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

const corpusDir = "../../intake/parse/testdata"

// TestParseJSONMatchesGoldens runs `keydesk parse --json` over the whole
// corpus, without --config (the example registry), and compares each line
// with the corpus's golden file: the goldens are this command's output.
func TestParseJSONMatchesGoldens(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(corpusDir, "mail", "*.eml"))
	if err != nil || len(files) < 40 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	var out, errOut bytes.Buffer
	if err := runParse(nil, &out, &errOut, parseRun{json: true, now: parseNow}, files); err != nil {
		t.Fatalf("keydesk parse: %v\n%s", err, errOut.String())
	}
	lines := strings.SplitAfter(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d files", len(lines), len(files))
	}
	for i, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		want, err := os.ReadFile(filepath.Join(corpusDir, "golden", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got := lines[i]
		if !strings.HasSuffix(got, "\n") {
			got += "\n"
		}
		if got != string(want) {
			t.Errorf("%s:\n got: %s\nwant: %s", name, got, want)
		}
	}
}

func TestParseHumanOutput(t *testing.T) {
	mail := func(n string) string { return filepath.Join(corpusDir, "mail", n+".eml") }
	tests := []struct {
		name  string
		run   parseRun
		files []string
		want  []string
	}{
		{"accept", parseRun{now: parseNow}, []string{mail("accept-two-blocks")}, []string{
			"accept-two-blocks.eml: ACCEPT — jane.doe@acme.example, partner acme",
			"KR-20261126-32C1  approved", "KR-20261126-0EPD  pending_review", "[production]", "reply to: jane.doe@acme.example"}},
		{"reject with reply", parseRun{now: parseNow, reply: true}, []string{mail("reject-scope-typo")}, []string{
			"REJECT", `reason:  unknown-scope: "trading:raed" is not a scope (did you mean trading:read?)`,
			"---- rejection KR-20261126-GZYN.rejection to jane.doe@acme.example", "|     Environment: sandbox"}},
		{"review has no reply", parseRun{now: parseNow, reply: true}, []string{mail("review-unknown-sender")}, []string{
			"REVIEW — peter@initech.example, no partner", "no reply"}},
		{"hostile subject is inert", parseRun{now: parseNow, reply: true}, []string{mail("accept-subject-bidi-controls")}, []string{
			"subject:    API key request \u27e8U+202E\u27e9exe.txt\u27e8U+202C\u27e9 \ufffd31m \u27e8U+061C\u27e9backend",
			"Subject: Re: API key request \u27e8U+202E\u27e9exe.txt"}},
		{"forward", parseRun{now: parseNow}, []string{mail("accept-rm-forward-attached")}, []string{
			"forwarded by alex.morgan@buildmarkets.ai", "[forwarded production]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := runParse(nil, &out, &errOut, tt.run, tt.files); err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.ContainsAny(out.String(), "\u202e\u202c\u061c\u009b\x1b") {
				t.Errorf("a control or bidi character reaches the terminal:\n%q", out.String())
			}
			if tt.name == "review has no reply" && strings.Contains(out.String(), "----") {
				t.Errorf("a reply was shown for review:\n%s", out.String())
			}
		})
	}
}

func TestParseStdinAndMissingFile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(corpusDir, "mail", "accept-plain-sandbox.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err = runParse(bytes.NewReader(raw), &out, &errOut, parseRun{json: true, now: parseNow}, []string{"-", "no-such.eml"})
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err %v, want exit 1 for the missing file", err)
	}
	if !strings.HasPrefix(out.String(), `{"file":"-",`) || !strings.Contains(out.String(), `"verdict":"accept"`) {
		t.Errorf("stdin output %s", out.String())
	}
	if !strings.Contains(errOut.String(), "no-such.eml") {
		t.Errorf("stderr %q does not name the missing file", errOut.String())
	}
}

// TestParseWithConfig uses testdata/parse: a keydesk.yaml with its
// partners.yaml and real contact keys, checked by the crypto checker as
// the intake role loads them.
func TestParseWithConfig(t *testing.T) {
	cfg := filepath.Join("testdata", "parse", "keydesk.yaml")
	var out, errOut bytes.Buffer
	files := []string{filepath.Join(corpusDir, "mail", "accept-two-blocks.eml"), filepath.Join(corpusDir, "mail", "accept-with-pdf-attachment.eml")}
	if err := runParse(nil, &out, &errOut, parseRun{cfgPath: cfg, json: true, now: parseNow}, files); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q", out.String())
	}
	if want, _ := os.ReadFile(filepath.Join(corpusDir, "golden", "accept-two-blocks.json")); lines[0]+"\n" != string(want) {
		t.Errorf("with the configured registry:\n got %s\nwant %s", lines[0], want)
	}
	// imap.max_message_bytes is 1 MiB there; the PDF email is smaller and passes.
	if !strings.Contains(lines[1], `"verdict":"accept"`) {
		t.Errorf("second line %s", lines[1])
	}

	// A broken partners file is reported, pointing at keydesk check.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keydesk.yaml"), []byte("partners_file: partners.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners.yaml"), []byte("partners: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := runParse(nil, &out, &errOut, parseRun{cfgPath: filepath.Join(dir, "keydesk.yaml"), now: parseNow}, files)
	if err == nil || !strings.Contains(err.Error(), "no partner is registered") || !strings.Contains(err.Error(), "keydesk check") {
		t.Errorf("err %v", err)
	}
}

// TestParseOptionsFromConfig: the contact-key checks are the intake
// role's: a revoked, sign-only or RSA-1024 key is unusable in `keydesk
// parse` as in the running intake, and one expiring soon is flagged.
func TestParseOptionsFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.SenderAuth.TrustedAuthservIDs = []string{"mx.example"}
	cfg.SenderAuth.RelationshipManagers = []string{"rm@buildmarkets.ai"}
	o := parseOptionsFromConfig(cfg, &keydesk.Registry{}, func() time.Time { return time.Now() })
	if !o.RequireDMARC || o.MaxBytes != 100<<20 || o.KeepBytes != 10<<20 || o.TrustedAuthservIDs[0] != "mx.example" || o.InternalDomains[0] != "buildmarkets.ai" ||
		len(o.RelationshipManagers) != 1 || o.RelationshipManagers[0] != "rm@buildmarkets.ai" {
		t.Errorf("options %+v", o)
	}
	good := cryptotest.Partner(t, crypto.Curve25519)
	tests := []struct {
		name    string
		partner *keydesk.Partner
		problem string // "" for a usable key
	}{
		{"usable", good, ""},
		{"revoked", cryptotest.UnusablePartner(t, cryptotest.UnusableRevoked), "revoked"},
		{"sign-only", cryptotest.UnusablePartner(t, cryptotest.UnusableSignOnly), "can only sign"},
		{"rsa-1024", cryptotest.UnusablePartner(t, cryptotest.UnusableRSA1024), "RSA-1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The intake role's check, for comparison: both must agree.
			intakeErr := crypto.CheckPartnerKey(tt.partner, time.Now())
			err := o.ContactKeyProblem(tt.partner)
			if (err == nil) != (intakeErr == nil) {
				t.Fatalf("parse says %v, intake says %v", err, intakeErr)
			}
			switch {
			case tt.problem == "" && err != nil:
				t.Errorf("usable key refused: %v", err)
			case tt.problem != "" && (err == nil || !strings.Contains(err.Error(), tt.problem)):
				t.Errorf("problem %v, want one naming %q", err, tt.problem)
			}
		})
	}
	expiring := []struct {
		name string
		exp  time.Time
		want bool
	}{
		{"no expiry", time.Time{}, false},
		{"far", time.Now().AddDate(1, 0, 0), false},
		{"in 10 days", time.Now().AddDate(0, 0, 10), true},
	}
	for _, tt := range expiring {
		t.Run("expiring "+tt.name, func(t *testing.T) {
			p := &keydesk.Partner{ID: "p", TechnicalContact: keydesk.TechnicalContact{KeyExpires: tt.exp}}
			if got := o.ExpiringSoon(p); got != tt.want {
				t.Errorf("expiring %v, want %v", got, tt.want)
			}
		})
	}
	var _ parse.Options = o
}
