package intake

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/redact"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/templates"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func inventory(partner string, env keydesk.Environment, keys ...keydesk.InventoryKey) *keydesk.Inventory {
	inv := &keydesk.Inventory{Partner: partner, Environment: env}
	for _, k := range keys {
		k.Partner, k.Environment = partner, env
		inv.Keys = append(inv.Keys, k)
	}
	return inv
}

func TestMatchKey(t *testing.T) {
	invs := []*keydesk.Inventory{
		inventory("acme", keydesk.Sandbox, keydesk.InventoryKey{KeyRef: keydesk.KeyRef{ID: "key-001"}, APIKey: "bm_key_acme_sb1"}),
		inventory("acme", keydesk.Production,
			keydesk.InventoryKey{KeyRef: keydesk.KeyRef{ID: "key-001"}, APIKey: "bm_key_acme_pr1"},
			keydesk.InventoryKey{KeyRef: keydesk.KeyRef{ID: "key-002"}}),
		inventory("globex", keydesk.Production, keydesk.InventoryKey{KeyRef: keydesk.KeyRef{ID: "key-002"}, APIKey: "bm_key_globex_pr2"}),
	}
	tests := []struct {
		name, apiKey, keyID, partner string
		want                         string // the key's triple; "" none
		problem                      string // part of the reason when none
	}{
		{"by API key", "bm_key_acme_pr1", "", "acme", "acme/production/key-001", ""},
		{"by API key, another partner's", "bm_key_globex_pr2", "", "acme", "globex/production/key-002", ""},
		{"by API key, an unknown sender", "bm_key_globex_pr2", "", "", "globex/production/key-002", ""},
		{"by key ID, one environment", "", "key-002", "acme", "acme/production/key-002", ""},
		{"by key ID, both environments", "", "key-001", "acme", "", "more than one environment"},
		{"by key ID, an unknown sender", "", "key-002", "", "", "not an authenticated requester"},
		{"by key ID, not the sender's", "", "key-009", "acme", "", "not in the partner's key inventory"},
		{"an unknown API key", "bm_key_nobody", "", "acme", "", "in no partner's key inventory"},
		{"nothing beside it", "", "", "acme", "", "no API key or key ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, problem := matchKey(invs, &redact.Finding{APIKey: tt.apiKey, KeyID: tt.keyID}, tt.partner)
			got := ""
			if k != nil {
				got = k.KeyRef.String()
			}
			if got != tt.want || !strings.Contains(problem, tt.problem) {
				t.Errorf("matchKey = %q, %q; want %q, %q", got, problem, tt.want, tt.problem)
			}
		})
	}
}

