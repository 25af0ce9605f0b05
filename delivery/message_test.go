package delivery

import (
	"bytes"
	"errors"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

func fixedComposer(t *testing.T) *Composer {
	t.Helper()
	c, err := NewComposer("Buildmarkets Support <support@buildmarkets.ai>", func() time.Time {
		return time.Date(2026, 11, 27, 10, 30, 0, 0, time.FixedZone("CET", 3600))
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n%s", name, p, got)
	}
}

func TestComposeGolden(t *testing.T) {
	c := fixedComposer(t)
	tests := []struct {
		name string
		o    *keydesk.Outgoing
	}{
		{"text", &keydesk.Outgoing{
			ID: "KR-20261127-7QX4.notice.att-1", Kind: keydesk.KindDeliveryNotice, To: []string{"Chloé Martin <cto@acme.example>"},
			Subject:   "Votre clé API KR-20261127-7QX4 a été livrée — merci de vérifier auprès de votre contact technique",
			InReplyTo: "<CAF=abc123@mail.acme.example>",
			Text:      "Bonjour,\n\nLa clé a été envoyée chiffrée à s***@acme.example.\nA line that is long enough to need a soft line break in quoted-printable encoding, past 76 characters.\n",
		}},
		{"reply-in-thread", &keydesk.Outgoing{
			ID: "KR-20261127-7QX4.status.1", Kind: keydesk.KindStatusReply, To: []string{"cto@acme.example"},
			Subject: "Re: API keys", InReplyTo: "CAF=def456@mail.acme.example",
			References: []string{"<CAF=abc123@mail.acme.example>", "<KR-20261127-7QX4.ack@buildmarkets.ai>", "<CAF=def456@mail.acme.example>"},
			Text:       "Hello,\n\nRequest KR-20261127-7QX4 is waiting for review.\n",
		}},
		{"key-delivery", &keydesk.Outgoing{
			ID: "KR-20261127-7QX4.key.att-1", Kind: keydesk.KindKeyDelivery, To: []string{"sec@acme.example"},
			Subject: "Your Buildmarkets API key", Entity: fakeEntity("hQEMA-fake-ciphertext"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Compose(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(bytes.ReplaceAll(got, []byte("\r\n"), nil), []byte("\n")) {
				t.Error("a bare LF in the message")
			}
			for _, line := range strings.Split(string(got), "\r\n") {
				if len(line) > 998 {
					t.Errorf("line over 998 bytes: %.60s…", line)
				}
			}
			golden(t, tt.name, got)
		})
	}
}

func TestComposeRefuses(t *testing.T) {
	c := fixedComposer(t)
	base := func() *keydesk.Outgoing {
		return &keydesk.Outgoing{ID: "m.1", Kind: keydesk.KindAlert, To: []string{"a@b.example"}, Subject: "s", Text: "t"}
	}
	tests := []struct {
		name   string
		mutate func(o *keydesk.Outgoing)
		want   string
	}{
		{"no recipient", func(o *keydesk.Outgoing) { o.To = nil }, "0 recipients"},
		{"header injection in subject", func(o *keydesk.Outgoing) { o.Subject = "hi\r\nBcc: x@evil.example" }, "line break"},
		{"header injection in address", func(o *keydesk.Outgoing) { o.To = []string{"a@b.example\r\nBcc: x@evil.example"} }, "not an address"},
		{"entity with a Bcc", func(o *keydesk.Outgoing) { o.Entity = []byte("Content-Type: text/plain\nBcc: x@evil.example\n\nhi\n") }, "only Content-* fields"},
		{"entity without type", func(o *keydesk.Outgoing) { o.Entity = []byte("Content-Transfer-Encoding: 7bit\n\nhi\n") }, "no Content-Type"},
		{"header injection in references", func(o *keydesk.Outgoing) {
			o.InReplyTo, o.References = "<a@b.example>", []string{"<x@y>\r\nBcc: x@evil.example"}
		}, "not one Message-ID"},
		{"too many recipients", func(o *keydesk.Outgoing) { o.To = strings.Split(strings.Repeat("a@b.example,", 21), ",")[:21] }, "21 recipients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.mutate(o)
			_, err := c.Compose(o)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compose = %v, want ErrMalformed with %q", err, tt.want)
			}
		})
	}
}

func TestSafeIDAndMask(t *testing.T) {
	for id, want := range map[string]string{
		"KR-20261127-7QX4.key.att-1": "KR-20261127-7QX4.key.att-1",
		"a b":                        "h-",
		"../etc":                     "h-",
		"x>y@z":                      "h-",
	} {
		if got := safeID(id); !strings.HasPrefix(got, want) {
			t.Errorf("safeID(%q) = %q, want prefix %q", id, got, want)
		}
	}
	for addr, want := range map[string]string{"sec@acme.example": "s***@acme.example", "é@x.example": "é***@x.example", "nope": "***"} {
		if got := MaskAddress(addr); got != want {
			t.Errorf("MaskAddress(%q) = %q, want %q", addr, got, want)
		}
	}
}

// Whatever a producer copies from a partner's email into the subject, the
// recipient or the body, the result is one well-formed message whose
// headers are keydesk's alone.
func FuzzCompose(f *testing.F) {
	f.Add("Re: API key for sandbox", "cto@acme.example", "Hello\n", "<a@b>")
	f.Add("Clé API — production", "Chloé <cto@acme.example>", "line\r\n.\r\nBcc: x@evil.example\n", "")
	f.Add("x\r\nBcc: evil@example.com", "a@b.example", "", "<x>\r\nBcc: y")
	f.Add(strings.Repeat("long subject ", 40), "\"quoted, name\" <a@b.example>", strings.Repeat("é", 500), "no-brackets@id")
	c, err := NewComposer("Buildmarkets Support <support@buildmarkets.ai>", func() time.Time { return time.Unix(0, 0) })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, subject, to, text, irt string) {
		o := &keydesk.Outgoing{ID: "m.1", Kind: keydesk.KindAcknowledgement, To: []string{to}, Subject: subject, Text: text, InReplyTo: irt}
		out, err := c.Compose(o)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		m, err := mail.ReadMessage(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("composed message does not parse: %v\n%q", err, out)
		}
		for k, v := range m.Header {
			if len(v) != 1 {
				t.Fatalf("header %s appears %d times", k, len(v))
			}
			if !allowedOuter[k] {
				t.Fatalf("unexpected header %s in %q", k, out)
			}
		}
		if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\r")) {
			t.Fatalf("bare CR or LF in %q", out)
		}
		got, err := io.ReadAll(quotedprintable.NewReader(m.Body))
		if err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(text) && !strings.Contains(text, "\r") {
			if g := strings.ReplaceAll(string(got), "\r\n", "\n"); strings.TrimRight(g, "\n") != strings.TrimRight(text, "\n") {
				t.Fatalf("body changed: %q → %q", text, got)
			}
		}
	})
}

var allowedOuter = map[string]bool{
	"From": true, "To": true, "Subject": true, "Date": true, "Message-Id": true, "In-Reply-To": true, "References": true,
	"Auto-Submitted": true, "X-Loop": true, "Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
}
