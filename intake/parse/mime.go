package parse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode every charset mail clients use, not only UTF-8 and ASCII
	"github.com/emersion/go-message/mail"

	"github.com/buildmarkets/keydesk"
)

// angleAddrRE is the one address in angle brackets ending a From header.
var angleAddrRE = regexp.MustCompile(`^[^<>]*<([^<>\s]+@[^<>\s]+)>\s*$`)

// msg is what the MIME walk found in one email.
type msg struct {
	header    message.Header
	headerOK  bool
	from      []*mail.Address
	fromErr   error
	subject   string
	messageID string
	date      time.Time
	dateErr   error
	text      string // the readable body: text parts, HTML rendered, attached forwards inline
	tooLarge  bool
	malformed []string // what could not be read, in words
	bounds    []limit  // which limits were hit
	warnings  []string
	encrypted bool
	// hiddenDoubt: an HTML part hides text in a way keydesk cannot be sure
	// of (a style rule it cannot place, aria-hidden, off-screen boxes).
	hiddenDoubt bool
	report      string // report-type of a multipart/report (delivery-status: a bounce)
	// attachments are the files the email carries, in order, at most
	// maxAttachments of them: what a copy cut short leaves out.
	attachments []attachment
	size        int64 // raw bytes read, the whole email unless too large
}

// attachment is one file of an email: its name as the sender gave it, its
// decoded size, and where in the raw email it ends.
type attachment struct {
	name string
	size int64
	end  int64
}

// maxAttachments bounds the attachments named for one email.
const maxAttachments = 20

func (m *msg) warn(format string, args ...any) {
	if len(m.warnings) < 20 {
		m.warnings = append(m.warnings, fmt.Sprintf(format, args...))
	}
}

// readMessage reads the header and walks the body. It never fails: what it
// cannot read becomes malformed, bounds or warnings on the result.
// pos tells how many raw bytes have been read so far (nil: unknown).
func readMessage(r io.Reader, lim Limits, pos func() int64) *msg {
	m := &msg{}
	br := bufio.NewReader(r)
	// An mbox "From " line (a saved .eml often has one) is not a header.
	if b, err := br.Peek(5); err == nil && string(b) == "From " {
		if _, err := br.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			m.malformed = append(m.malformed, "the message is empty")
			return m
		}
	}
	hb := &headerBudget{lim: lim}
	e, err := message.ReadWithOptions(hb.guardEntity(br, "the header", 0), &message.ReadOptions{MaxHeaderBytes: lim.HeaderBytes})
	switch {
	case errors.Is(err, errTooLarge):
		m.tooLarge = true
		return m
	case err != nil && e == nil && hb.hit != "":
		m.bound(limitHeader, "%s", hb.hit)
		return m
	case err != nil && e == nil:
		if strings.Contains(err.Error(), "header exceeds maximum size") {
			m.bound(limitHeader, "the header is larger than %d bytes", lim.HeaderBytes)
		} else {
			m.malformed = append(m.malformed, "the header cannot be read: "+keydesk.SafeLine(err.Error(), 200))
		}
		return m
	case err != nil:
		m.warn("%s", keydesk.SafeLine(err.Error(), 200))
	}
	m.header = e.Header
	m.headerOK = true
	h := mail.Header{Header: e.Header}
	m.from, m.fromErr = h.AddressList("From")
	if m.fromErr != nil {
		// Some systems write "jane@acme.example <jane@acme.example>"
		// unquoted; the address in angle brackets is the one mail
		// servers, and DMARC, go by.
		if sm := angleAddrRE.FindStringSubmatch(e.Header.Get("From")); sm != nil {
			if a, err := mail.ParseAddress(sm[1]); err == nil {
				m.from, m.fromErr = []*mail.Address{a}, nil
				m.warn("the From header is malformed: its address %s was used", keydesk.SafeLine(a.Address, 200))
			}
		}
	}
	for _, a := range m.from {
		// An address with a control or bidi character in it would show
		// as another one: it names no sender.
		if !keydesk.Inert(a.Address) {
			m.warn("the From address %s holds control or formatting characters: it names no sender", keydesk.SafeLine(a.Address, 200))
			m.from, m.fromErr = nil, errors.New("parse: unsafe characters in the From address")
			break
		}
	}
	if s, err := h.Subject(); err == nil || s != "" {
		m.subject = keydesk.SafeLine(s, 300)
	}
	if id, err := h.MessageID(); err == nil && id != "" {
		m.messageID = keydesk.SafeLine(id, 250)
	} else if raw := strings.TrimSpace(e.Header.Get("Message-Id")); raw != "" {
		m.messageID = keydesk.SafeLine(strings.Trim(raw, "<>"), 250)
	}
	if e.Header.Get("Date") != "" {
		m.date, m.dateErr = Date(e.Header.Get("Date"))
	}
	if ct, params, err := e.Header.ContentType(); err == nil && ct == "multipart/report" {
		m.report = strings.ToLower(params["report-type"])
	}
	w := &walker{m: m, lim: lim, textLeft: lim.TextBytes, headers: hb, pos: pos}
	m.text = w.walk(e, 0).text
	if hb.hit != "" {
		// A part's header past its bound stops the walk wherever the read
		// was: the part itself, or one before it reading ahead.
		m.bound(limitHeader, "%s", hb.hit)
	}
	return m
}

