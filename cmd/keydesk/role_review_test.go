package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/config"
)

func TestCheckUsersFile(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "keydesk.yaml")
	if err := checkUsersFile(cfg); err != nil {
		t.Fatalf("a missing users file is the review role's business, not check's: %v", err)
	}
	p := filepath.Join(dir, "users.yaml")
	tests := []struct{ name, yaml, want string }{
		{"empty", "users: []\n", "lists nobody"},
		{"clear-text password", "users:\n  - {name: a, role: admin, password_hash: hunter2}\n", "not a PHC"},
		{"bad role", "users:\n  - {name: a, role: root, token_sha256: " + strings.Repeat("0", 64) + "}\n", "role"},
		{"good", "users:\n  - {name: a, role: admin, token_sha256: " + strings.Repeat("0", 64) + "}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			err := checkUsersFile(cfg)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// With single sign-on, staff come from the identity provider: a users
	// file without break-glass accounts or tokens is allowed.
	if err := os.WriteFile(p, []byte("users: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Review.OIDC.Issuer = "https://idp.example.com"
	if err := checkUsersFile(cfg); err != nil {
		t.Fatalf("an empty users file with single sign-on: %v", err)
	}
}

func TestScheduleLocation(t *testing.T) {
	tests := []struct{ schedule, want string }{
		{"CRON_TZ=Europe/London 0 10 * * 1-5", "Europe/London"},
		{"TZ=America/New_York 0 10 * * *", "America/New_York"},
		{"0 10 * * *", "UTC"},
		{"CRON_TZ=Nowhere/Atlantis 0 10 * * *", "UTC"},
		{"@every 5m", "UTC"},
	}
	for _, tt := range tests {
		if got := scheduleLocation(tt.schedule).String(); got != tt.want {
			t.Errorf("scheduleLocation(%q) = %s, want %s", tt.schedule, got, tt.want)
		}
	}
}
