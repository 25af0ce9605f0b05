package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
	"github.com/emersion/go-smtp"
)

// keydesk outbox dead lists a message the server refused, with its ID,
// kind, recipient and the reply; retry puts it back in the outbox.
func TestOutboxDeadAndRetry(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "keydesk.yaml")
	if err := os.WriteFile(cfgFile, []byte("data_dir: ./data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An SMTP server that refuses every recipient.
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}})

	// A delivery role on the config's store turns the refusal into a dead letter.
	q := queuetest.OpenDir(t, filepath.Join(dir, "data"))
	sender, err := delivery.NewSMTP(delivery.SMTPOptions{Server: mailauth.MailServer{Address: srv.Addr, Security: mailauth.SecurityNone, Auth: "none", Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := delivery.New(delivery.Options{
		Queue: q, Sender: sender, From: "support@buildmarkets.ai", Templates: templates.MustLoadEmbedded(),
		Partners: func() *keydesk.Registry { return &keydesk.Registry{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	o := &keydesk.Outgoing{ID: "KR-20261127-CCCC.rejection", Kind: keydesk.KindRejection, To: []string{"gone@acme.example"}, Subject: "Your request", Text: "Rejected.\n"}
	if err := q.Enqueue(ctx, o); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the dead letter", func() bool {
		d, _ := delivery.DeadLetters(ctx, q)
		return len(d) == 1
	})
	cancel()
	<-done
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := cmdOutbox(context.Background(), append(args, "--config", cfgFile), &out); err != nil {
			t.Fatalf("outbox %v: %v", args, err)
		}
		return out.String()
	}
	list := run("dead")
	if miss := missing(list, "SEQ", "rejection", o.ID, "gone@acme.example", "550", "no such user"); len(miss) > 0 {
		t.Fatalf("outbox dead misses %q:\n%s", miss, list)
	}
	seq := strings.Fields(strings.Split(list, "\n")[1])[0]
	if err := cmdOutbox(context.Background(), []string{"retry", "x", "--config", cfgFile}, io.Discard); err == nil || !strings.Contains(err.Error(), "not a dead-letter number") {
		t.Fatalf("retry x: %v", err)
	}
	if out := run("retry", seq); !strings.Contains(out, o.ID) || !strings.Contains(out, "back in the outbox") {
		t.Fatalf("retry said %q", out)
	}
	if out := run("dead"); strings.TrimSpace(out) != "no dead letters" {
		t.Fatalf("after retry: %q", out)
	}
	q = queuetest.OpenDir(t, filepath.Join(dir, "data"))
	info, err := q.StreamInfo(context.Background(), queue.StreamOutbox)
	if err != nil || info.Msgs != 1 {
		t.Fatalf("outbox holds %d messages after retry (err %v), want 1", info.Msgs, err)
	}
}

func missing(s string, subs ...string) (out []string) {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			out = append(out, sub)
		}
	}
	return out
}