type walker struct {
	m        *msg
	lim      Limits
	parts    int
	textLeft int
	headers  *headerBudget // shared by every header block of the message
	pos      func() int64
}

type walked struct {
	text string
	html bool
}

// walk renders entity e as text, depth levels down. It always consumes
// e.Body, so that the multipart reader above can go on.
func (w *walker) walk(e *message.Entity, depth int) walked {
	defer w.drain(e.Body)
	ct, params, err := e.Header.ContentType()
	if err != nil || ct == "" {
		// RFC 2045: without a usable Content-Type, text/plain.
		ct, params = "text/plain", map[string]string{}
	}
	disp, dparams, _ := e.Header.ContentDisposition()
	if w.m.tooLarge || w.headers.hit != "" {
		return walked{}
	}
	switch {
	case ct == "application/pkcs7-mime" || ct == "application/x-pkcs7-mime" || ct == "application/pgp-encrypted":
		w.m.encrypted = true
	case strings.HasPrefix(ct, "multipart/"):
		return w.multipart(e, ct, params["boundary"], depth)
	case ct == "message/rfc822" || ct == "message/global":
		return w.attachedMessage(e, depth)
	case disp == "attachment" || (dparams["filename"] != "" && disp != "inline"):
		w.attachment(e, dparams["filename"], params["name"])
		return walked{} // a file, not the email's text
	case ct == "text/plain":
		return walked{text: w.plain(e.Body, params)}
	case ct == "text/html":
		return walked{text: w.html(e.Body), html: true}
	}
	return walked{}
}

// attachment reads past a file, as a stream, and notes its name, size and
// where it ends, so that a stored copy cut short can say what it lacks.
func (w *walker) attachment(e *message.Entity, filename, name string) {
	n, err := io.Copy(io.Discard, e.Body)
	w.drained(err)
	if len(w.m.attachments) >= maxAttachments || w.pos == nil {
		return
	}
	if filename == "" {
		filename = name
	}
	w.m.attachments = append(w.m.attachments, attachment{name: keydesk.SafeLine(filename, 100), size: n, end: w.pos()})
}

func (w *walker) drain(r io.Reader) {
	_, err := io.Copy(io.Discard, r)
	w.drained(err)
}

// drained notes why reading a part to its end failed, if it did.
func (w *walker) drained(err error) {
	if err != nil {
		if errors.Is(err, errTooLarge) {
			w.m.tooLarge = true
			return
		}
		if w.headers.hit != "" {
			return // named once the walk is over
		}
		w.m.warn("a MIME part could not be decoded (%s): it was skipped", keydesk.SafeLine(err.Error(), 120))
	}
}

func (w *walker) multipart(e *message.Entity, ct, boundary string, depth int) walked {
	if ct == "multipart/encrypted" {
		w.m.encrypted = true
		return walked{}
	}
	if depth+1 > w.lim.Depth {
		w.m.bound(limitDepth, "MIME parts are nested deeper than %d levels", w.lim.Depth)
		return walked{}
	}
	// The parts' headers are read by go-message without a bound: the
	// guard counts them on the way in.
	e.Body = w.headers.guardParts(e.Body, boundary)
	mr := e.MultipartReader()
	if mr == nil {
		return walked{}
	}
	defer mr.Close()
	var kids []walked
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && p == nil {
			if errors.Is(err, errTooLarge) {
				w.m.tooLarge = true
			} else if w.headers.hit != "" {
				// named once the walk is over
			} else if len(kids) == 0 {
				w.m.malformed = append(w.m.malformed, "a multipart body has no readable part ("+keydesk.SafeLine(err.Error(), 120)+")")
			} else {
				w.m.warn("the MIME structure ends early (%s): the parts before were read", keydesk.SafeLine(err.Error(), 120))
			}
			break
		}
		if err != nil {
			w.m.warn("%s", keydesk.SafeLine(err.Error(), 160))
		}
		w.parts++
		if w.parts > w.lim.Parts {
			w.m.bound(limitParts, "the message has more than %d MIME parts", w.lim.Parts)
			w.drain(p.Body)
			break
		}
		kids = append(kids, w.walk(p, depth+1))
	}
	if ct == "multipart/alternative" {
		// The sender's client wrote the same text twice: take the plain
		// one unless it is empty, as some clients leave it.
		var pick walked
		for _, k := range kids {
			if strings.TrimSpace(k.text) == "" {
				continue
			}
			if pick.text == "" || (pick.html && !k.html) {
				pick = k
			}
		}
		return pick
	}
	var b strings.Builder
	for _, k := range kids {
		if strings.TrimSpace(k.text) == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(k.text)
	}
	return walked{text: b.String()}
}

