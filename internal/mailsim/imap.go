// Package mailsim serves in-memory mail servers on loopback: go-imap's
// memory IMAP server and a go-smtp server that keeps what it accepts. The
// demo, the tests (through imaptest and smtptest, which add a test's
// cleanup) and the benches get their IMAP and SMTP from here, so that
// there is one of each.
package mailsim

import (
	"fmt"
	"net"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// IMAPOptions shape the IMAP server. The zero value serves IMAP4rev2
// (which has MOVE and UIDPLUS) and logs nothing.
type IMAPOptions struct {
	// Caps replaces the advertised capabilities.
	Caps imap.CapSet
	// Wrap, if set, wraps each session (to refuse or break commands).
	Wrap func(imapserver.Session) imapserver.Session
	// Logger receives the server's errors.
	Logger imapserver.Logger
	// Mailboxes are made besides INBOX.
	Mailboxes []string
}

// IMAPServer is a running in-memory IMAP server with one user.
type IMAPServer struct {
	// Addr is host:port on loopback.
	Addr string
	// User is the one user, with an INBOX; add mailboxes, messages or
	// recreate INBOX (a new UIDVALIDITY) through it.
	User *imapmemserver.User
	srv  *imapserver.Server
}

// ServeIMAP serves user/pass with an empty INBOX until Close.
func ServeIMAP(user, pass string, o IMAPOptions) (*IMAPServer, error) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(user, pass)
	for _, mb := range append([]string{"INBOX"}, o.Mailboxes...) {
		if err := u.Create(mb, nil); err != nil {
			return nil, fmt.Errorf("mailsim: create %s: %w", mb, err)
		}
	}
	mem.AddUser(u)
	if o.Caps == nil {
		o.Caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	}
	if o.Logger == nil {
		o.Logger = quiet{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			var s imapserver.Session = mem.NewSession()
			if o.Wrap != nil {
				s = o.Wrap(s)
			}
			return s, nil, nil
		},
		Caps:         o.Caps,
		InsecureAuth: true, // loopback only
		Logger:       o.Logger,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mailsim: imap listen: %w", err)
	}
	go func() { _ = srv.Serve(ln) }()
	return &IMAPServer{Addr: ln.Addr().String(), User: u, srv: srv}, nil
}

// Close stops the server; a second call is harmless.
func (s *IMAPServer) Close() { _ = s.srv.Close() }

type quiet struct{}

func (quiet) Printf(string, ...any) {}
