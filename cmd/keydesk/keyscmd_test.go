package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/review"
)

// seedInventory writes acme's keys as the batch role lists them: a
// key-001 in each environment, and a revoked key-002 in sandbox.
func (w *cliWorld) seedInventory() {
	w.t.Helper()
	now := time.Now().UTC()
	keys := map[keydesk.Environment][]keydesk.InventoryKey{
		keydesk.Sandbox: {
			{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "sandbox-backend", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, CreatedAt: now.Add(-400 * 24 * time.Hour), MadeBy: keydesk.MadeByPartner},
			{KeyRef: keydesk.KeyRef{ID: "key-002"}, Label: "old", Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead}, CreatedAt: now.Add(-90 * 24 * time.Hour), RevokedAt: now.Add(-24 * time.Hour), MadeBy: keydesk.MadeByKeydesk, RequestID: "KR-20260902-AAAA"},
		},
		keydesk.Production: {
			{KeyRef: keydesk.KeyRef{ID: "key-001"}, Label: "prod-trading", Scopes: []keydesk.Scope{keydesk.ScopeTradingWrite}, CreatedAt: now.Add(-10 * 24 * time.Hour), MadeBy: keydesk.MadeByKeydesk, RequestID: "KR-20261121-CCCC"},
		},
	}
	for env, ks := range keys {
		_, err := w.a.q.UpdateInventory(context.Background(), "acme", env, func(inv *keydesk.Inventory) error {
			inv.ListedAt, inv.Keys = now, ks
			if env == keydesk.Production {
				inv.Problem = "the API refused the partner's credentials (401)"
			}
			return nil
		})
		if err != nil {
			w.t.Fatal(err)
		}
	}
}

