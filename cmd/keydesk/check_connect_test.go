package main

import (
	"bytes"
	"context"
	"fmt"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/demo"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/queue"
)

// TestCheckConnect runs `keydesk check --connect` against real servers:
// go-imap's memory server, a go-smtp server and the API simulator (the
// demo's), and an embedded NATS server listening on loopback; then against
// each of them broken, one failing check of each kind.
func TestCheckConnect(t *testing.T) {
	dir := t.TempDir()
	e, err := demo.StartEnv(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	bare, err := queue.StartEmbedded(t.TempDir(), "127.0.0.1:0") // no streams made
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bare.Shutdown)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()

	// A key of acme's without keys:manage, made with its manager key in
	// production: acme has two keys there, one in sandbox.
	mgr := e.SeedAccounts[0].ManagerKeys[0]
	reader, err := bmapi.New(bmapi.Options{BaseURL: e.ProdAPIURL, APIKey: mgr.APIKey, APISecret: keydesk.SecretString(mgr.APISecret)}).
		CreateKey(ctx, "reader", []keydesk.Scope{keydesk.ScopeAccountsRead})
	if err != nil {
		t.Fatal(err)
	}
	path, err := e.WriteConfigAs("keydesk.yaml", "127.0.0.1:0", "@every 1h", config.NATS{URL: q.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	// acme's credentials as partners.yaml holds them (block style).
	creds := func(env, key, secret string) string {
		return fmt.Sprintf("%s:\n        api_key: %s\n        api_secret: %q", env, key, secret)
	}
	acmeSandbox := creds("sandbox", mgr.APIKey, mgr.APISecret)
	acmeProduction := creds("production", mgr.APIKey, mgr.APISecret)
	tests := []struct {
		name  string
		edits map[string][][2]string // file → old, new
		want  []string               // the check lines, each by its start
		fail  bool
	}{
		{
			name: "every server answers",
			want: []string{
				fmt.Sprintf("ok   imap  %s (INBOX, %d messages)", e.IMAPAddr, len(e.Emails)),
				fmt.Sprintf("ok   smtp  %s (connected; smtp.auth none: no login)", e.Sink.Addr),
				fmt.Sprintf("ok   nats  %s (JetStream, 12 streams and buckets)", q.ClientURL()),
				fmt.Sprintf("ok   api   acme sandbox %s (1 keys)", e.APIURL),
				fmt.Sprintf("ok   api   acme production %s (2 keys)", e.ProdAPIURL),
				fmt.Sprintf("ok   api   globex sandbox %s (1 keys)", e.APIURL),
				fmt.Sprintf("ok   api   globex production %s (1 keys)", e.ProdAPIURL),
			},
		},
		{
			name: "one failure of each kind",
			edits: map[string][][2]string{
				"keydesk.yaml": {
					{fmt.Sprintf("password: %q", e.IMAPPass), `password: "wrong-password"`},
					{"address: " + e.Sink.Addr, "address: " + closed},
					{q.ClientURL(), bare.ClientURL()},
				},
				"partners.yaml": {
					{acmeSandbox, creds("sandbox", mgr.APIKey, "wrong-secret")},
					{acmeProduction, creds("production", reader.APIKey, reader.APISecret.Reveal())},
				},
			},
			fail: true,
			want: []string{
				fmt.Sprintf("FAIL imap  %s: intake: log in to %s as %s: ", e.IMAPAddr, e.IMAPAddr, demo.Mailbox),
				fmt.Sprintf("FAIL smtp  %s: delivery: smtp connect: ", closed),
				fmt.Sprintf("FAIL nats  %s: queue: 12 of keydesk's streams and buckets do not exist: ", bare.ClientURL()),
				fmt.Sprintf("FAIL api   acme sandbox %s: bmapi: GET /v1/keys: 401 Unauthorized: ", e.APIURL),
				fmt.Sprintf("FAIL api   acme production %s: bmapi: GET /v1/keys: 403 Forbidden: ", e.ProdAPIURL),
				fmt.Sprintf("ok   api   globex sandbox %s (1 keys)", e.APIURL),
				fmt.Sprintf("ok   api   globex production %s (1 keys)", e.ProdAPIURL),
			},
		},
	}
	// What each failure tells the operator to do.
	todo := []string{
		"; check imap.username and imap.password",
		"; check smtp.address and that the server is reachable from here",
		"; run 'keydesk nats-setup'",
		"; the credentials are wrong: check acme's sandbox api_key and api_secret in partners.yaml",
		"; the key lacks keys:manage: ask for a production key of acme with that scope",
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			editFiles(t, dir, tc.edits)
			var out, errOut bytes.Buffer
			err := check(ctx, &out, &errOut, checkOptions{config: path, now: time.Now(), connect: true, timeout: 10 * time.Second})
			if ee, ok := err.(exitError); tc.fail != (ok && ee.code == 1) || !tc.fail && err != nil {
				t.Fatalf("check --connect: %v, want failure %v\n%s%s", err, tc.fail, out.String(), errOut.String())
			}
			var got []string
			for line := range strings.Lines(out.String()) {
				if strings.HasPrefix(line, "ok   ") || strings.HasPrefix(line, "FAIL ") || strings.HasPrefix(line, "skip ") {
					got = append(got, strings.TrimSuffix(line, "\n"))
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d check lines, want %d:\n%s", len(got), len(tc.want), out.String())
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d:\n%s\nwant it to start\n%s", i, got[i], w)
				}
				if strings.HasPrefix(w, "FAIL") && !strings.Contains(got[i], todo[i]) {
					t.Errorf("line %d does not say what to do (%q):\n%s", i, todo[i], got[i])
				}
			}
			if tc.fail && !strings.Contains(errOut.String(), "5 connection check(s) failed.") {
				t.Errorf("no count of the failed checks:\n%s", errOut.String())
			}
			for _, secret := range []string{mgr.APISecret, reader.APISecret.Reveal(), "wrong-secret", "wrong-password", e.IMAPPass} {
				if strings.Contains(out.String()+errOut.String(), secret) {
					t.Errorf("check printed a secret:\n%s%s", out.String(), errOut.String())
				}
			}
		})
	}
}
