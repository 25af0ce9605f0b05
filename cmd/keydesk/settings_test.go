package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
)

// TestRoleSettingsReportedOnce: a role's settings are judged by its
// package's Options.Validate alone. The config loader does not report
// them; `keydesk check` and serve's start report each exactly once,
// naming the file and the key.
func TestRoleSettingsReportedOnce(t *testing.T) {
	dir := t.TempDir()
	cfgPath := cryptotest.WriteFile(t, dir, "keydesk.yaml", `
imap: {address: imap.example.com, security: plain, username: x, password: y, poll_interval: 500ms, max_attempts: -1, lease_ttl: 100ms}
smtp: {address: "smtp.example.com:25", security: none, username: x, password: y}
batch: {schedule: "0 0 30 2 *", concurrency: 1000, inventory_interval: 10s}
delivery: {ack_wait: 1s}
`)
	cryptotest.WriteFile(t, dir, "partners.yaml", "partners: []\n")
	rules := []struct{ name, line string }{
		{"imap address", `keydesk.yaml: imap.address: "imap.example.com" is not host:port`},
		{"imap security", `keydesk.yaml: imap.security: "plain" is not one of tls, starttls, none`},
		{"smtp security", "keydesk.yaml: smtp.security: none sends the password in clear text"},
		{"imap poll interval", "keydesk.yaml: imap.poll_interval: 500ms is too short: at least 1s"},
		{"imap attempts", "keydesk.yaml: imap.max_attempts: -1 is out of range"},
		{"imap lease", "keydesk.yaml: imap.lease_ttl: 100ms is out of range 1s..1h"},
		{"batch schedule", `keydesk.yaml: batch.schedule: batch: schedule "0 0 30 2 *" never fires`},
		{"batch concurrency", "keydesk.yaml: batch.concurrency: 1000 is out of range"},
		{"batch inventory interval", "keydesk.yaml: batch.inventory_interval: 10s is out of range 1m..7d"},
		{"delivery ack wait", "keydesk.yaml: delivery.ack_wait: 1s is out of range 3s..1h"},
		{"smtp from", "keydesk.yaml: smtp.from: is required"},
	}

	_, loadErr := config.Load(cfgPath)
	var checkOut, checkErr strings.Builder
	if err := runCheck(&checkOut, &checkErr, cfgPath, nil, time.Now()); err == nil {
		t.Fatalf("check passed:\n%s", checkOut.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // were serve to start anyway, it would stop at once
	serveErr := cmdServe(ctx, []string{"--config", cfgPath})
	if serveErr == nil {
		t.Fatal("serve started with the problems")
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			key := strings.Fields(r.line)[1]
			if loadErr != nil && strings.Contains(loadErr.Error(), key) {
				t.Errorf("the config loader judges %s too:\n%v", key, loadErr)
			}
			if n := countLines(checkErr.String(), r.line); n != 1 {
				t.Errorf("check reports %q %d times, want once:\n%s", r.line, n, checkErr.String())
			}
			if n := countLines(serveErr.Error(), r.line); n != 1 {
				t.Errorf("serve reports %q %d times, want once:\n%v", r.line, n, serveErr)
			}
		})
	}
	if !strings.Contains(serveErr.Error(), "keydesk check --config "+filepath.Join(dir, "keydesk.yaml")) {
		t.Errorf("serve does not name the command that lists the problems:\n%v", serveErr)
	}
}

// countLines counts the lines of text that start with prefix.
func countLines(text, prefix string) int {
	n := 0
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}
