package natstest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteCerts checks what the NATS configuration relies on: the server
// certificate verifies, against the CA, for each host asked and for the
// loopback; each user's certificate carries its e-mail SAN for client
// authentication; the private keys are readable by the owner only.
func TestWriteCerts(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCerts(dir, CertOptions{Hosts: []string{"nats-1.keydesk.internal", "10.0.0.7"}, Users: []string{"intake"}}); err != nil {
		t.Fatalf("WriteCerts: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	load := func(name string) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	srv := load("server")
	for _, host := range []string{"nats-1.keydesk.internal", "10.0.0.7", "localhost", "127.0.0.1", "::1"} {
		t.Run("server "+host, func(t *testing.T) {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := srv.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("usage %v: %v", usage, err)
				}
			}
		})
	}
	if _, err := srv.Verify(x509.VerifyOptions{DNSName: "nats-2.keydesk.internal", Roots: roots}); err == nil {
		t.Error("the server certificate verifies for a host not asked for")
	}

	user := load("intake")
	if len(user.EmailAddresses) != 1 || user.EmailAddresses[0] != "intake@"+UserDomain {
		t.Errorf("user SAN %v, want intake@%s", user.EmailAddresses, UserDomain)
	}
	if _, err := user.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("user certificate: %v", err)
	}
	if _, err := user.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a user certificate verifies as a server's")
	}

	for _, name := range []string{"ca-key.pem", "server-key.pem", "intake-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}
