package intake

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/mailauth"
)

// TestProbe logs in to go-imap's in-memory server: the message count of
// the mailbox, the mailboxes intake would create, and the failures an
// operator meets (a wrong password, a mailbox that does not exist).
func TestProbe(t *testing.T) {
	srv := startMem(t, nil)
	c := client(t, srv.Addr, testUser, testPass)
	for range 3 {
		appendMsg(t, c, "INBOX", []byte("From: a@b.example\r\nSubject: x\r\n\r\nhello\r\n"))
	}
	if err := c.Create("Processed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		pass      string
		mailbox   string
		want      ProbeResult
		wantErr   string
		wantPhase string
	}{
		{name: "ok", pass: testPass, mailbox: "INBOX", want: ProbeResult{Mailbox: "INBOX", Messages: 3, Missing: []string{"Rejected"}}},
		{name: "wrong password", pass: "wrong", mailbox: "INBOX", wantErr: "intake: log in to " + srv.Addr + " as " + testUser, wantPhase: "login"},
		{name: "no such mailbox", pass: testPass, mailbox: "Support", wantErr: `imap examine: `, wantPhase: "examine"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := Probe(ctx, Options{IMAP: Mailbox{
				MailServer: mailauth.MailServer{
					Address: srv.Addr, Security: mailauth.SecurityNone, Username: testUser,
					Password: keydesk.SecretString(tc.pass), Timeout: 5 * time.Second,
				},
				Mailbox: tc.mailbox, ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
			}})
			if tc.wantErr != "" {
				var pe *ProbeError
				if !errors.As(err, &pe) || pe.Phase != tc.wantPhase || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Probe error %v, want %q at %s", err, tc.wantErr, tc.wantPhase)
				}
				if strings.Contains(err.Error(), tc.pass) {
					t.Errorf("the password is in the error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Mailbox != tc.want.Mailbox || res.Messages != tc.want.Messages || strings.Join(res.Missing, ",") != strings.Join(tc.want.Missing, ",") {
				t.Errorf("Probe = %+v, want %+v", *res, tc.want)
			}
		})
	}
	// Nothing was moved: the three messages are still there.
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 3 {
		t.Fatalf("INBOX after probes: %+v, %v", sel, err)
	}
}