// TestExposureEmails: the requester's notice names their keys and
// revoke requests, never a secret, and is one email per email whatever
// it exposed; the alert to support names every fingerprint and what
// became of it. The notice is compared with its golden file.
func TestExposureEmails(t *testing.T) {
	p := &Poller{o: Options{Templates: templates.MustLoadEmbedded(), SupportAddress: "support@buildmarkets.ai"}, log: slog.New(slog.DiscardHandler)}
	dec := &Decision{SourceKey: "ada@acme.example\x00x@acme.example", MessageID: "x@acme.example", From: "ada@acme.example",
		Subject: "401 with this pair", Partner: "acme", Requester: "ada@acme.example"}
	date := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	k1 := &keydesk.InventoryKey{KeyRef: keydesk.KeyRef{Partner: "acme", Environment: keydesk.Production, ID: "key-004"}, Label: "prod-trading-engine"}
	k2 := &keydesk.InventoryKey{KeyRef: keydesk.KeyRef{Partner: "globex", Environment: keydesk.Production, ID: "key-002"}, Label: "globex-engine"}
	exps := []*exposure{
		{f: &redact.Finding{Fingerprint: "1a2b3c4d", Length: "32-63", Kind: keydesk.SecretBM, APIKey: "bm_key_acme_pr4", Where: []string{"body (text/plain)"}},
			key: k1, revoke: &keydesk.Request{ID: "KR-20261130-AB12"}},
		{f: &redact.Finding{Fingerprint: "5e6f7a8b", Length: "16-31", Kind: keydesk.SecretField, Where: []string{"part 2 (application/json, key.json)"}},
			key: k2, revoke: &keydesk.Request{ID: "KR-20261130-CD34"}},
		{f: &redact.Finding{Fingerprint: "9c0d1e2f", Length: "1-15", Kind: keydesk.SecretHeader, Where: []string{"body (text/plain)"}}, problem: "no API key or key ID is written beside it"},
	}
	out, err := p.exposureNotice(dec, exps, date)
	if err != nil {
		t.Fatal(err)
	}
	if out == nil || out.Kind != keydesk.KindSecretExposed || out.To[0] != "ada@acme.example" || out.RequestID != "KR-20261130-AB12" || out.InReplyTo != "x@acme.example" {
		t.Fatalf("notice %+v", out)
	}
	if strings.Contains(out.Text, "globex") || strings.Contains(out.Text, "key-002") {
		t.Errorf("the notice names another partner's key:\n%s", out.Text)
	}
	again, _ := p.exposureNotice(dec, exps, date)
	if again.ID != out.ID {
		t.Errorf("the notice's ID changed from %s to %s: it would be sent twice", out.ID, again.ID)
	}
	testenv.Golden(t, "testdata/secret-exposed.golden", []byte(fmt.Sprintf("Subject: %s\n\n%s", out.Subject, out.Text)), *update)

	unauth := *dec
	unauth.Requester = ""
	if n, _ := p.exposureNotice(&unauth, exps, date); n != nil {
		t.Errorf("a notice to an unauthenticated sender: %+v", n)
	}

	a := exposureAlert(dec, exps, nil)
	for _, want := range []string{"sha256:1a2b3c4d", "KR-20261130-AB12", "globex/production/key-002", "sha256:9c0d1e2f", "no key found: no API key or key ID"} {
		if !strings.Contains(a.Text, want) {
			t.Errorf("the alert lacks %q:\n%s", want, a.Text)
		}
	}
}

// TestSecretInLargeEmail: an email larger than max_message_bytes (read
// line by line, not into memory) with a pair pasted in its text: the
// stored copy (cut at max_message_bytes) and the request hold only the
// marker, the request is flagged, and support is alerted though no key
// is known (the inventory is empty); the requester is told nothing,
// since no key of theirs was named.
func TestSecretInLargeEmail(t *testing.T) {
	w := newWorld(t, false)
	const secret = "bm_secret_L4rg3EmailS3cretValue0123456789"
	body := "Hello,\n\nwe get 401 with this pair:\nX-API-Key: bm_key_acme_large\nX-API-Secret: " + secret + "\n\nOur log:\n" +
		strings.Repeat("2026-11-30T08:00:00Z GET /v1/keys 401 unauthorized\n", 2000)
	w.send(msg{from: "ada@acme.example", id: "large@acme.example", subject: "401 again", body: body}.raw())
	r := w.bySource("large@acme.example")
	if !r.HasFlag(keydesk.FlagSecretExposed) {
		t.Errorf("request flags %v", r.Flags)
	}
	ctx := context.Background()
	rd, err := w.h.q.OpenMail(ctx, r.MailRef)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rd)
	rd.Close()
	if bytes.Contains(stored, []byte(secret)) || !bytes.Contains(stored, []byte("[bm_secret redacted sha256:")) {
		t.Errorf("the stored copy (%d bytes) holds the secret, or no marker", len(stored))
	}
	var alerts int
	for _, o := range w.h.outbox() {
		if o.Kind == keydesk.KindSecretExposed {
			t.Errorf("a notice to the requester though no key was found: %+v", o)
		}
		if o.Kind == keydesk.KindAlert && strings.Contains(o.Text, "no key found") {
			alerts++
		}
		if strings.Contains(o.Text, secret) {
			t.Errorf("an email holds the secret: %s", o.ID)
		}
	}
	if alerts != 1 {
		t.Errorf("%d alerts, want 1", alerts)
	}
}
