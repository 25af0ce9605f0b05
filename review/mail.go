package review

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/textproto"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
)

// Bounds on what the request page reads of a source email: a hostile
// email cannot make the page slow or huge.
const (
	maxMailRead   = 512 << 10 // raw source read from the store
	maxTextShown  = 64 << 10  // the decoded text part
	maxHeaders    = 200
	maxPartsWalks = 50
)

// mailView is a source email as the request page shows it: always as
// text, never rendered as HTML.
type mailView struct {
	Headers   []headerView
	AuthRes   []string
	Text      string
	TextKind  string // "text/plain", or "text/html (shown as source)"
	Raw       string
	Truncated bool
	Problem   string
}

type headerView struct{ Name, Value string }

// shownHeaders are the headers listed above the text, in this order.
var shownHeaders = []string{"From", "Sender", "Reply-To", "To", "Cc", "Date", "Subject", "Message-Id"}

func (s *Server) loadMail(ctx context.Context, r *keydesk.Request) *mailView {
	if r.MailRef == "" {
		return &mailView{Problem: "The source email was not stored with this request."}
	}
	rc, err := s.o.Queue.OpenMail(ctx, r.MailRef)
	if err != nil {
		s.log.Warn("review: open mail", "request", r.ID, "err", err)
		return &mailView{Problem: "The source email could not be read from the store."}
	}
	defer func() { _ = rc.Close() }()
	raw, err := io.ReadAll(io.LimitReader(rc, maxMailRead+1))
	if err != nil {
		return &mailView{Problem: "The source email could not be read from the store."}
	}
	return parseMailView(raw)
}

// parseMailView extracts headers, Authentication-Results and the first
// text part. Whatever fails to parse is still shown as raw source.
func parseMailView(raw []byte) *mailView {
	v := &mailView{}
	if len(raw) > maxMailRead {
		raw = raw[:maxMailRead]
		v.Truncated = true
	}
	v.Raw = toText(raw)

	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	h, err := tr.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		v.Problem = "The headers could not be parsed; the raw source is below."
		return v
	}
	dec := &mime.WordDecoder{CharsetReader: charset.Reader}
	for _, name := range shownHeaders {
		for _, val := range h.Values(name) {
			if d, err := dec.DecodeHeader(val); err == nil {
				val = d
			}
			v.Headers = append(v.Headers, headerView{Name: name, Value: toText([]byte(val))})
		}
	}
	for i, val := range h.Values("Authentication-Results") {
		if i >= maxHeaders {
			break
		}
		v.AuthRes = append(v.AuthRes, toText([]byte(strings.Join(strings.Fields(val), " "))))
	}

	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil && mr == nil {
		v.Problem = "The message structure could not be parsed; the raw source is below."
		return v
	}
	var htmlText string
	for i := 0; i < maxPartsWalks; i++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if v.Text == "" && htmlText == "" {
				v.Problem = "Part of the message could not be decoded; the raw source is below."
			}
			break
		}
		ih, ok := p.Header.(*mail.InlineHeader)
		if !ok {
			continue
		}
		ct, _, _ := ih.ContentType()
		switch {
		case ct == "text/plain" && v.Text == "":
			b, _ := io.ReadAll(io.LimitReader(p.Body, maxTextShown))
			v.Text, v.TextKind = toText(b), "text/plain"
		case ct == "text/html" && htmlText == "":
			b, _ := io.ReadAll(io.LimitReader(p.Body, maxTextShown))
			htmlText = toText(b)
		}
	}
	if v.Text == "" && htmlText != "" {
		v.Text, v.TextKind = htmlText, "text/html (shown as source, never rendered)"
	}
	return v
}

// toText makes bytes from an email safe to show as text (keydesk.SafeText):
// a terminal escape or a bidi override in an email must not reach the page
// as is.
func toText(b []byte) string {
	return keydesk.SafeText(string(b))
}