// TestKeysCLI runs 'keydesk serve --roles review' with a rotation policy
// and drives 'keydesk keys ...' as a support engineer would when a key
// leaks: find it in the list, revoke it with a reason, have it approved
// by two people (production: four eyes), and see the batch role asked to
// revoke it at once; rotate another; ask for a new listing.
func TestKeysCLI(t *testing.T) {
	w := newCLIWorld(t, func(c *config.Config) { c.Rotation.MaxAge = 365 * 24 * time.Hour })
	w.seedInventory()

	out := w.must("alice", "keys", "list")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^acme\s+sandbox\s+key-001\s+sandbox-backend\s+accounts:read\s+400d\s+partner\s+live, due for rotation$`),
		regexp.MustCompile(`(?m)^acme\s+sandbox\s+key-002\s+old\s+accounts:read\s+90d\s+keydesk KR-20260902-AAAA\s+revoked \d{4}-\d\d-\d\d$`),
		regexp.MustCompile(`(?m)^acme\s+production\s+key-001\s+prod-trading\s+trading:write\s+10d\s+keydesk KR-20261121-CCCC\s+live$`),
		regexp.MustCompile(`acme/production: the last listing failed: the API refused`),
	} {
		if !want.MatchString(out) {
			t.Errorf("keys list lacks %s:\n%s", want, out)
		}
	}
	var kl review.KeyList
	if err := json.Unmarshal([]byte(w.must("viv", "keys", "list", "--environment", "production", "--json")), &kl); err != nil {
		t.Fatal(err)
	}
	if len(kl.Keys) != 1 || kl.Keys[0].KeyID != "key-001" || kl.Keys[0].Environment != "production" || kl.Keys[0].Label != "prod-trading" {
		t.Fatalf("keys list --environment production --json: %+v", kl.Keys)
	}
	if live := w.must("viv", "keys", "list", "--partner", "acme", "--live"); strings.Contains(live, "key-002") {
		t.Fatalf("keys list --live shows the revoked key:\n%s", live)
	}

	// Refused before the API is called, and by the API.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"keys", "revoke", "key-001", "--reason", "leaked"}, "--partner and --environment are required"},
		{[]string{"keys", "revoke", "--partner", "acme", "--environment", "production", "key-001"}, "--reason is required"},
		{[]string{"keys", "revoke", "--partner", "acme", "--environment", "production", "key-009", "--reason", "leaked"}, "unknown_key"},
		{[]string{"keys", "revoke", "--partner", "acme", "--environment", "sandbox", "key-002", "--reason", "leaked"}, "key_revoked"},
	} {
		if _, err := w.cli("alice", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	if _, err := w.cli("alice", "keys", "revoke", "--partner", "acme", "--environment", "production"); !errors.Is(err, errUsage) {
		t.Errorf("revoke without a key ID: %v", err)
	}

	// The leak: revoke the production key-001.
	out = w.must("alice", "keys", "revoke", "--partner", "acme", "--environment", "production", "key-001", "--reason", "secret in a public repository")
	m := regexp.MustCompile(`^(KR-\d{8}-[0-9A-Z]{4}): pending_review\nRevocation of key-001 asked`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys revoke printed:\n%s", out)
	}
	id := m[1]
	r, err := w.a.q.Get(context.Background(), id)
	if err != nil || r.KindOf() != keydesk.KindRevoke || r.KeyRef().String() != "acme/production/key-001" || r.Requester != "alice" || r.Reason != "secret in a public repository" {
		t.Fatalf("stored: %+v %v", r, err)
	}
	if _, err := w.cli("bob", "keys", "revoke", "--partner", "acme", "--environment", "production", "key-001", "--reason", "again"); err == nil || !strings.Contains(err.Error(), id) {
		t.Fatalf("a second revoke: %v, want the open request %s named", err, id)
	}
	if show := w.must("viv", "queue", "show", id); !regexp.MustCompile(`(?m)^Kind:\s+revoke$`).MatchString(show) ||
		!regexp.MustCompile(`(?m)^Key:\s+key-001$`).MatchString(show) || !regexp.MustCompile(`(?m)^Reason:\s+secret in a public repository$`).MatchString(show) {
		t.Fatalf("queue show of the revocation:\n%s", show)
	}
	if out := w.must("alice", "queue", "approve", id); !strings.HasPrefix(out, id+": pending_review") {
		t.Fatalf("alice's approval:\n%s", out)
	}
	out = w.must("bob", "queue", "approve", id)
	if !strings.HasPrefix(out, id+": approved") || !strings.Contains(out, "revokes key key-001 now") {
		t.Fatalf("bob's approval:\n%s", out)
	}
	bl := w.must("ada", "batch", "list")
	if !regexp.MustCompile(`(?m)^B-\S+\s+revoke\s+bob\s+requested`).MatchString(bl) {
		t.Fatalf("batch list after the approval:\n%s", bl)
	}

	// Rotate the sandbox key-001, as JSON for a script.
	var rot review.Request
	if err := json.Unmarshal([]byte(w.must("alice", "keys", "rotate", "--partner", "acme", "--environment", "sandbox", "key-001", "--reason", "yearly", "--json")), &rot); err != nil {
		t.Fatal(err)
	}
	if rot.Kind != keydesk.KindRotate || rot.ReplacesKeyID != "key-001" || rot.Label != "sandbox-backend" || rot.State != keydesk.StatePendingReview {
		t.Fatalf("keys rotate --json: %+v", rot)
	}

	// A new listing, asked by a viewer (refused) and an approver.
	if _, err := w.cli("viv", "keys", "refresh"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("viewer refresh: %v", err)
	}
	if out := w.must("bob", "keys", "refresh"); !strings.HasPrefix(out, "Listing B-") {
		t.Fatalf("keys refresh:\n%s", out)
	}
	if bl := w.must("ada", "batch", "list"); !regexp.MustCompile(`(?m)^B-\S+\s+inventory\s+bob\s+requested`).MatchString(bl) {
		t.Fatalf("batch list after refresh:\n%s", bl)
	}
}

// TestKeysCLIHelp: every keys subcommand answers --help with its usage.
func TestKeysCLIHelp(t *testing.T) {
	for _, sub := range []string{"list", "revoke", "rotate", "refresh"} {
		var out strings.Builder
		err := runKeysCmd(context.Background(), &out, []string{sub, "--help"}, func(string) string { return "" })
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("keys %s --help: %v", sub, err)
		}
	}
	var out strings.Builder
	if err := runKeysCmd(context.Background(), &out, []string{"--help"}, func(string) string { return "" }); err != nil || !strings.Contains(out.String(), "list|revoke|rotate|refresh") {
		t.Errorf("keys --help: %v %q", err, out.String())
	}
}
