package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestQueueCLIOverTLS serves the review role over HTTPS (review.tls_cert
// and tls_key) and calls it with the CLI trusting a private CA.
func TestQueueCLIOverTLS(t *testing.T) {
	dir := t.TempDir()
	writePartners(t, dir)
	token := addUser(t, filepath.Join(dir, "users.yaml"), "ada", "admin")
	certPEM, keyPEM := selfSigned(t)
	for name, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.File = filepath.Join(dir, "keydesk.yaml")
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Review.Listen = testenv.FreeAddr(t)
	cfg.Review.TLSCert, cfg.Review.TLSKey = "cert.pem", "key.pem"
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + cfg.Review.Listen
	startServe(t, cfg, base, hc)

	env := map[string]string{"KEYDESK_URL": base, "KEYDESK_TOKEN": token}
	getenv := func(k string) string { return env[k] }
	err := runBatchCmd(context.Background(), io.Discard, io.Discard, []string{"list"}, getenv)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusted certificate was accepted: %v", err)
	}
	env["KEYDESK_CA_FILE"] = filepath.Join(dir, "cert.pem")
	var out bytes.Buffer
	if err := runBatchCmd(context.Background(), &out, io.Discard, []string{"run"}, getenv); err != nil || !strings.Contains(out.String(), "requested") {
		t.Fatalf("batch run over TLS: %v\n%s", err, out.String())
	}
	// Over TLS the UI asks browsers to stay on HTTPS.
	resp, err := hc.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS over TLS")
	}
}

// selfSigned makes a certificate for 127.0.0.1, its own CA.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	c := testenv.SelfSigned(t, "keydesk test")
	return c.CertPEM, c.KeyPEM
}
