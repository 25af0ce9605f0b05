package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// natsLaterConfig writes a config for the review role whose NATS server
// (at natsAddr) is not running yet.
func natsLaterConfig(t *testing.T) (cfgPath, listen, natsAddr string) {
	t.Helper()
	dir := t.TempDir()
	writeAcmeAndAda(t, dir)
	listen, natsAddr = testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfgPath = cryptotest.WriteFile(t, dir, "keydesk.yaml", "data_dir: data\nnats: {url: \"nats://"+natsAddr+"\"}\nreview: {listen: \""+listen+"\"}\nlog: {format: json}\n")
	return cfgPath, listen, natsAddr
}

// TestServeStopsWhileWaitingForNATS: SIGTERM to an instance still waiting
// for NATS is a clean stop, exit 0.
func TestServeStopsWhileWaitingForNATS(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, listen, _ := natsLaterConfig(t)
	p := startProc(t, bin, listen, "serve", "--config", cfgPath, "--roles", "review")
	p.waitOK(t, "/healthz", 30*time.Second)
	p.stop(t, 30*time.Second)
}

// TestServeWaitsForNATS starts `keydesk serve` while its NATS server is
// down, as an instance restarted during a cluster's recovery: it answers
// /healthz at once, /readyz says what it waits for, it does not exit, and
// it becomes ready, roles and all, once NATS comes up.
func TestServeWaitsForNATS(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, listen, natsAddr := natsLaterConfig(t)
	started := time.Now()
	p := startProc(t, bin, listen, "serve", "--config", cfgPath, "--roles", "review")
	get, logs, done := p.get, p.logs, p.done
	p.waitOK(t, "/healthz", 30*time.Second)
	t.Logf("/healthz answered %s after start, with NATS down", time.Since(started).Round(time.Millisecond))
	code, body, err := get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: waiting for the NATS cluster") {
		t.Fatalf("/readyz with NATS down: %d %q %v", code, body, err)
	}
	// Its API says it is starting, rather than that nothing is there.
	if code, body, err := get("/api/v1/requests"); err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("API with NATS down: %d %q %v", code, body, err)
	}
	// Several tries later it is still running, and says so in its log.
	if err := testenv.Poll(30*time.Second, "a retry logged", func() bool { return strings.Contains(logs.String(), "nats not ready; trying again") }); err != nil {
		t.Fatalf("%v; log:\n%s", err, logs.String())
	}
	select {
	case err := <-done:
		t.Fatalf("serve exited while NATS was down: %v; log:\n%s", err, logs.String())
	default:
	}

	srv, err := queue.StartEmbedded(t.TempDir(), natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if err := testenv.Poll(60*time.Second, "/readyz ok once NATS is up", func() bool {
		code, body, err := get("/readyz")
		return err == nil && code == 200 && strings.Contains(body, "nats: ok")
	}); err != nil {
		_, body, _ := get("/readyz")
		t.Fatalf("%v: /readyz %q; log:\n%s", err, body, logs.String())
	}
	// The review role runs: its API answers (401 without a token).
	if code, _, err := get("/api/v1/requests"); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("review API after NATS came up: %d %v", code, err)
	}
	p.stop(t, 60*time.Second)
}

// writeAcmeAndAda writes into dir a partners.yaml of one partner, acme
// (sandbox auto-approved, a fresh contact key), and a users.yaml with
// one admin, ada.
func writeAcmeAndAda(t *testing.T, dir string) {
	t.Helper()
	key := cryptotest.Contact(t, crypto.Curve25519)
	cryptotest.WriteFile(t, dir, "acme.asc", key.Public)
	cryptotest.WriteFile(t, dir, "partners.yaml", `partners:
  - id: acme
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: "`+key.Fingerprint+`"}
    environments: {sandbox: {auto_approve: true}}`)
	addUser(t, filepath.Join(dir, "users.yaml"), "ada", "admin")
}
