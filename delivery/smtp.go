package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/emersion/go-smtp"
)

// Sender hands one composed email to the mail system.
type Sender interface {
	// Send submits msg from the envelope sender to the recipients and
	// returns the server's reply to the end of data. A failure is a
	// *SendError saying whether a later try may succeed.
	Send(ctx context.Context, from string, to []string, msg []byte) (reply string, err error)
}

// SendError is a failed submission.
type SendError struct {
	// Phase is where it failed: connect, tls, hello, auth, mail, rcpt, data.
	Phase string
	// Code is the SMTP reply code, 0 when there was none (a network error).
	Code int
	// Reply is the server's reply text (or the network error's).
	Reply string
	// Permanent: the server refused this message for good (a 5xx reply to
	// MAIL, RCPT or DATA). Everything else, including a refused login, is
	// temporary: it says nothing about the message and is worth retrying.
	Permanent bool
	Err       error
}

func (e *SendError) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("delivery: smtp %s: %d %s", e.Phase, e.Code, e.Reply)
	}
	return fmt.Sprintf("delivery: smtp %s: %s", e.Phase, e.Reply)
}

func (e *SendError) Unwrap() error { return e.Err }

// Temporary reports whether a later try may succeed: all but a refusal of
// the message itself. keydesk.Temporary reads it.
func (e *SendError) Temporary() bool { return !e.Permanent }

// Summary is the reply as one line for a request's Problem and alerts.
func (e *SendError) Summary() string {
	if e.Code != 0 {
		return fmt.Sprintf("%d %s (at %s)", e.Code, strings.ReplaceAll(e.Reply, "\n", " "), strings.ToUpper(e.Phase))
	}
	return fmt.Sprintf("%s (at %s)", e.Reply, e.Phase)
}

func sendError(phase string, err error) *SendError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		perm := se.Code >= 500 && (phase == "mail" || phase == "rcpt" || phase == "data")
		return &SendError{Phase: phase, Code: se.Code, Reply: se.Message, Permanent: perm, Err: err}
	}
	return &SendError{Phase: phase, Reply: err.Error(), Err: err}
}

// SMTPOptions configure NewSMTP.
type SMTPOptions struct {
	// Server is the smtp section, paths resolved (mailauth.Resolve).
	Server mailauth.MailServer
	// HeloName is given in EHLO. Default: the host name.
	HeloName string
	// Tokens supplies OAuth2 tokens for oauthbearer/xoauth2; default from
	// Server's oauth2_token_file/command.
	Tokens mailauth.TokenSource
	// CheckEvery caches the readiness check's result this long. Default 30s.
	CheckEvery time.Duration
	// Now is the clock of the check cache; nil is time.Now.
	Now func() time.Time
}

// SMTP submits mail to the configured server, one connection per message:
// outgoing volume is small, and a fresh connection cannot carry a broken
// session's state into the next message.
type SMTP struct {
	o   SMTPOptions
	tls *tls.Config

	mu        sync.Mutex
	checkedAt time.Time
	checkErr  error
}

var _ Sender = (*SMTP)(nil)

