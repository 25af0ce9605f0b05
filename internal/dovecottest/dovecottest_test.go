package dovecottest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk/internal/dovecottest"
)

const msg = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <1@example.com>\r\n\r\nhello\r\n"

func login(t *testing.T, s *dovecottest.Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(s.User, s.Password).Wait(); err != nil {
		t.Fatalf("login: %v\n%s", err, s.Log())
	}
	return c
}

func selectInbox(t *testing.T, c *imapclient.Client) *imap.SelectData {
	t.Helper()
	d, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestServer checks what the intake tests rely on: delivery into the
// Maildir shows through IMAP, a restart keeps the mail, and a UIDVALIDITY
// change is seen by a client.
func TestServer(t *testing.T) {
	s := dovecottest.Start(t)
	if err := s.Deliver("INBOX", []byte(msg)); err != nil {
		t.Fatal(err)
	}
	c := login(t, s)
	d := selectInbox(t, c)
	if d.NumMessages != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", d.NumMessages)
	}
	bs := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{bs}}).Collect()
	if err != nil || len(bufs) != 1 {
		t.Fatalf("fetch: %v (%d)", err, len(bufs))
	}
	if got := string(bufs[0].FindBodySection(bs)); !strings.Contains(got, "hello") {
		t.Fatalf("body %q", got)
	}
	old := d.UIDValidity
	c.Close()

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c = login(t, s)
	if d := selectInbox(t, c); d.NumMessages != 1 || d.UIDValidity != old {
		t.Fatalf("after restart: %d messages, uidvalidity %d (was %d)", d.NumMessages, d.UIDValidity, old)
	}
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.ChangeUIDValidity(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	c = login(t, s)
	if d := selectInbox(t, c); d.NumMessages != 1 || d.UIDValidity == old {
		t.Fatalf("after change: %d messages, uidvalidity %d (was %d)\n%s", d.NumMessages, d.UIDValidity, old, s.Log())
	}
}
