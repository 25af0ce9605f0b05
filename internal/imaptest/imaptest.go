// Package imaptest serves go-imap's in-memory IMAP server (mailsim's) on
// loopback for tests: a real IMAP dialogue, with capabilities and sessions
// a test can shape (drop MOVE, refuse a fetch) to reach the poller's
// fallbacks. The server stops when the test ends.
package imaptest

import (
	"testing"

	"github.com/buildmarkets/keydesk/internal/mailsim"
)

// Options shape the server; see mailsim.IMAPOptions.
type Options = mailsim.IMAPOptions

// Server is a running in-memory IMAP server with one user.
type Server = mailsim.IMAPServer

// Start serves user/pass with an empty INBOX until the test ends (or Close).
func Start(t testing.TB, user, pass string, o Options) *Server {
	t.Helper()
	s, err := mailsim.ServeIMAP(user, pass, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
