package mailauth

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/buildmarkets/keydesk"
)

// Security is how a mail connection is protected.
type Security string

const (
	SecurityTLS      Security = "tls"
	SecurityStartTLS Security = "starttls"
	SecurityNone     Security = "none" // loopback only
)

// MailServer is how to reach and log in to a mail server: what the imap and
// smtp sections of keydesk.yaml share, and what the IMAP and SMTP clients
// take.
type MailServer struct {
	// Address is host:port.
	Address string `yaml:"address"`
	// Security: tls (implicit), starttls, or none (refused unless loopback).
	Security Security `yaml:"security"`
	// Username and Password authenticate with LOGIN/PLAIN.
	Username string         `yaml:"username"`
	Password keydesk.Secret `yaml:"password"`
	// Auth: plain (default), login, oauthbearer or xoauth2.
	Auth string `yaml:"auth"`
	// OAuth2TokenFile or OAuth2TokenCommand supply the access token for
	// oauthbearer/xoauth2; read again whenever the server refuses it.
	OAuth2TokenFile    string `yaml:"oauth2_token_file"`
	OAuth2TokenCommand string `yaml:"oauth2_token_command"`
	// TLSCAFile adds a private CA; InsecureSkipVerify is for test servers only.
	TLSCAFile          string `yaml:"tls_ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// Timeout bounds each network operation. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
}

// Validate lists every problem of ms, each one error "key: what" with the
// key as the section spells it (address, security, ...), for the config
// loader to name the file and section. File names must be resolved
// (Resolve). A server without an address is not checked: the role that
// needs it says so when it starts.
func (ms MailServer) Validate() error {
	if ms.Address == "" {
		return nil
	}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	host, _, err := net.SplitHostPort(ms.Address)
	if err != nil {
		bad("address", "%q is not host:port (e.g. mail.example.com:993)", ms.Address)
	}
	switch ms.Security {
	case SecurityTLS, SecurityStartTLS:
	case SecurityNone:
		if err == nil && !IsLoopback(host) {
			bad("security", "none sends the password in clear text: it is allowed only to a loopback address, not %s; use tls or starttls", host)
		}
	default:
		bad("security", "%q is not one of tls, starttls, none", ms.Security)
	}
	switch ms.Auth {
	case AuthPlain, AuthLogin:
		if ms.Username == "" {
			bad("username", "is required")
		}
	case AuthOAuthBearer, AuthXOAuth2:
		if ms.OAuth2TokenFile == "" && ms.OAuth2TokenCommand == "" {
			bad("oauth2_token_file", "%s needs oauth2_token_file or oauth2_token_command", ms.Auth)
		}
	case AuthNone, "":
		// Empty is a server not read from keydesk.yaml, whose loader
		// writes plain there: the clients log in with PLAIN then.
	default:
		bad("auth", "%q is not one of plain, login, oauthbearer, xoauth2", ms.Auth)
	}
	for _, f := range []struct{ key, path string }{{"tls_ca_file", ms.TLSCAFile}, {"oauth2_token_file", ms.OAuth2TokenFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad(f.key, "%v", err)
		}
	}
	return errors.Join(errs...)
}

// InSection names the section in each problem of a MailServer.Validate
// error ("security: …" becomes "imap.security: …"); nil stays nil.
func InSection(section string, err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		errs = append(errs, fmt.Errorf("%s.%w", section, e))
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether host is a loopback name or address: the only
// place a connection without TLS may go.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
