package mailsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// XOAuth2 is the name of Google's XOAUTH2 mechanism.
const XOAuth2 = "XOAUTH2"

// Message is one message as the server got it.
type Message struct {
	From string
	To   []string
	Data []byte
}

// SMTPOptions say how the SMTP server behaves; the zero value accepts every
// message on a plain connection without a login.
type SMTPOptions struct {
	// Domain is the name the server greets with (default "localhost").
	Domain string
	// Cert, when set, is offered for STARTTLS, or on the listener itself
	// with ImplicitTLS.
	Cert        *tls.Certificate
	ImplicitTLS bool
	// Login, when set, offers PLAIN, LOGIN, OAUTHBEARER and XOAUTH2 (also
	// on a plain connection) and says whether a login is good: secret is
	// the password or the token.
	Login func(mech, user, secret string) bool
	// LoginRequired refuses MAIL FROM before a good login.
	LoginRequired bool
	// Rcpt, when set, answers each RCPT TO; an error refuses it.
	Rcpt func(to string) error
	// MaxMessageBytes caps a message (default go-smtp's).
	MaxMessageBytes int64
	// OnMessage, when set, sees each accepted message as it arrives.
	OnMessage func(Message)
}

// SMTPServer is a running SMTP server; ServeSMTP returns it.
type SMTPServer struct {
	// Addr is host:port to dial.
	Addr string

	srv     *smtp.Server
	o       SMTPOptions
	mu      sync.Mutex
	got     []Message
	datas   int
	reply   func(n int, to []string) error
	hello   string
	tls     bool
	logins  []string // mechanisms of the good logins
	refused int
}

// ServeSMTP runs an SMTP server on 127.0.0.1 until Close.
func ServeSMTP(o SMTPOptions) (*SMTPServer, error) {
	s := &SMTPServer{o: o}
	srv := smtp.NewServer(s)
	srv.Domain = o.Domain
	if srv.Domain == "" {
		srv.Domain = "localhost"
	}
	srv.ErrorLog = nopLogger{}
	// A login on a plain connection is allowed: what is under test is
	// whether the client upgrades, not whether the server insists.
	srv.AllowInsecureAuth = true
	if o.MaxMessageBytes > 0 {
		srv.MaxMessageBytes = o.MaxMessageBytes
	}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mailsim: smtp listen: %w", err)
	}
	if o.Cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*o.Cert}}
		if o.ImplicitTLS {
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
	}
	s.Addr, s.srv = ln.Addr().String(), srv
	go func() { _ = srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *SMTPServer) Close() { _ = s.srv.Close() }

// SetReply makes reply decide the answer to the n-th DATA (1-based) for
// a recipient list: an error refuses the message (an *smtp.SMTPError
// with the code to answer), nil accepts it. nil restores accepting all.
func (s *SMTPServer) SetReply(reply func(n int, to []string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = reply
}

// Messages returns every message accepted so far, in order.
func (s *SMTPServer) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// To returns the messages accepted for rcpt.
func (s *SMTPServer) To(rcpt string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.got {
		if slices.Contains(m.To, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

// Count returns how many messages were accepted.
func (s *SMTPServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// Hello returns the name the last client gave in EHLO, and whether its
// connection was TLS.
func (s *SMTPServer) Hello() (name string, tls bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hello, s.tls
}

// Logins returns the mechanisms of the good logins, in order, and how
// many logins were refused.
func (s *SMTPServer) Logins() (good []string, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.logins), s.refused
}

// ResetLogins forgets the logins seen so far.
func (s *SMTPServer) ResetLogins() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logins, s.refused = nil, 0
}

// NewSession implements smtp.Backend.
func (s *SMTPServer) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	s.hello = c.Hostname()
	_, s.tls = c.TLSConnectionState()
	s.mu.Unlock()
	return &session{s: s}, nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type session struct {
	s      *SMTPServer
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.o.LoginRequired && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.o.Rcpt != nil {
		if err := ss.s.o.Rcpt(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	m := Message{From: ss.from, To: slices.Clone(ss.to), Data: b}
	s.mu.Lock()
	s.datas++
	if s.reply != nil {
		if err := s.reply(s.datas, ss.to); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.got = append(s.got, m)
	s.mu.Unlock()
	// Outside the lock: the callback may ask for Messages.
	if s.o.OnMessage != nil {
		s.o.OnMessage(m)
	}
	return nil
}

// errBadLogin is what a refused login gets.
var errBadLogin = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "credentials refused"}

func (ss *session) AuthMechanisms() []string {
	if ss.s.o.Login == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login, sasl.OAuthBearer, XOAuth2}
}

// check asks SMTPOptions.Login and notes the answer.
func (ss *session) check(mech, user, secret string) bool {
	ok := ss.s.o.Login(mech, user, secret)
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if !ok {
		ss.s.refused++
		return false
	}
	ss.s.logins = append(ss.s.logins, mech)
	ss.authed = true
	return true
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.o.Login == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	checkErr := func(user, secret string) error {
		if !ss.check(mech, user, secret) {
			return errBadLogin
		}
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return checkErr(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: checkErr}, nil
	case sasl.OAuthBearer:
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if !ss.check(mech, o.Username, o.Token) {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		}), nil
	case XOAuth2:
		return &xoauth2Server{check: func(user, tok string) bool { return ss.check(mech, user, tok) }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of LOGIN (go-sasl has only the client).
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp != nil {
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// xoauth2Server is XOAUTH2 as Gmail runs it: a refused token gets a JSON
// challenge, then a failure once the client answers with an empty line.
type xoauth2Server struct {
	check   func(user, tok string) bool
	refused bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.refused {
		return nil, true, errBadLogin
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	parts := strings.Split(string(resp), "\x01")
	if len(parts) != 4 || !strings.HasPrefix(parts[0], "user=") || !strings.HasPrefix(parts[1], "auth=Bearer ") || parts[2] != "" || parts[3] != "" {
		return nil, true, errors.New("mailsim: malformed xoauth2 response")
	}
	if x.check(strings.TrimPrefix(parts[0], "user="), strings.TrimPrefix(parts[1], "auth=Bearer ")) {
		return nil, true, nil
	}
	x.refused = true
	return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
}
