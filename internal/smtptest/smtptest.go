// Package smtptest runs mailsim's go-smtp server on loopback for tests
// and keeps what it accepts: the message that arrives is what a test
// checks. Options give it what the tests of a sending part need: STARTTLS
// or implicit TLS, SASL logins (PLAIN, LOGIN, OAUTHBEARER and XOAUTH2 as
// Gmail runs it), refused recipients, and a chosen answer to each DATA.
// The server stops when the test ends.
package smtptest

import (
	"testing"

	"github.com/buildmarkets/keydesk/internal/mailsim"
)

// XOAuth2 is the name of Google's XOAUTH2 mechanism.
const XOAuth2 = mailsim.XOAuth2

// Message is one message as the server got it.
type Message = mailsim.Message

// Options say how the server behaves; see mailsim.SMTPOptions.
type Options = mailsim.SMTPOptions

// Server is a running server; Start returns it.
type Server = mailsim.SMTPServer

// Start runs a server on 127.0.0.1 until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := mailsim.ServeSMTP(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
