package delivery

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/emersion/go-message/textproto"
)

// Limits on what an outbox message may hold: producers are ours, but a
// bound keeps one bad message from costing the SMTP server or us much.
const (
	maxRecipients  = 20
	maxSubjectLen  = 998
	maxEntityBytes = 20 << 20
)

// Composer writes the outer headers of every outgoing email.
type Composer struct {
	// From is the sender (smtp.from), e.g. "Buildmarkets Support <support@buildmarkets.ai>".
	From *mail.Address
	// Now is the clock for the Date header.
	Now func() time.Time
}

// NewComposer parses from (smtp.from).
func NewComposer(from string, now func() time.Time) (*Composer, error) {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("delivery: smtp.from %q is not an address: %w", from, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Composer{From: a, Now: now}, nil
}

// MessageID is the Message-ID header of o: derived from its outbox ID, so
// a message sent twice after a crash carries the same one and a receiver
// can tell it is the same message.
func (c *Composer) MessageID(o *keydesk.Outgoing) string {
	return "<" + safeID(o.ID) + "@" + keydesk.AddressDomain(c.From.Address) + ">"
}

var safeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._=-]{0,190}[A-Za-z0-9]$`)

// safeID returns id when it is a plain token (a dot-atom, a NATS KV key)
// and a digest of it otherwise.
func safeID(id string) string {
	if safeIDRE.MatchString(id) && !strings.Contains(id, "..") {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "h-" + hex.EncodeToString(sum[:16])
}

// maxReferences bounds the References header: the thread's first
// message and the latest ones are what mail clients thread on.
const maxReferences = 20

// angle is a Message-ID in angle brackets, "" for none.
func angle(id string) string {
	id = strings.TrimSpace(id)
	if id == "" {
		return ""
	}
	if !strings.HasPrefix(id, "<") {
		id = "<" + id + ">"
	}
	return id
}

// ErrMalformed marks an outbox message that can never be sent as it is.
var ErrMalformed = errors.New("delivery: malformed outgoing message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Recipients checks o.To and returns the bare addresses for RCPT TO.
func Recipients(o *keydesk.Outgoing) ([]string, error) {
	if len(o.To) == 0 || len(o.To) > maxRecipients {
		return nil, malformed("%s has %d recipients (1 to %d allowed)", o.ID, len(o.To), maxRecipients)
	}
	out := make([]string, 0, len(o.To))
	for _, t := range o.To {
		a, err := mail.ParseAddress(t)
		if err != nil || strings.ContainsAny(a.Address, "\r\n<> ") {
			return nil, malformed("%s: recipient %q is not an address", o.ID, t)
		}
		out = append(out, a.Address)
	}
	return out, nil
}

// Compose renders o as a complete email with CRLF line ends: keydesk's
// outer headers, then either o.Text as quoted-printable UTF-8 text, or
// o.Entity's own Content-* headers and body (PGP/MIME ciphertext).
func (c *Composer) Compose(o *keydesk.Outgoing) ([]byte, error) {
	if _, err := Recipients(o); err != nil {
		return nil, err
	}
	if len(o.Subject) > maxSubjectLen || strings.ContainsAny(o.Subject, "\r\n") {
		return nil, malformed("%s: the subject is over %d bytes or has a line break", o.ID, maxSubjectLen)
	}
	if strings.ContainsAny(o.InReplyTo, "\r\n") || len(o.InReplyTo) > 998 {
		return nil, malformed("%s: in_reply_to is not one Message-ID", o.ID)
	}
	for _, r := range o.References {
		if strings.ContainsAny(r, "\r\n \t") || len(r) > 250 {
			return nil, malformed("%s: references holds %q, not one Message-ID", o.ID, r)
		}
	}
	var b bytes.Buffer
	h := func(k, v string) { writeField(&b, k, v) }
	h("From", c.From.String())
	to := make([]string, len(o.To))
	for i, t := range o.To {
		a, _ := mail.ParseAddress(t) // checked by Recipients
		to[i] = a.String()
	}
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", o.Subject))
	h("Date", c.Now().UTC().Format(time.RFC1123Z))
	h("Message-ID", c.MessageID(o))
	if irt := angle(o.InReplyTo); irt != "" {
		h("In-Reply-To", irt)
		refs := make([]string, 0, len(o.References)+1)
		for _, r := range o.References {
			if r = angle(r); r != "" && r != irt && len(refs) < maxReferences {
				refs = append(refs, r)
			}
		}
		h("References", strings.Join(append(refs, irt), " "))
	}
	// Auto-Submitted keeps vacation responders quiet (RFC 3834); X-Loop
	// lets intake drop any of our own mail that comes back.
	h("Auto-Submitted", "auto-replied")
	h("X-Loop", "keydesk")
	h("MIME-Version", "1.0")
	if len(o.Entity) > 0 {
		if err := writeEntity(&b, o); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(o.Text)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

// writeEntity copies the entity's header, which may hold Content-* fields
// only (anything else could add recipients or spoof our own headers), and
// its body with CRLF line ends.
func writeEntity(b *bytes.Buffer, o *keydesk.Outgoing) error {
	if len(o.Entity) > maxEntityBytes {
		return malformed("%s: the entity is over %d bytes", o.ID, maxEntityBytes)
	}
	r := bytes.NewReader(o.Entity)
	br := bufio.NewReader(r)
	hdr, err := textproto.ReadHeader(br)
	if err != nil {
		return malformed("%s: the entity's header cannot be read: %v", o.ID, err)
	}
	if !hdr.Has("Content-Type") {
		return malformed("%s: the entity has no Content-Type", o.ID)
	}
	// Fields() runs in the order they were read.
	fields := hdr.Fields()
	for fields.Next() {
		k := fields.Key()
		if !strings.HasPrefix(strings.ToLower(k), "content-") {
			return malformed("%s: the entity's header has %s: only Content-* fields are allowed", o.ID, k)
		}
		raw, err := fields.Raw()
		if err != nil {
			return malformed("%s: entity header %s: %v", o.ID, k, err)
		}
		b.Write(crlf(raw))
	}
	b.WriteString("\r\n")
	rest := o.Entity[len(o.Entity)-r.Len()-br.Buffered():]
	b.Write(crlf(rest))
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return nil
}

// crlf turns lone LF into CRLF.
func crlf(p []byte) []byte {
	if !bytes.Contains(p, []byte("\n")) {
		return p
	}
	out := make([]byte, 0, len(p)+bytes.Count(p, []byte("\n")))
	for i, c := range p {
		if c == '\n' && (i == 0 || p[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// writeField writes "Key: value", folded at spaces before 78 columns
// where it can be (RFC 5322 §2.2.3).
func writeField(b *bytes.Buffer, k, v string) {
	line := k + ":"
	col := len(line)
	b.WriteString(line)
	for i, w := range strings.Split(v, " ") {
		if i > 0 && col+1+len(w) > 78 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		col += 1 + len(w)
	}
	b.WriteString("\r\n")
}