// attachedMessage renders a forwarded message/rfc822 part as an inline
// forward, so that one reader of forwards handles both shapes.
func (w *walker) attachedMessage(e *message.Entity, depth int) walked {
	if depth+1 > w.lim.Depth {
		w.m.bound(limitDepth, "MIME parts are nested deeper than %d levels", w.lim.Depth)
		return walked{}
	}
	inner, err := message.ReadWithOptions(w.headers.guardEntity(e.Body, "an attached message's header", w.lim.PartHeaderBytes),
		&message.ReadOptions{MaxHeaderBytes: w.lim.HeaderBytes})
	if err != nil && inner == nil {
		if errors.Is(err, errTooLarge) {
			w.m.tooLarge = true
		} else if w.headers.hit != "" {
			// named once the walk is over
		} else {
			w.m.warn("an attached message cannot be read (%s)", keydesk.SafeLine(err.Error(), 120))
		}
		return walked{}
	}
	defer w.drain(inner.Body)
	h := mail.Header{Header: inner.Header}
	var b strings.Builder
	b.WriteString("---------- Forwarded message ---------\n")
	// One address is written as parsed; anything else as it came, so that
	// the forward reader sees every address a From line names.
	if from, err := h.AddressList("From"); err == nil && len(from) == 1 {
		b.WriteString("From: " + keydesk.SafeLine(from[0].String(), 300) + "\n")
	} else if raw := inner.Header.Get("From"); raw != "" {
		b.WriteString("From: " + keydesk.SafeLine(raw, 300) + "\n")
	}
	if d := inner.Header.Get("Date"); d != "" {
		b.WriteString("Date: " + keydesk.SafeLine(d, 100) + "\n")
	}
	if s, _ := h.Subject(); s != "" {
		b.WriteString("Subject: " + keydesk.SafeLine(s, 300) + "\n")
	}
	b.WriteString("\n")
	b.WriteString(w.walk(inner, depth+1).text)
	return walked{text: b.String()}
}

// take reads at most the text budget from r and says whether it stopped short.
func (w *walker) take(r io.Reader) (string, bool) {
	if w.textLeft <= 0 {
		w.m.bound(limitText, "only the first %d bytes of text were read", w.lim.TextBytes)
		return "", true
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(w.textLeft)+1))
	if err != nil {
		if errors.Is(err, errTooLarge) {
			w.m.tooLarge = true
		} else if w.headers.hit == "" {
			w.m.warn("a text part could not be decoded completely (%s)", keydesk.SafeLine(err.Error(), 120))
		}
	}
	short := false
	if len(b) > w.textLeft {
		b = b[:w.textLeft]
		short = true
		w.m.bound(limitText, "only the first %d bytes of text were read", w.lim.TextBytes)
	}
	w.textLeft -= len(b)
	return validUTF8(b), short
}

func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func (w *walker) plain(r io.Reader, params map[string]string) string {
	s, _ := w.take(r)
	if strings.EqualFold(params["format"], "flowed") {
		s = unflow(s, strings.EqualFold(params["delsp"], "yes"))
	}
	return s
}

// unflow joins the soft line breaks of format=flowed (RFC 3676): a line
// that ends in a space continues on the next one, so a long Scopes line
// wrapped by the client reads as one line again.
func unflow(s string, delsp bool) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	var b strings.Builder
	for i, l := range lines {
		if l != "-- " && strings.HasPrefix(l, " ") {
			l = l[1:] // space-stuffing
		}
		soft := strings.HasSuffix(l, " ") && l != "-- " && i < len(lines)-1
		if soft && delsp {
			l = l[:len(l)-1]
		}
		b.WriteString(l)
		if !soft && i < len(lines)-1 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
