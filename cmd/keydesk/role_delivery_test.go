package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/queue"
)

// keydesk serve --roles delivery sends what is in the outbox through the
// configured server, with the outbox consumer's ack wait from
// delivery.ack_wait, and reports the server on /readyz and /metrics.
func TestServeDeliveryRole(t *testing.T) {
	mails := smtptest.Start(t, smtptest.Options{})

	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("acme.asc", "key") // a placeholder: serveRolesKeys below does not check it; crypto's tests do
	write("partners.yaml", `partners:
  - id: acme
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567"}
    environments: {sandbox: {api_key: k, api_secret: s}}
`)
	write("keydesk.yaml", fmt.Sprintf(`data_dir: ./data
smtp: {address: %q, security: none, auth: none, from: "Buildmarkets Support <support@buildmarkets.ai>", support_address: support@buildmarkets.ai}
review: {listen: "127.0.0.1:0"}
delivery: {ack_wait: 7s}
`, mails.Addr))
	cfg, err := config.Load(filepath.Join(dir, "keydesk.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	err = serveRolesKeys(ctx, cfg, log, nil, []string{"delivery"}, func(a *app) error {
		if err := a.q.Enqueue(ctx, &keydesk.Outgoing{ID: "KR-20261127-DDDD.ack", Kind: keydesk.KindAcknowledgement, To: []string{"cto@acme.example"}, Subject: "We have your request", Text: "Thanks.\n"}); err != nil {
			return err
		}
		if err := testenv.Poll(20*time.Second, "the message arriving", func() bool { return mails.Count() == 1 }); err != nil {
			return err
		}
		// The message is counted once its sent mark is written, which
		// may be a moment after the server took it.
		var serving error
		if err := testenv.Poll(20*time.Second, "the message counted as sent", func() bool {
			serving = checkServing(a, "smtp", `keydesk_deliveries_total{kind="acknowledgement",outcome="sent"} 1`)
			return serving == nil
		}); err != nil {
			return fmt.Errorf("%w: %v", err, serving)
		}
		_, js := a.q.Raw()
		c, err := js.Consumer(ctx, queue.StreamOutbox, delivery.ConsumerName)
		if err != nil {
			return err
		}
		if got := c.CachedInfo().Config.AckWait; got != 7*time.Second {
			return fmt.Errorf("outbox consumer ack wait %s, want delivery.ack_wait 7s", got)
		}
		cancel()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if sent := mails.Messages(); !strings.Contains(string(sent[0].Data), "Message-ID: <KR-20261127-DDDD.ack@buildmarkets.ai>") {
		t.Fatalf("sent:\n%s", sent[0].Data)
	}
}

func TestServeDeliveryNeedsSMTP(t *testing.T) {
	cfg := config.Default()
	_, err := startDelivery(context.Background(), &app{cfg: cfg})
	if err == nil || !strings.Contains(err.Error(), "smtp.address is not set") {
		t.Fatalf("start without smtp.address: %v", err)
	}
}

func TestCheckSMTP(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		smtp config.SMTP
		want []string
	}{
		{"none configured", config.SMTP{}, nil},
		{"good", config.SMTP{MailServer: mailauth.MailServer{Address: "smtp.example.com:587", Security: mailauth.SecurityStartTLS}, From: "Support <support@buildmarkets.ai>"}, nil},
		{"every problem at once", config.SMTP{MailServer: mailauth.MailServer{Address: "smtp.example.com:25", Security: mailauth.SecurityNone, TLSCAFile: notPEM}, From: "not an address"},
			[]string{"smtp.security", "loopback", "smtp.tls_ca_file", "smtp.from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.SMTP = tt.smtp
			err := checkDelivery(cfg)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no problem found")
			}
			if miss := missing(err.Error(), tt.want...); len(miss) > 0 {
				t.Fatalf("%v: misses %q", err, miss)
			}
		})
	}
}
