package mailauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestCheckSecurity(t *testing.T) {
	tests := []struct {
		name    string
		ms      MailServer
		wantErr string
	}{
		{"tls remote", MailServer{Address: "mail.example.com:465", Security: SecurityTLS}, ""},
		{"starttls remote", MailServer{Address: "mail.example.com:587", Security: SecurityStartTLS}, ""},
		{"none loopback v4", MailServer{Address: "127.0.0.1:25", Security: SecurityNone}, ""},
		{"none loopback v6", MailServer{Address: "[::1]:25", Security: SecurityNone}, ""},
		{"none localhost", MailServer{Address: "localhost:25", Security: SecurityNone}, ""},
		{"none remote", MailServer{Address: "mail.example.com:25", Security: SecurityNone}, "only to a loopback address, not mail.example.com"},
		{"none private ip", MailServer{Address: "10.0.0.5:25", Security: SecurityNone}, "only to a loopback address"},
		{"unknown", MailServer{Address: "mail.example.com:25", Security: "ssl"}, `"ssl" is not one of`},
		{"bad address", MailServer{Address: "mail.example.com", Security: SecurityTLS}, "not host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSecurity(tt.ms)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSecurity: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckSecurity = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if err := CheckSecurity(MailServer{Address: "mail.example.com:25", Security: SecurityNone}); !errors.Is(err, ErrPlainToRemote) {
		t.Fatalf("error does not match ErrPlainToRemote: %v", err)
	}
}

// tokenServer is a go-smtp server that accepts PLAIN and LOGIN with user
// and pass, and OAUTHBEARER and XOAUTH2 with user and the current token.
type tokenServer struct {
	user, pass, token string
	srv               *smtptest.Server
}

func startTokenServer(t *testing.T, ts *tokenServer) string {
	t.Helper()
	ts.srv = smtptest.Start(t, smtptest.Options{Login: func(mech, user, secret string) bool {
		if mech == sasl.Plain || mech == sasl.Login {
			return user == ts.user && secret == ts.pass
		}
		return user == ts.user && secret == ts.token
	}})
	return ts.srv.Addr
}

// authenticate dials addr and runs AUTH with the client SASLClient makes.
func authenticate(ctx context.Context, addr string, ms MailServer, tokens TokenSource) error {
	c, err := SASLClient(ctx, ms, tokens)
	if err != nil {
		return err
	}
	sc, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer sc.Close()
	return sc.Auth(c)
}

func TestSASLAgainstSMTPServer(t *testing.T) {
	ctx := context.Background()
	ts := &tokenServer{user: "keydesk@example.com", pass: "s3cret-pass", token: "tok-1"}
	addr := startTokenServer(t, ts)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := MailServer{Address: addr, Security: SecurityNone, Username: ts.user}
	tests := []struct {
		name     string
		auth     string
		password string
		tokens   TokenSource
		wantErr  bool
		wantMech string
	}{
		{"plain", "plain", ts.pass, nil, false, sasl.Plain},
		{"plain wrong password", "plain", "nope", nil, true, ""},
		{"login", "login", ts.pass, nil, false, sasl.Login},
		{"oauthbearer file", "oauthbearer", "", NewTokens(TokenOptions{File: tokFile}), false, sasl.OAuthBearer},
		{"xoauth2 file", "xoauth2", "", NewTokens(TokenOptions{File: tokFile}), false, XOAuth2},
		{"xoauth2 command", "xoauth2", "", NewTokens(TokenOptions{Command: "echo tok-1"}), false, XOAuth2},
		{"xoauth2 wrong token", "xoauth2", "", NewTokens(TokenOptions{Command: "echo tok-0"}), true, ""},
		{"oauthbearer wrong token", "oauthbearer", "", NewTokens(TokenOptions{Command: "echo tok-0"}), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts.srv.ResetLogins()
			ms := base
			ms.Auth = tt.auth
			ms.Password = keydesk.SecretString(tt.password)
			err := authenticate(ctx, addr, ms, tt.tokens)
			if tt.wantErr {
				var se *smtp.SMTPError
				if !Refused(err) && (!errors.As(err, &se) || se.Code != 535) {
					t.Fatalf("auth = %v, want a 535 refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("auth: %v", err)
			}
			if authed, _ := ts.srv.Logins(); len(authed) != 1 || authed[0] != tt.wantMech {
				t.Fatalf("server accepted %v, want [%s]", authed, tt.wantMech)
			}
		})
	}
}

// A refused token is read again after Invalidate, and not before.
func TestTokenRefreshAfterRefusal(t *testing.T) {
	ctx := context.Background()
	ts := &tokenServer{user: "keydesk@example.com", token: "tok-2"}
	addr := startTokenServer(t, ts)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("tok-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := NewTokens(TokenOptions{File: tokFile, MaxAge: time.Hour})
	ms := MailServer{Address: addr, Security: SecurityNone, Username: ts.user, Auth: "xoauth2"}
	if err := authenticate(ctx, addr, ms, tokens); err == nil {
		t.Fatal("stale token accepted")
	}
	// The sidecar writes a fresh token; the cache still holds the old one.
	if err := os.WriteFile(tokFile, []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := authenticate(ctx, addr, ms, tokens); err == nil {
		t.Fatal("cached token was re-read without Invalidate")
	}
	tokens.Invalidate()
	if err := authenticate(ctx, addr, ms, tokens); err != nil {
		t.Fatalf("after Invalidate: %v", err)
	}
}

func TestTokenMaxAge(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tokFile := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(tokFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	tokens := NewTokens(TokenOptions{File: tokFile, MaxAge: time.Minute, Now: func() time.Time { return now }})
	get := func() string {
		s, err := tokens.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return s.Reveal()
	}
	if got := get(); got != "a" {
		t.Fatalf("token %q", got)
	}
	write("b")
	now = now.Add(59 * time.Second)
	if got := get(); got != "a" {
		t.Fatalf("token re-read before MaxAge: %q", got)
	}
	now = now.Add(2 * time.Second)
	if got := get(); got != "b" {
		t.Fatalf("token not re-read after MaxAge: %q", got)
	}
}

func TestTokenErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), maxTokenBytes+10), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		o       TokenOptions
		wantErr string
	}{
		{"missing file", TokenOptions{File: filepath.Join(dir, "nope")}, "oauth2_token_file"},
		{"huge file", TokenOptions{File: big}, "over 65536 bytes"},
		{"empty command output", TokenOptions{Command: "true"}, "token is empty"},
		{"two words", TokenOptions{Command: "echo tok en"}, "holds a space"},
		{"failing command", TokenOptions{Command: "echo 'login expired' >&2; exit 3"}, "login expired"},
		{"slow command", TokenOptions{Command: "sleep 5", CommandTimeout: 100 * time.Millisecond}, "did not finish within 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTokens(tt.o).Token(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Token = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNoTokenInErrorsOrLogs(t *testing.T) {
	tok, err := NewTokens(TokenOptions{Command: "echo very-secret-token"}).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q", tok, tok, tok, tok, tok)} {
		if strings.Contains(s, "very-secret-token") {
			t.Fatalf("token printed: %s", s)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	c := testenv.SelfSigned(t, "mail.test")
	caPEM, cert := c.CertPEM, c.TLS
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	dial := func(tc *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), tc)
		if err != nil {
			return err
		}
		return c.Close()
	}
	tests := []struct {
		name       string
		ms         MailServer
		serverName string
		ok         bool
	}{
		{"private CA", MailServer{Address: ln.Addr().String(), TLSCAFile: caFile}, "mail.test", true},
		{"wrong name", MailServer{Address: ln.Addr().String(), TLSCAFile: caFile}, "other.test", false},
		{"no CA", MailServer{Address: ln.Addr().String()}, "mail.test", false},
		{"insecure", MailServer{Address: ln.Addr().String(), InsecureSkipVerify: true}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := TLSConfig(tt.ms, tt.serverName)
			if err != nil {
				t.Fatal(err)
			}
			if tc.MinVersion < tls.VersionTLS12 {
				t.Fatalf("MinVersion %x", tc.MinVersion)
			}
			if err := dial(tc); (err == nil) != tt.ok {
				t.Fatalf("handshake err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := TLSConfig(MailServer{Address: "a:1", TLSCAFile: bad}, ""); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("bad CA file: %v", err)
	}
}
