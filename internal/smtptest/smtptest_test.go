package smtptest

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// send sends one message on a plain connection of its own.
func send(addr, from string, to []string, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.SendMail(from, to, strings.NewReader(body))
}

// The server keeps what it accepts, refuses what SetReply and Rcpt say,
// and counts the DATA commands it answered.
func TestServerKeepsAndRefuses(t *testing.T) {
	s := Start(t, Options{Rcpt: func(to string) error {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	s.SetReply(func(n int, _ []string) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	})
	var se *smtp.SMTPError
	if err := send(s.Addr, "a@example.com", []string{"b@example.com"}, "Subject: 1\r\n\r\none\r\n"); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("first DATA: %v, want 451", err)
	}
	if err := send(s.Addr, "a@example.com", []string{"b@example.com"}, "Subject: 2\r\n\r\ntwo\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := send(s.Addr, "a@example.com", []string{"gone@example.com"}, "Subject: 3\r\n\r\nthree\r\n"); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("refused recipient: %v, want 550", err)
	}
	got := s.To("b@example.com")
	if s.Count() != 1 || len(got) != 1 || got[0].From != "a@example.com" || !strings.Contains(string(got[0].Data), "two") {
		t.Fatalf("kept %+v", s.Messages())
	}
}

func TestServerLogins(t *testing.T) {
	s := Start(t, Options{LoginRequired: true, Login: func(mech, user, secret string) bool {
		return mech == sasl.Plain && user == "u" && secret == "pw"
	}})
	var se *smtp.SMTPError
	if err := send(s.Addr, "a@example.com", []string{"b@example.com"}, "x\r\n"); !errors.As(err, &se) || se.Code != smtp.ErrAuthRequired.Code {
		t.Fatalf("without a login: %v, want %v", err, smtp.ErrAuthRequired)
	}
	for _, pw := range []string{"nope", "pw"} {
		c, err := smtp.Dial(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Auth(sasl.NewPlainClient("", "u", pw))
		_ = c.Close()
	}
	if good, refused := s.Logins(); len(good) != 1 || good[0] != sasl.Plain || refused != 1 {
		t.Fatalf("logins %v, %d refused; want [PLAIN], 1", good, refused)
	}
}
