package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/internal/imaptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/review"
)

// TestMailCLIEndToEnd serves the review role, lets intake's poller take
// three emails out of an IMAP inbox into the same queue, and lists them
// with 'keydesk mail list' as a support engineer would: newest first, the
// configured mailbox each went to, hostile subjects made inert.
func TestMailCLIEndToEnd(t *testing.T) {
	dir := t.TempDir()
	usersFile := filepath.Join(dir, "users.yaml")
	token := addUser(t, usersFile, "viv", "viewer")
	writePartners(t, dir)
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "keydesk.yaml")
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Review.Listen = testenv.FreeAddr(t)
	cfg.Review.UsersFile = "users.yaml"
	cfg.IMAP.ProcessedMailbox, cfg.IMAP.RejectedMailbox = "Done", "Set-aside"
	a := startServe(t, cfg, "http://"+cfg.Review.Listen, nil)

	// The IMAP inbox, and intake's poller over it (with the real parser).
	const user, pass = "support@buildmarkets.ai", "s3cret"
	srv := imaptest.Start(t, user, pass, imaptest.Options{})
	c, err := imapclient.DialInsecure(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	imapCfg := intakeMailbox(cfg)
	imapCfg.Address, imapCfg.Security, imapCfg.Username, imapCfg.Password = srv.Addr, mailauth.SecurityNone, user, keydesk.SecretString(pass)
	imapCfg.PollInterval, imapCfg.Timeout = 200*time.Millisecond, 10*time.Second
	// Each email is taken in a minute after the one before.
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p, err := intake.New(intake.Options{
		IMAP: imapCfg, Queue: a.q, SpoolDir: t.TempDir(), Log: slog.New(slog.DiscardHandler), Now: clock,
		Handler: intake.NewParseHandler(intake.ParseOptions{
			Registry: a.partners.Current,
			Parse:    parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}},
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	mail := func(from, subject, body string) string {
		return "Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=" + keydesk.AddressDomain(from) + "\r\n" +
			"From: " + from + "\r\nTo: support@buildmarkets.ai\r\nSubject: " + subject + "\r\n" +
			"Date: Fri, 27 Nov 2026 08:41:07 +0000\r\nMessage-ID: <" + strings.Fields(subject)[0] + "@x.example>\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
	}
	for i, raw := range []string{
		mail("dev@acme.example", "keys please", "Environment: sandbox\r\nScopes: accounts:read\r\nLabel: reporting\r\n"),
		mail("dev@acme.example", "Out of office", "Away.\r\n"),
		mail("eve@evil.example", "=?utf-8?q?pay=E2=80=AEnow_=1B[31mred?=", "Environment: production\r\nScopes: keys:manage\r\nLabel: x\r\n"),
	} {
		ap := c.Append("INBOX", int64(len(raw)), nil)
		if _, err := io.WriteString(ap, raw); err != nil {
			t.Fatal(err)
		}
		if err := ap.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ap.Wait(); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 20*time.Second, "intake to take the email in", func() bool {
			recs, err := intake.Records(context.Background(), a.q)
			return err == nil && len(recs) == i+1
		})
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
	}

	cli := func(args ...string) string {
		t.Helper()
		env := map[string]string{"KEYDESK_URL": "http://" + cfg.Review.Listen, "KEYDESK_TOKEN": token}
		var out bytes.Buffer
		if err := runMailCmd(context.Background(), &out, args, func(k string) string { return env[k] }); err != nil {
			t.Fatalf("mail %v: %v", args, err)
		}
		return out.String()
	}
	out := cli("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "RECEIVED") {
		t.Fatalf("mail list:\n%s", out)
	}
	for i, want := range [][]string{
		{"eve@evil.example", "review", "Done", "KR-"},
		{"dev@acme.example", "Out of office", "ignore", "Done", "out-of-office"},
		{"dev@acme.example", "keys please", "accept", "Done", "KR-"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d lacks %q:\n%s", i+1, w, out)
			}
		}
	}
	if col := strings.Index(lines[0], "OUTCOME"); strings.Index(lines[2], "ignore") != col || strings.Index(lines[3], "accept") != col {
		t.Errorf("columns are not aligned:\n%s", out)
	}
	if strings.ContainsFunc(out, func(r rune) bool { return r == '\x1b' || r == '\u202e' || (unicode.IsControl(r) && r != '\n') }) {
		t.Errorf("mail list lets control or bidi characters through:\n%q", out)
	}
	if !strings.Contains(out, "all mail: 3 (accept 1, ignore 1, review 1)") {
		t.Errorf("no counts:\n%s", out)
	}

	var list review.MailList
	if err := json.Unmarshal([]byte(cli("list", "--json", "--outcome", "accept", "--sender", "ACME")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Mail) != 1 || list.Mail[0].Subject != "keys please" || list.Mail[0].MovedTo != "Done" || len(list.Mail[0].Requests) != 1 || list.Total != 3 {
		t.Fatalf("mail list --json: %+v", list)
	}
	// --all follows the pages.
	if out := cli("list", "--limit", "1", "--all"); strings.Count(out, "dev@acme.example") != 2 || strings.Contains(out, "More mail") {
		t.Errorf("mail list --all:\n%s", out)
	}
	if out := cli("list", "--limit", "1"); !strings.Contains(out, "More mail") {
		t.Errorf("mail list --limit 1 does not say there is more:\n%s", out)
	}
}