// Validate reports every problem of o's server that keeps mail from being
// sent safely, each naming its key in the smtp section: what mailauth
// finds in the settings (MailServer.Validate: plain text to loopback
// only, credentials, files named) and a CA file that holds no
// certificate. `keydesk check` and serve show them all, where NewSMTP
// stops at the first. A server without an address is not checked.
func (o SMTPOptions) Validate() error {
	if o.Server.Address == "" {
		return nil
	}
	errs := []error{mailauth.InSection("smtp", o.Server.Validate())}
	if o.Server.TLSCAFile != "" {
		if _, err := mailauth.TLSConfig(o.Server, ""); err != nil {
			errs = append(errs, fmt.Errorf("smtp.tls_ca_file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// NewSMTP checks the server settings and returns a sender.
func NewSMTP(o SMTPOptions) (*SMTP, error) {
	if o.Server.Address == "" {
		return nil, errors.New("delivery: smtp.address is not set: the delivery role needs a mail server to send through")
	}
	if err := mailauth.CheckSecurity(o.Server); err != nil {
		return nil, fmt.Errorf("delivery: smtp: %w", err)
	}
	tc, err := mailauth.TLSConfig(o.Server, "")
	if err != nil {
		return nil, fmt.Errorf("delivery: smtp: %w", err)
	}
	if o.HeloName == "" {
		o.HeloName, _ = os.Hostname()
		if o.HeloName == "" {
			o.HeloName = "localhost"
		}
	}
	if o.Tokens == nil {
		o.Tokens = mailauth.NewTokenSource(o.Server)
	}
	if o.Server.Timeout == 0 {
		o.Server.Timeout = 60 * time.Second
	}
	if o.CheckEvery == 0 {
		o.CheckEvery = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &SMTP{o: o, tls: tc}, nil
}

// dial connects, secures and greets; the returned stop ends the watch on ctx.
func (s *SMTP) dial(ctx context.Context) (*smtp.Client, func() bool, error) {
	ms := s.o.Server
	d := net.Dialer{Timeout: ms.Timeout}
	conn, err := d.DialContext(ctx, "tcp", ms.Address)
	if err != nil {
		return nil, nil, &SendError{Phase: "connect", Reply: err.Error(), Err: err}
	}
	// A cancelled context closes the connection, which ends whatever
	// command is waiting on it.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	fail := func(phase string, err error) (*smtp.Client, func() bool, error) {
		stop()
		_ = conn.Close()
		return nil, nil, sendError(phase, err)
	}
	var c *smtp.Client
	switch ms.Security {
	case mailauth.SecurityTLS:
		tconn := tls.Client(conn, s.tls)
		hctx, cancel := context.WithTimeout(ctx, ms.Timeout)
		err := tconn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fail("tls", err)
		}
		c = smtp.NewClient(tconn)
	case mailauth.SecurityStartTLS:
		// The EHLO before STARTTLS says "localhost" (go-smtp's choice);
		// the one that counts, after it, says HeloName.
		c, err = smtp.NewClientStartTLS(conn, s.tls)
		if err != nil {
			return fail("tls", err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = ms.Timeout
	c.SubmissionTimeout = ms.Timeout
	if err := c.Hello(s.o.HeloName); err != nil {
		_ = c.Close()
		return fail("hello", err)
	}
	return c, stop, nil
}

// auth authenticates, re-reading an OAuth2 token once if it is refused.
func (s *SMTP) auth(ctx context.Context, c *smtp.Client) error {
	ms := s.o.Server
	if ms.Auth == mailauth.AuthNone {
		return nil
	}
	if ok, _ := c.Extension("AUTH"); !ok {
		return &SendError{Phase: "auth", Reply: "the server offers no AUTH: set smtp.auth: none to send without logging in"}
	}
	cl, err := mailauth.SASLClient(ctx, ms, s.o.Tokens)
	if err != nil {
		return &SendError{Phase: "auth", Reply: err.Error(), Err: err}
	}
	if err := c.Auth(cl); err != nil {
		if s.o.Tokens != nil {
			s.o.Tokens.Invalidate()
		}
		return sendError("auth", err)
	}
	return nil
}

// Send submits one message. A refused OAuth2 token is re-read and tried
// once more on a new connection.
func (s *SMTP) Send(ctx context.Context, from string, to []string, msg []byte) (string, error) {
	reply, err := s.send(ctx, from, to, msg)
	var se *SendError
	if err != nil && s.o.Tokens != nil && errors.As(err, &se) && se.Phase == "auth" && ctx.Err() == nil {
		reply, err = s.send(ctx, from, to, msg)
	}
	return reply, err
}

func (s *SMTP) send(ctx context.Context, from string, to []string, msg []byte) (string, error) {
	c, stop, err := s.dial(ctx)
	if err != nil {
		return "", err
	}
	defer stop()
	defer c.Close()
	if err := s.auth(ctx, c); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", sendError("mail", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return "", sendError("rcpt", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", sendError("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return "", sendError("data", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", sendError("data", err)
	}
	_ = c.Quit() // the message is accepted; a failing QUIT changes nothing
	return resp.StatusText, nil
}

// Check dials the server and says EHLO (and STARTTLS), for /readyz. The
// result is kept CheckEvery, so probes do not hammer the server.
func (s *SMTP) Check(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.Now()
	if !s.checkedAt.IsZero() && now.Sub(s.checkedAt) < s.o.CheckEvery {
		return s.checkErr
	}
	c, stop, err := s.dial(ctx)
	if err == nil {
		_ = c.Quit()
		stop()
		_ = c.Close()
	}
	s.checkedAt, s.checkErr = now, err
	return err
}

// Probe connects, secures, says EHLO, logs in and quits, sending nothing:
// `keydesk check --connect`. Unlike Check, it logs in, and nothing is
// cached. A failure is a *SendError naming the phase.
func (s *SMTP) Probe(ctx context.Context) error {
	c, stop, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer stop()
	defer c.Close()
	if err := s.auth(ctx, c); err != nil {
		return err
	}
	if err := c.Quit(); err != nil {
		return sendError("quit", err)
	}
	return nil
}

// envelopeFrom is the bare address of smtp.from.
func envelopeFrom(c *Composer) string { return c.From.Address }
