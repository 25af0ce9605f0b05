// Package mailauth holds what the IMAP and SMTP clients share to reach a
// mail server safely: the TLS configuration, the rule on plain-text
// connections, and SASL authentication (PLAIN, LOGIN, OAUTHBEARER and
// XOAUTH2, with OAuth2 access tokens read from a file or a command).
//
// Invariants: a connection without TLS is allowed only to a loopback
// address, so a password or token never crosses a network in clear text;
// TLS is 1.2 or newer and verifies the server unless insecure_skip_verify
// says otherwise; passwords and tokens are keydesk.Secret until the moment
// a SASL client writes them on the wire, so no log line or error can hold
// one.
package mailauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Resolve returns ms with its file names (tls_ca_file, oauth2_token_file)
// made relative to the config file, through path (the config's Path).
func Resolve(ms MailServer, path func(string) string) MailServer {
	ms.TLSCAFile = path(ms.TLSCAFile)
	ms.OAuth2TokenFile = path(ms.OAuth2TokenFile)
	return ms
}

// TLSConfig returns the TLS configuration for ms: TLS 1.2 or newer, the
// system roots plus tls_ca_file when set, and insecure_skip_verify as
// configured. serverName is the name the certificate must carry; empty
// takes the host of ms.Address.
func TLSConfig(ms MailServer, serverName string) (*tls.Config, error) {
	if serverName == "" {
		host, _, err := net.SplitHostPort(ms.Address)
		if err != nil {
			return nil, fmt.Errorf("mailauth: address %q is not host:port", ms.Address)
		}
		serverName = host
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: ms.InsecureSkipVerify, //nolint:gosec // an explicit operator choice, for test servers
	}
	if ms.TLSCAFile != "" {
		pem, err := os.ReadFile(ms.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("mailauth: tls_ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mailauth: tls_ca_file %s holds no PEM certificate", ms.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// ErrPlainToRemote is returned by CheckSecurity for security "none" to a
// host that is not a loopback address.
var ErrPlainToRemote = errors.New("mailauth: security none (no TLS) is allowed only to a loopback address")

// CheckSecurity refuses a configuration that would send credentials in
// clear text over a network: security none is for a server on this host
// (a local relay, a test server) only.
func CheckSecurity(ms MailServer) error {
	host, _, err := net.SplitHostPort(ms.Address)
	if err != nil {
		return fmt.Errorf("mailauth: address %q is not host:port (e.g. mail.example.com:587)", ms.Address)
	}
	switch ms.Security {
	case SecurityTLS, SecurityStartTLS:
		return nil
	case SecurityNone:
		if IsLoopback(host) {
			return nil
		}
		return fmt.Errorf("%w, not %s: use tls or starttls", ErrPlainToRemote, host)
	default:
		return fmt.Errorf("mailauth: security %q is not one of tls, starttls, none", ms.Security)
	}
}
