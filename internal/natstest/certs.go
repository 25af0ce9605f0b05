package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// UserDomain is the domain of the e-mail SAN of role certificates: the
// server maps a client certificate to the user named by it
// (tls.verify_and_map), e.g. intake@keydesk.internal.
const UserDomain = "keydesk.internal"

// Roles are the NATS users of deploy/nats/accounts.conf, one per keydesk
// role plus admin (creates streams; keydesk with every role in one process).
var Roles = []string{"admin", "intake", "review", "batch", "delivery"}

// CertOptions say what WriteCerts makes.
type CertOptions struct {
	// Hosts are the server certificate's DNS names and IP addresses
	// (nats-1, nats-1.keydesk.internal, 127.0.0.1...). localhost and
	// 127.0.0.1 are always added.
	Hosts []string
	// Users get a client certificate each, <user>.pem and <user>-key.pem,
	// whose e-mail SAN is <user>@UserDomain. Default Roles.
	Users []string
	// Valid is how long the certificates are valid. Default 1 year.
	Valid time.Duration
}

// WriteCerts makes a new CA in dir (ca.pem, ca-key.pem), a server
// certificate (server.pem, server-key.pem) used by every node for client
// and route connections, and a client certificate per user. Private keys
// are written 0600.
func WriteCerts(dir string, o CertOptions) error {
	if o.Valid == 0 {
		o.Valid = 365 * 24 * time.Hour
	}
	if o.Users == nil {
		o.Users = Roles
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keydesk NATS CA", Organization: []string{"Buildmarkets"}},
		NotBefore:             now,
		NotAfter:              now.Add(o.Valid),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, "ca-key.pem"), caKey); err != nil {
		return err
	}
	issue := func(name string, tmpl *x509.Certificate) error {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = now, now.Add(o.Valid)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return writeKey(filepath.Join(dir, name+"-key.pem"), k)
	}
	srv := &x509.Certificate{
		Subject: pkix.Name{CommonName: "keydesk NATS server", Organization: []string{"Buildmarkets"}},
		// Nodes present this certificate to each other on routes, as
		// server and as client.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	if err := issue("server", srv); err != nil {
		return err
	}
	for _, u := range o.Users {
		if err := issue(u, &x509.Certificate{
			Subject:        pkix.Name{CommonName: u, Organization: []string{"keydesk"}},
			EmailAddresses: []string{u + "@" + UserDomain},
			ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return fmt.Errorf("certificate of %s: %w", u, err)
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}
