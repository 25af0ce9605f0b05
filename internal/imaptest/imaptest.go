// Package imaptest serves go-imap's in-memory IMAP server on loopback for
// tests: a real IMAP dialogue, with capabilities and sessions a test can
// shape (drop MOVE, refuse a fetch) to reach the poller's fallbacks.
package imaptest

import (
	"net"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Options shape the server. The zero value serves IMAP4rev2 (which has
// MOVE and UIDPLUS) and logs nothing.
type Options struct {
	// Caps replaces the advertised capabilities.
	Caps imap.CapSet
	// Wrap, if set, wraps each session (to refuse or break commands).
	Wrap func(imapserver.Session) imapserver.Session
	// Logger receives the server's errors.
	Logger imapserver.Logger
}

// Server is a running in-memory IMAP server with one user.
type Server struct {
	// Addr is host:port on loopback.
	Addr string
	// User is the one user, with an INBOX; tests add mailboxes or
	// recreate INBOX (a new UIDVALIDITY) through it.
	User *imapmemserver.User
	srv  *imapserver.Server
}

// Start serves user/pass with an empty INBOX until the test ends (or Close).
func Start(t testing.TB, user, pass string, o Options) *Server {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(user, pass)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
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
		InsecureAuth: true,
		Logger:       o.Logger,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	s := &Server{Addr: ln.Addr().String(), User: u, srv: srv}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server; a second call is harmless.
func (s *Server) Close() { _ = s.srv.Close() }

type quiet struct{}

func (quiet) Printf(string, ...any) {}
