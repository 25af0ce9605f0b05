package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
)

// TestWrittenConfigLoads loads the files the demo writes as keydesk does:
// every secret arrives (a Secret encodes as [redacted], so the demo writes
// each on purpose), and the settings the flow relies on hold.
func TestWrittenConfigLoads(t *testing.T) {
	dir := t.TempDir()
	e, err := StartEnv(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	path, err := e.WriteConfigAs("keydesk.yaml", "127.0.0.1:0", "@every 3s", config.NATS{URL: "nats://127.0.0.1:4222"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keydesk.yaml", "partners.yaml", "users.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "[redacted]") {
			t.Errorf("%s holds a redacted secret:\n%s", f, b)
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if got := cfg.IMAP.Password.Reveal(); got != e.IMAPPass {
		t.Errorf("imap.password = %q, want the mailbox's", got)
	}
	pass, err := os.ReadFile(filepath.Join(dir, "signing.pass"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SigningKey.Passphrase.Reveal(); got != string(pass) {
		t.Errorf("signing_key.passphrase = %q, want signing.pass's content", got)
	}
	if cfg.NATS.URL != "nats://127.0.0.1:4222" || cfg.IMAP.Address != e.IMAPAddr || cfg.SMTP.Address != e.Sink.Addr ||
		cfg.Batch.Schedule != "@every 3s" || len(cfg.Review.FourEyes) == 0 {
		t.Errorf("config does not hold what was written: nats %q, imap %q, smtp %q, schedule %q, four_eyes %v",
			cfg.NATS.URL, cfg.IMAP.Address, cfg.SMTP.Address, cfg.Batch.Schedule, cfg.Review.FourEyes)
	}
	reg, err := config.LoadPartners(cfg.Path(cfg.PartnersFile), nil, time.Now())
	if err != nil {
		t.Fatalf("partners: %v", err)
	}
	for _, acct := range e.SeedAccounts {
		p, ok := reg.Partner(acct.ID)
		if !ok {
			t.Fatalf("partner %s missing", acct.ID)
		}
		for _, env := range keydesk.Environments {
			pe := p.Environments[env]
			if pe.APIKey != acct.ManagerKeys[0].APIKey || pe.APISecret.Reveal() != acct.ManagerKeys[0].APISecret {
				t.Errorf("%s %s: credentials not as seeded", acct.ID, env)
			}
		}
	}
}
