package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
)

// Mechanism names as MailServer.Auth spells them.
const (
	AuthPlain       = "plain"
	AuthLogin       = "login"
	AuthOAuthBearer = "oauthbearer"
	AuthXOAuth2     = "xoauth2"
	AuthNone        = "none"
)

// SASLClient returns the SASL client for ms.Auth, or nil for auth none.
// For oauthbearer and xoauth2 it takes a token from tokens now; after the
// server refuses it, call tokens.Invalidate and ask again for a fresh one.
func SASLClient(ctx context.Context, ms MailServer, tokens TokenSource) (sasl.Client, error) {
	switch strings.ToLower(ms.Auth) {
	case "", AuthPlain:
		return sasl.NewPlainClient("", ms.Username, ms.Password.Reveal()), nil
	case AuthLogin:
		return sasl.NewLoginClient(ms.Username, ms.Password.Reveal()), nil
	case AuthNone:
		return nil, nil
	case AuthOAuthBearer, AuthXOAuth2:
		if tokens == nil {
			return nil, fmt.Errorf("mailauth: auth %s needs oauth2_token_file or oauth2_token_command", ms.Auth)
		}
		tok, err := tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(ms.Auth, AuthXOAuth2) {
			return NewXOAuth2Client(ms.Username, tok.Reveal()), nil
		}
		host, portStr, _ := net.SplitHostPort(ms.Address)
		port, _ := strconv.Atoi(portStr)
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: ms.Username, Token: tok.Reveal(), Host: host, Port: port}), nil
	default:
		return nil, fmt.Errorf("mailauth: auth %q is not one of plain, login, oauthbearer, xoauth2, none", ms.Auth)
	}
}

// XOAuth2 is the mechanism name of Google's and Microsoft's XOAUTH2.
const XOAuth2 = "XOAUTH2"

type xoauth2Client struct {
	user, token string
}

// NewXOAuth2Client returns a client of the XOAUTH2 mechanism (no RFC; as
// Google and Microsoft document it): the initial response is
// "user=" user ^A "auth=Bearer " token ^A ^A. A refused token brings a
// base64 JSON challenge, to which the client answers with an empty line so
// the server ends the exchange with its failure reply.
func NewXOAuth2Client(user, token string) sasl.Client {
	return &xoauth2Client{user: user, token: token}
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return XOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	// The empty response makes the server send its final (failure) reply,
	// which the protocol client reports.
	return []byte{}, nil
}

// Refused reports whether err is a SASL client's report that the server
// refused a token (OAUTHBEARER's error challenge): the caller should
// Invalidate the token source and try once more. XOAUTH2 ends in the
// protocol's own failure reply (SMTP 535, IMAP NO), which its client
// recognises.
func Refused(err error) bool {
	var ob *sasl.OAuthBearerError
	return errors.As(err, &ob)
}
