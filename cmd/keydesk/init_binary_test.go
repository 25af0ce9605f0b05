package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/review"
)

// initContactPassphrase unlocks testdata/init/contact.key.asc.
const initContactPassphrase = "golden"

var signingFprRE = regexp.MustCompile(`fingerprint:\s+([0-9A-F ]{40,80})\n`)

// TestInitThenServe is the demo's path to production as an operator
// walks it: `keydesk init` asks nothing (every answer a flag, a file or
// a variable) and writes a directory; `keydesk serve` runs on that
// directory as written, with batch.env in its environment, against a
// real Dovecot, a go-smtp server and the API simulator. A partner's
// email becomes a request the admin init printed can see through the
// JSON API; a batch the admin asks for delivers the key pair to the
// contact, encrypted to the key init pinned and signed by the key init
// made, whose fingerprint init printed.
func TestInitThenServe(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	imap := dovecottest.Start(t)
	sink := smtptest.Start(t, smtptest.Options{})
	apis, urls, secrets := map[keydesk.Environment]*fake.Server{}, map[keydesk.Environment]string{}, map[keydesk.Environment]string{}
	for _, env := range keydesk.Environments {
		mgr := fake.SeedKey{APIKey: "bm_key_acme_" + string(env), APISecret: "bm_secret_acme_" + demo.RandHex(8), Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}
		api, err := fake.New(fake.Options{Seed: &fake.Seed{Accounts: []fake.SeedAccount{{ID: "acme", ManagerKeys: []fake.SeedKey{mgr}}}}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		apis[env], urls[env], secrets[env] = api, srv.URL, mgr.APISecret
	}
	given := t.TempDir() // what the operator hands init: the contact's key, one secret in a file
	sandboxSecret := filepath.Join(given, "sandbox-secret")
	if err := os.WriteFile(sandboxSecret, []byte(secrets[keydesk.Sandbox]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "keydesk")
	listen := testenv.FreeAddr(t)
	initCmd := exec.Command(bin, "init", dir, "--yes", "--listen", listen,
		"--imap-address", imap.Addr, "--imap-security", "none", "--imap-username", imap.User,
		"--authserv-id", demo.Authserv,
		"--smtp-address", sink.Addr, "--smtp-security", "none", "--smtp-username", "",
		"--smtp-from", demo.From, "--support-address", demo.Support,
		"--api-sandbox-url", urls[keydesk.Sandbox], "--api-production-url", urls[keydesk.Production],
		"--partner-id", "acme", "--partner-name", "Acme Capital", "--requesters", "*@acme.example",
		"--contact-email", "sec@acme.example", "--contact-key", filepath.Join("testdata", "init", "contact.asc"),
		"--sandbox-api-key", "bm_key_acme_sandbox", "--sandbox-api-secret-file", sandboxSecret,
		"--production-api-key", "bm_key_acme_production",
		"--admin", "root-admin")
	initCmd.Env = append(os.Environ(), "KEYDESK_IMAP_PASSWORD="+imap.Password, "KEYDESK_PRODUCTION_API_SECRET="+secrets[keydesk.Production])
	var out, errOut bytes.Buffer
	initCmd.Stdout, initCmd.Stderr = &out, &errOut
	if err := initCmd.Run(); err != nil {
		t.Fatalf("keydesk init: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	token := tokenRE.FindStringSubmatch(out.String())
	fpr := signingFprRE.FindStringSubmatch(out.String())
	if token == nil || fpr == nil || !strings.Contains(out.String(), "keydesk.yaml: ok") {
		t.Fatalf("keydesk init printed no admin token, signing fingerprint or passing check:\n%s", out.String())
	}
	for _, s := range []string{imap.Password, secrets[keydesk.Sandbox], secrets[keydesk.Production]} {
		if strings.Contains(out.String()+errOut.String(), s) {
			t.Errorf("keydesk init printed a secret it was given")
		}
	}

	// serve, on the directory as init wrote it; batch.env is the batch
	// role's environment (systemd's EnvironmentFile).
	benv, err := os.ReadFile(filepath.Join(dir, "batch.env"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range parseEnvFile(benv) {
		t.Setenv(k, v)
	}
	p := startProc(t, bin, listen, "serve", "--config", filepath.Join(dir, "keydesk.yaml"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keydesk serve log:\n%s", p.logs.String())
		}
	})
	p.waitOK(t, "/readyz", 60*time.Second)
	c := &apiclient.Client{Base: "http://" + listen, Token: token[1], HC: &http.Client{Timeout: 20 * time.Second}}

	raw := demo.Message(time.Now(), "init-1", "Ada Lovelace <ada@acme.example>", "New sandbox key", "",
		"Hello support,\n\nEnvironment: sandbox\nScopes: accounts:read, marketdata:read\nLabel: after-init\n\nThanks,\nAda\n")
	if err := imap.Deliver("INBOX", []byte(raw)); err != nil {
		t.Fatal(err)
	}
	var req review.Request
	var l review.RequestList
	var apiErr error
	if err := testenv.Poll(60*time.Second, "the partner's request in the queue", func() bool {
		apiErr = c.Do(context.Background(), "GET", "/api/v1/requests?limit=50", nil, &l)
		return apiErr == nil && len(l.Requests) > 0
	}); err != nil || len(l.Requests) != 1 {
		t.Fatalf("%v (the API's last answer: %v, %d requests)", err, apiErr, len(l.Requests))
	}
	req = l.Requests[0]
	if req.Partner != "acme" || req.Environment != string(keydesk.Sandbox) || req.Label != "after-init" {
		t.Fatalf("the request: partner %s, %s, label %s; want acme, sandbox, after-init", req.Partner, req.Environment, req.Label)
	}
	if req.State == keydesk.StatePendingReview {
		if _, err := c.Act(context.Background(), req.ID, "approve", review.ActionBody{}); err != nil {
			t.Fatalf("approve %s as init's admin: %v", req.ID, err)
		}
	}
	if err := c.Do(context.Background(), "POST", "/api/v1/batches", nil, nil); err != nil {
		t.Fatalf("run a batch as init's admin: %v", err)
	}
	testenv.Eventually(t, 60*time.Second, req.ID+" delivered", func() bool {
		var r review.Request
		return c.Do(context.Background(), "GET", "/api/v1/requests/"+req.ID, nil, &r) == nil && r.State == keydesk.StateDelivered
	})
	checkInitDelivery(t, dir, sink, apis[keydesk.Sandbox], req.ID, strings.ReplaceAll(fpr[1], " ", ""))
	p.stop(t, 45*time.Second)
}

// checkInitDelivery: the contact got the key pair, opened with its
// private key, signed by the key whose fingerprint init printed.
func checkInitDelivery(t *testing.T, dir string, sink *smtptest.Server, api *fake.Server, id, printedFpr string) {
	t.Helper()
	pub, err := os.ReadFile(filepath.Join(dir, "keys", "keydesk-signing.pub.asc"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := crypto.KeyFingerprint(pub); err != nil || got != printedFpr {
		t.Fatalf("keys/keydesk-signing.pub.asc is %s (%v); init printed %s", got, err, printedFpr)
	}
	priv, err := os.ReadFile(filepath.Join("testdata", "init", "contact.key.asc"))
	if err != nil {
		t.Fatal(err)
	}
	var deliveries [][]byte
	for _, m := range sink.To("sec@acme.example") {
		if kind, msg := demo.MailKind(m.Data); kind == "key delivery" && strings.HasPrefix(strings.Trim(msg.Header.Get("Message-ID"), "<"), id+".key.") {
			deliveries = append(deliveries, m.Data)
		}
	}
	if len(deliveries) != 1 {
		t.Fatalf("%d key deliveries of %s reached the contact, want one", len(deliveries), id)
	}
	inner, err := crypto.DecryptAndVerify(deliveries[0], string(priv), []byte(initContactPassphrase), string(pub))
	if err != nil {
		t.Fatalf("the delivery does not open with the contact's key and init's signing key: %v", err)
	}
	kf, err := demo.InnerKeyFile(inner)
	if err != nil {
		t.Fatal(err)
	}
	live := api.LiveKeys("acme")
	if kf.RequestID != id || kf.Label != "after-init" || !slices.ContainsFunc(live, func(k fake.KeyInfo) bool { return k.APIKey == kf.APIKey }) {
		t.Errorf("the delivery holds %s %s %s; want %s, after-init, a key live at the sandbox API", kf.RequestID, kf.Label, kf.APIKey, id)
	}
	if !api.Authenticate(kf.APIKey, []byte(kf.APISecret)) {
		t.Errorf("the delivered pair does not authenticate at the API")
	}
}

// TestNATSSetupName: the command that makes NATS streams is called for
// what it does, nats-setup; keydesk --help lists it and init, and not
// its old name, which still works for one release after saying so.
func TestNATSSetupName(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	help, err := exec.Command(bin, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"keydesk nats-setup ", "keydesk init "} {
		if !strings.Contains(string(help), w) {
			t.Errorf("keydesk --help lacks %q:\n%s", w, help)
		}
	}
	if strings.Contains(string(help), "keydesk setup ") {
		t.Errorf("keydesk --help lists the old name setup:\n%s", help)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keydesk.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nats-setup", "setup"} {
		cmd := exec.Command(bin, name, "--config", cfg)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("keydesk %s: %v\n%s", name, err, errOut.String())
		}
		if !strings.Contains(out.String(), "KV_requests") {
			t.Errorf("keydesk %s listed no streams:\n%s", name, out.String())
		}
		said := strings.Contains(errOut.String(), "'keydesk setup' is now 'keydesk nats-setup'")
		if said != (name == "setup") {
			t.Errorf("keydesk %s: stderr %q", name, errOut.String())
		}
	}
}
