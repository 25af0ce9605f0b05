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
	ca, err := newCA(dir, time.Now().Add(-time.Hour), o.Valid)
	if err != nil {
		return err
	}
	if err := ca.issue("server", serverTemplate(o.Hosts)); err != nil {
		return err
	}
	for _, u := range o.Users {
		if err := ca.issue(u, &x509.Certificate{
			Subject:        pkix.Name{CommonName: u, Organization: []string{"keydesk"}},
			EmailAddresses: []string{u + "@" + UserDomain},
			ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return fmt.Errorf("certificate of %s: %w", u, err)
		}
	}
	return nil
}

// certAuthority is the CA written to dir, which issues the others there.
type certAuthority struct {
	dir       string
	cert      *x509.Certificate
	key       *ecdsa.PrivateKey
	notBefore time.Time
	valid     time.Duration
}

// newCA makes a CA and writes it to dir (ca.pem, ca-key.pem).
func newCA(dir string, notBefore time.Time, valid time.Duration) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keydesk NATS CA", Organization: []string{"Buildmarkets"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(valid),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, "ca-key.pem"), key); err != nil {
		return nil, err
	}
	return &certAuthority{dir: dir, cert: cert, key: key, notBefore: notBefore, valid: valid}, nil
}

// issue signs a new key's certificate from tmpl and writes both, as
// <name>.pem and <name>-key.pem.
func (ca *certAuthority) issue(name string, tmpl *x509.Certificate) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = ca.notBefore, ca.notBefore.Add(ca.valid)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(ca.dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(filepath.Join(ca.dir, name+"-key.pem"), k)
}

// serverTemplate is the server certificate for the hosts, each an IP
// address or a DNS name, and always for localhost and the loopback.
func serverTemplate(hosts []string) *x509.Certificate {
	srv := &x509.Certificate{
		Subject: pkix.Name{CommonName: "keydesk NATS server", Organization: []string{"Buildmarkets"}},
		// Nodes present this certificate to each other on routes, as
		// server and as client.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	return srv
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
