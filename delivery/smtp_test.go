package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/emersion/go-sasl"
)

// authServer is a test SMTP server that wants XOAUTH2 with its current
// token (or PLAIN with a password) before MAIL FROM.
type authServer struct {
	*smtptest.Server
	mu       sync.Mutex
	token    string
	password string
}

func (a *authServer) setToken(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = tok
}

type tlsMode int

const (
	plainConn tlsMode = iota
	startTLS
	implicitTLS
)

func startAuthServer(t *testing.T, a *authServer, mode tlsMode, cert *tls.Certificate) string {
	t.Helper()
	a.Server = smtptest.Start(t, smtptest.Options{
		Domain: "mail.test", Cert: cert, ImplicitTLS: mode == implicitTLS, LoginRequired: true,
		Login: func(mech, _, secret string) bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			switch mech {
			case sasl.Plain:
				return secret == a.password
			case mailauth.XOAuth2:
				return secret == a.token
			}
			return false
		},
	})
	return a.Addr
}

func TestSMTPSecurityModes(t *testing.T) {
	dir := t.TempDir()
	c := testenv.SelfSigned(t, "mail.test")
	caPEM, cert := c.CertPEM, c.TLS
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		mode     tlsMode
		security mailauth.Security
		ca       string
		wantErr  string
	}{
		{"implicit tls, private CA", implicitTLS, mailauth.SecurityTLS, caFile, ""},
		{"starttls, private CA", startTLS, mailauth.SecurityStartTLS, caFile, ""},
		{"starttls, unknown CA", startTLS, mailauth.SecurityStartTLS, "", "certificate"},
		{"plain on loopback", plainConn, mailauth.SecurityNone, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &authServer{password: "pw"}
			addr := startAuthServer(t, a, tt.mode, &cert)
			ms := mailauth.MailServer{Address: addr, Security: tt.security, Auth: "plain", Username: "keydesk", Password: keydesk.SecretString("pw"), TLSCAFile: tt.ca, Timeout: 10 * time.Second}
			s, err := NewSMTP(SMTPOptions{Server: ms, HeloName: "keydesk.test"})
			if err != nil {
				t.Fatal(err)
			}
			// The certificate names mail.test; the test dials 127.0.0.1.
			s.tls.ServerName = "mail.test"
			_, err = s.Send(context.Background(), "support@buildmarkets.ai", []string{"a@acme.example"}, []byte("Subject: x\r\n\r\nhi\r\n"))
			if tt.wantErr != "" {
				var se *SendError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &se) || se.Permanent {
					t.Fatalf("Send = %v, want a temporary error about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			helo, tls := a.Hello()
			if a.Count() != 1 || helo != "keydesk.test" || tls != (tt.mode != plainConn) {
				t.Fatalf("server saw messages=%d helo=%q tls=%v", a.Count(), helo, tls)
			}
		})
	}
	if _, err := NewSMTP(SMTPOptions{Server: mailauth.MailServer{Address: "smtp.example.com:25", Security: mailauth.SecurityNone}}); !errors.Is(err, mailauth.ErrPlainToRemote) {
		t.Fatalf("plain text to a remote server: %v", err)
	}
}

// A rotated OAuth2 token: the cached one is refused, the file is read
// again and the message goes through in the same Send.
func TestSMTPXOAuth2TokenRotation(t *testing.T) {
	a := &authServer{token: "tok-1"}
	addr := startAuthServer(t, a, plainConn, nil)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ms := mailauth.MailServer{Address: addr, Security: mailauth.SecurityNone, Auth: "xoauth2", Username: "keydesk@buildmarkets.ai", OAuth2TokenFile: tokFile, Timeout: 10 * time.Second}
	s, err := NewSMTP(SMTPOptions{Server: ms})
	if err != nil {
		t.Fatal(err)
	}
	send := func() error {
		_, err := s.Send(context.Background(), "support@buildmarkets.ai", []string{"a@acme.example"}, []byte("Subject: x\r\n\r\nhi\r\n"))
		return err
	}
	if err := send(); err != nil {
		t.Fatal(err)
	}
	a.setToken("tok-2")
	if err := os.WriteFile(tokFile, []byte("tok-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := send(); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if accepted, refused := a.Logins(); refused != 1 || len(accepted) != 2 || a.Count() != 2 {
		t.Errorf("refused=%d accepted=%d messages=%d, want 1, 2, 2", refused, len(accepted), a.Count())
	}
	a.setToken("tok-3") // revoked, and nobody refreshes the file
	err = send()
	var se *SendError
	if !errors.As(err, &se) || se.Phase != "auth" || se.Code != 535 || se.Permanent {
		t.Fatalf("refused login: %v, want a temporary auth error with 535", err)
	}
	if strings.Contains(err.Error(), "tok-") {
		t.Fatalf("the token is in the error: %v", err)
	}
}

func TestSMTPCheckIsCached(t *testing.T) {
	a := &authServer{}
	srvAddr := startAuthServer(t, a, plainConn, nil)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s, err := NewSMTP(SMTPOptions{Server: mailauth.MailServer{Address: srvAddr, Security: mailauth.SecurityNone, Auth: "none", Timeout: 5 * time.Second}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// Point it at a closed port: the cached answer holds for 30s.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	s.o.Server.Address = dead
	if err := s.Check(ctx); err != nil {
		t.Fatalf("within 30s: %v, want the cached ok", err)
	}
	now = now.Add(31 * time.Second)
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("after 30s: %v, want a connect error", err)
	}
}

// TestSMTPProbe logs in and quits, sending nothing; a refused password is
// an auth failure and nothing listening a connect failure.
func TestSMTPProbe(t *testing.T) {
	a := &authServer{password: "pw"}
	addr := startAuthServer(t, a, plainConn, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	tests := []struct {
		name, addr, pass, wantPhase string
	}{
		{"logs in", addr, "pw", ""},
		{"wrong password", addr, "nope", "auth"},
		{"nothing listens", closed, "pw", "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := mailauth.MailServer{Address: tt.addr, Security: mailauth.SecurityNone, Auth: "plain", Username: "keydesk", Password: keydesk.SecretString(tt.pass), Timeout: 5 * time.Second}
			s, err := NewSMTP(SMTPOptions{Server: ms, HeloName: "keydesk.test"})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Probe(context.Background())
			var se *SendError
			if tt.wantPhase == "" && err != nil || tt.wantPhase != "" && (!errors.As(err, &se) || se.Phase != tt.wantPhase) {
				t.Fatalf("Probe = %v, want phase %q", err, tt.wantPhase)
			}
		})
	}
	if accepted, refused := a.Logins(); len(accepted) != 1 || refused != 1 || a.Count() != 0 {
		t.Errorf("server saw %d logins, %d refused, %d messages; want 1, 1, 0", len(accepted), refused, a.Count())
	}
}
