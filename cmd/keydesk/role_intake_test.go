package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/imaptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// keydesk serve --roles intake reads the configured mailbox (SASL PLAIN,
// under the mailbox lease), queues a partner's request with its
// acknowledgement, moves the email, and reports the mailbox on /readyz and
// /metrics.
func TestServeIntakeRole(t *testing.T) {
	srv := imaptest.Start(t, "support@buildmarkets.ai", "s3cret", imaptest.Options{})

	dir := t.TempDir()
	key := cryptotest.Contact(t, crypto.Curve25519)
	cryptotest.WriteFile(t, dir, "acme.asc", key.Public)
	cryptotest.WriteFile(t, dir, "partners.yaml", fmt.Sprintf(`partners:
  - id: acme
    name: Acme Capital
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: %q}
    allowed_scopes: [accounts:read, marketdata:read]
    environments: {sandbox: {api_key: k, api_secret: s}}
`, key.Fingerprint))
	cryptotest.WriteFile(t, dir, "keydesk.yaml", fmt.Sprintf(`data_dir: ./data
imap: {address: %q, security: none, username: support@buildmarkets.ai, password: s3cret, poll_interval: 1h}
sender_auth: {trusted_authserv_ids: [mx.buildmarkets.ai]}
review: {listen: "127.0.0.1:0"}
`, srv.Addr))
	cfg, err := config.Load(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "intake", "testdata", "accept.eml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("support@buildmarkets.ai", "s3cret").Wait(); err != nil {
		t.Fatal(err)
	}
	ap := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := ap.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := ap.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ap.Wait(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = serveRoles(ctx, cfg, slog.New(slog.DiscardHandler), []string{"intake"}, func(a *app) error {
		var reqs []*keydesk.Request
		deadline := time.Now().Add(20 * time.Second)
		if err := testenv.Poll(20*time.Second, "a request queued", func() bool {
			reqs, err = a.q.List(ctx, queue.Filter{})
			return err != nil || len(reqs) > 0
		}); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		r := reqs[0]
		if r.Partner != "acme" || r.Environment != keydesk.Sandbox || r.State != keydesk.StatePendingReview || r.Label != "reporting-bot" {
			return fmt.Errorf("request %+v", r)
		}
		if _, err := a.q.LeaseHolder(ctx, "intake.INBOX"); err != nil {
			return fmt.Errorf("mailbox lease not held: %v", err)
		}
		if err := testenv.Poll(time.Until(deadline), "the email moved to Processed", func() bool {
			st, err := c.Status("Processed", &imap.StatusOptions{NumMessages: true}).Wait()
			return err == nil && *st.NumMessages == 1
		}); err != nil {
			return err
		}
		if err := checkServing(a, "imap", `keydesk_emails_total{outcome="accept"} 1`); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
