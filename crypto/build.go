package crypto

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/unicode/norm"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/templates"
)

// BuildOptions tune BuildKeyDelivery.
type BuildOptions struct {
	// Templates renders the inner text body (mail/key-delivery.tmpl);
	// nil: the embedded templates.
	Templates *templates.Set
	// Now is when the contact key is checked (zero: time.Now()).
	Now time.Time
	// MinRSABits is passed to the key check (zero: DefaultMinRSABits).
	MinRSABits int
	// Boundary and InnerBoundary fix the MIME boundaries, for golden tests;
	// empty: random.
	Boundary, InnerBoundary string
}

// TemplateName is the mail template of the inner text body.
const TemplateName = "key-delivery"

// MaxSecretBytes bounds the API secret: it is a token, not a document.
const MaxSecretBytes = 4096

// KeyFile is the JSON attachment: the pair, ready for import.
type KeyFile struct {
	KeyID       string   `json:"key_id"`
	Label       string   `json:"label"`
	Environment string   `json:"environment"`
	Scopes      []string `json:"scopes"`
	APIKey      string   `json:"api_key"`
	APISecret   string   `json:"api_secret"`
	CreatedAt   string   `json:"created_at"`
	RequestID   string   `json:"request_id"`
	Partner     string   `json:"partner"`
	// ReplacesKeyID is the key a rotation's new key replaces; absent otherwise.
	ReplacesKeyID string `json:"replaces_key_id,omitempty"`
}

// scopeLine is a scope and what it grants, for the template.
type scopeLine struct{ Name, Grants string }

// deliveryData is what the key-delivery template sees. APISecret is a
// random placeholder, never the secret.
type deliveryData struct {
	RequestID, PartnerName, Environment, Label, KeyID, APIKey, APISecret string
	Scopes                                                               []scopeLine
	CreatedAt                                                            time.Time
	ContactEmail, ContactFingerprint, SignerFingerprint, AttachmentName  string
	// ReplacesKeyID and OldKeyStops: the old key of a rotation and when
	// it stops working at the latest; empty and zero for a new key.
	ReplacesKeyID string
	OldKeyStops   time.Time
}

// BuildKeyDelivery encrypts d to p's pinned technical-contact key, signed by
// s, and returns a complete PGP/MIME entity (RFC 3156: its Content-Type
// header, a blank line, the multipart/encrypted body) for
// keydesk.Outgoing.Entity. Inside the encryption: a multipart/mixed with the
// real Subject as a protected header, a text/plain body from the
// key-delivery template and the pair as a JSON attachment. The contact key
// is checked again first; a refusal is a *KeyProblem wrapped with the
// partner's name. The plaintext buffers are zeroed before it returns.
func BuildKeyDelivery(d keydesk.KeyDelivery, p *keydesk.Partner, s *Signer, opt BuildOptions) ([]byte, error) {
	if p == nil || s == nil || s.ring == nil {
		return nil, errors.New("crypto: build key delivery: partner and signer are required")
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	ck, err := Checker{MinRSABits: opt.MinRSABits}.contactKey([]byte(p.TechnicalContact.ArmoredKey), p.TechnicalContact.Fingerprint, now)
	if err != nil {
		return nil, partnerKeyError(p, err)
	}
	secret := d.APISecret.RevealBytes()
	switch {
	case len(secret) == 0:
		return nil, fmt.Errorf("crypto: request %s: the API secret is empty", d.RequestID)
	case len(secret) > MaxSecretBytes:
		return nil, fmt.Errorf("crypto: request %s: the API secret is longer than %d bytes", d.RequestID, MaxSecretBytes)
	case !utf8.Valid(secret):
		return nil, fmt.Errorf("crypto: request %s: the API secret is not valid UTF-8", d.RequestID)
	}
	if strings.ContainsAny(d.Subject, "\r\n") {
		return nil, fmt.Errorf("crypto: request %s: the subject has a line break", d.RequestID)
	}
	ts := opt.Templates
	if ts == nil {
		ts, err = templates.Load("")
		if err != nil {
			return nil, err
		}
	}

	inner := newWipeBuffer(16 << 10)
	defer inner.wipe()
	if err := writeInner(inner, d, p, s, ck, ts, opt.InnerBoundary, secret); err != nil {
		return nil, err
	}

	recipient, err := pgp.NewKeyFromEntity(ck.entity)
	if err != nil {
		return nil, fmt.Errorf("crypto: request %s: %w", d.RequestID, err)
	}
	ring, err := pgp.NewKeyRing(recipient)
	if err != nil {
		return nil, fmt.Errorf("crypto: request %s: %w", d.RequestID, err)
	}
	// A binary literal packet: the MIME entity is sent byte for byte (the
	// string helpers would rewrite its line endings).
	plain := &pgp.PlainMessage{Data: inner.b, TextType: false}
	msg, err := ring.Encrypt(plain, s.ring)
	plain.Data = nil
	if err != nil {
		return nil, fmt.Errorf("crypto: request %s: encrypt: %w", d.RequestID, err)
	}
	armored, err := msg.GetArmoredWithCustomHeaders("", "")
	if err != nil {
		return nil, fmt.Errorf("crypto: request %s: armor: %w", d.RequestID, err)
	}
	return writeOuter(armored, opt.Boundary)
}

// writeInner writes the signed-and-encrypted MIME entity into w. It is
// written by hand rather than with a MIME library so that every byte that
// holds the secret lands in w, which the caller zeroes.
func writeInner(w *wipeBuffer, d keydesk.KeyDelivery, p *keydesk.Partner, s *Signer, ck *contactKey, ts *templates.Set, boundary string, secret []byte) error {
	// The template sees a random placeholder as wide as the secret, so
	// the body is wrapped around the secret as it will be read; the
	// secret itself goes in only as bytes, after.
	placeholder, err := randomToken()
	if err != nil {
		return err
	}
	if cols := secretColumns(secret); cols > len(placeholder) {
		pad, err := randomHex(cols - len(placeholder))
		if err != nil {
			return err
		}
		placeholder += pad
	}
	data := deliveryData{
		RequestID: d.RequestID, PartnerName: p.Name, Environment: string(d.Environment), Label: d.Label,
		KeyID: d.KeyID, APIKey: d.APIKey, APISecret: placeholder, CreatedAt: d.CreatedAt,
		ContactEmail: p.TechnicalContact.Email, ContactFingerprint: FormatFingerprint(fingerprintOf(ck.entity.PrimaryKey)),
		SignerFingerprint: FormatFingerprint(s.fingerprint), AttachmentName: attachmentName(d.Label, d.KeyID),
		ReplacesKeyID: d.ReplacesKeyID, OldKeyStops: d.OldKeyStops,
	}
	if d.PartnerName != "" {
		data.PartnerName = d.PartnerName
	}
	if data.PartnerName == "" {
		data.PartnerName = p.ID
	}
	for _, sc := range d.Scopes {
		data.Scopes = append(data.Scopes, scopeLine{Name: string(sc), Grants: sc.Grants()})
	}
	m, err := ts.RenderPartnerMail(TemplateName, data)
	if err != nil {
		return fmt.Errorf("crypto: request %s: %w", d.RequestID, err)
	}
	subject := d.Subject
	if subject == "" {
		subject = m.Subject
	}
	if strings.Contains(subject, placeholder) {
		return fmt.Errorf("crypto: request %s: the key-delivery subject must not hold the secret", d.RequestID)
	}
	subject = truncateRunes(subject, maxSubjectRunes)
	if boundary == "" {
		if boundary, err = randomToken(); err != nil {
			return err
		}
	}

	w.WriteString("Content-Type: multipart/mixed; boundary=\"" + boundary + "\"; protected-headers=\"v1\"\r\n")
	w.WriteString("Subject: " + mime.QEncoding.Encode("utf-8", subject) + "\r\n")
	w.WriteString("To: " + p.TechnicalContact.Email + "\r\n")
	w.WriteString("MIME-Version: 1.0\r\n\r\n")

	w.WriteString("--" + boundary + "\r\n")
	w.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	w.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
	body := m.Body
	for {
		i := strings.Index(body, placeholder)
		if i < 0 {
			break
		}
		w.writeCRLF(body[:i])
		w.Write(secret)
		body = body[i+len(placeholder):]
	}
	w.writeCRLF(body)

	name := data.AttachmentName
	w.WriteString("\r\n--" + boundary + "\r\n")
	w.WriteString("Content-Type: application/json; charset=utf-8; name=\"" + name + "\"\r\n")
	w.WriteString("Content-Disposition: attachment; filename=\"" + name + "\"\r\n")
	w.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	js := newWipeBuffer(2 << 10)
	defer js.wipe()
	if err := writeKeyFile(js, d, p, secret); err != nil {
		return err
	}
	w.writeBase64(js.b)
	w.WriteString("--" + boundary + "--\r\n")
	return nil
}

// writeKeyFile writes the JSON attachment; the secret goes in through
// jsonString, never through a Go string.
func writeKeyFile(w *wipeBuffer, d keydesk.KeyDelivery, p *keydesk.Partner, secret []byte) error {
	scopes := make([]string, len(d.Scopes))
	for i, s := range d.Scopes {
		scopes[i] = string(s)
	}
	partner := d.PartnerName
	if partner == "" {
		partner = p.Name
	}
	if partner == "" {
		partner = p.ID
	}
	created := ""
	if !d.CreatedAt.IsZero() {
		created = d.CreatedAt.UTC().Format(time.RFC3339)
	}
	field := func(name string, v any, last bool) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		w.WriteString("  \"" + name + "\": ")
		w.Write(b)
		if !last {
			w.WriteString(",")
		}
		w.WriteString("\n")
		return nil
	}
	w.WriteString("{\n")
	for _, f := range []struct {
		name string
		v    any
	}{{"key_id", d.KeyID}, {"label", d.Label}, {"environment", string(d.Environment)}, {"scopes", scopes}, {"api_key", d.APIKey}} {
		if err := field(f.name, f.v, false); err != nil {
			return err
		}
	}
	w.WriteString("  \"api_secret\": ")
	w.jsonString(secret)
	w.WriteString(",\n")
	tail := []struct {
		name string
		v    any
	}{{"created_at", created}, {"request_id", d.RequestID}, {"partner", partner}}
	if d.ReplacesKeyID != "" {
		// A secrets manager that imports the file can retire the old
		// entry by it.
		tail = append(tail, struct {
			name string
			v    any
		}{"replaces_key_id", d.ReplacesKeyID})
	}
	for i, f := range tail {
		if err := field(f.name, f.v, i == len(tail)-1); err != nil {
			return err
		}
	}
	w.WriteString("}\n")
	return nil
}

// writeOuter wraps the armored message in multipart/encrypted (RFC 3156 §4).
// It writes Content-Type alone: the delivery adds MIME-Version with the
// other outer headers.
func writeOuter(armored, boundary string) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(armored) + 1024)
	mw := textproto.NewMultipartWriter(&out)
	if boundary != "" {
		if err := mw.SetBoundary(boundary); err != nil {
			return nil, fmt.Errorf("crypto: pgp/mime boundary: %w", err)
		}
	}
	var h message.Header
	h.SetContentType("multipart/encrypted", map[string]string{"protocol": "application/pgp-encrypted", "boundary": mw.Boundary()})
	if err := textproto.WriteHeader(&out, h.Header); err != nil {
		return nil, err
	}
	var vh message.Header
	vh.SetContentType("application/pgp-encrypted", nil)
	vh.Set("Content-Description", "PGP/MIME version identification")
	pw, err := mw.CreatePart(vh.Header)
	if err != nil {
		return nil, fmt.Errorf("crypto: pgp/mime: %w", err)
	}
	if _, err := io.WriteString(pw, "Version: 1\r\n"); err != nil {
		return nil, err
	}
	var dh message.Header
	dh.SetContentType("application/octet-stream", map[string]string{"name": "encrypted.asc"})
	dh.Set("Content-Description", "OpenPGP encrypted message")
	dh.SetContentDisposition("inline", map[string]string{"filename": "encrypted.asc"})
	if pw, err = mw.CreatePart(dh.Header); err != nil {
		return nil, fmt.Errorf("crypto: pgp/mime: %w", err)
	}
	crlf := strings.ReplaceAll(strings.TrimRight(armored, "\n"), "\n", "\r\n") + "\r\n"
	if _, err := io.WriteString(pw, crlf); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// attachmentName is buildmarkets-key-<label>.json with the label reduced to
// a safe ASCII slug (labels are free Unicode text; file names travel
// through many clients).
func attachmentName(label, keyID string) string {
	slug := func(s string) string {
		var b strings.Builder
		dash := false
		// NFD splits an accented letter into the letter and its mark, so
		// "Équipe" becomes "equipe" rather than "quipe".
		for _, r := range norm.NFD.String(strings.ToLower(s)) {
			switch {
			case unicode.Is(unicode.Mn, r):
			case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_':
				b.WriteRune(r)
				dash = false
			case !dash && b.Len() > 0:
				b.WriteByte('-')
				dash = true
			}
			if b.Len() >= 48 {
				break
			}
		}
		return strings.Trim(b.String(), "-")
	}
	name := slug(label)
	if name == "" {
		name = slug(keyID)
	}
	if name == "" {
		name = "pair"
	}
	return "buildmarkets-key-" + name + ".json"
}

// maxSubjectRunes bounds the protected subject: a subject taken from a
// partner's email may be long, and a header line must stay well under 998
// octets once encoded.
const maxSubjectRunes = 200

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func randomToken() (string, error) { return randomHex(32) }

// randomHex is n random hex digits.
func randomHex(n int) (string, error) {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("crypto: random: %w", err)
	}
	return hex.EncodeToString(b)[:n], nil
}

// secretColumns is how many columns the secret takes in the body,
// counted on its bytes: a string of it would be a copy nobody can wipe.
func secretColumns(secret []byte) int {
	n := 0
	for i := 0; i < len(secret); {
		r, size := utf8.DecodeRune(secret[i:])
		n += templates.RuneColumns(r)
		i += size
	}
	return n
}

// wipeBuffer is a growable buffer that zeroes its old storage when it grows
// and all of it on wipe, so plaintext does not linger in freed memory.
type wipeBuffer struct{ b []byte }

func newWipeBuffer(n int) *wipeBuffer { return &wipeBuffer{b: make([]byte, 0, n)} }

func (w *wipeBuffer) grow(n int) {
	if cap(w.b)-len(w.b) >= n {
		return
	}
	nb := make([]byte, len(w.b), max(2*cap(w.b), len(w.b)+n))
	copy(nb, w.b)
	clear(w.b[:cap(w.b)])
	w.b = nb
}

func (w *wipeBuffer) Write(p []byte) {
	w.grow(len(p))
	w.b = append(w.b, p...)
}

func (w *wipeBuffer) WriteString(s string) {
	w.grow(len(s))
	w.b = append(w.b, s...)
}

// writeCRLF writes s with its LF line endings as CRLF, MIME's canonical form.
func (w *wipeBuffer) writeCRLF(s string) {
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			w.WriteString(s)
			return
		}
		w.WriteString(strings.TrimSuffix(s[:i], "\r"))
		w.WriteString("\r\n")
		s = s[i+1:]
	}
}

// writeBase64 writes p in base64, 76 characters a line.
func (w *wipeBuffer) writeBase64(p []byte) {
	const in = 57 // 76 output characters
	for len(p) > 0 {
		n := min(in, len(p))
		el := base64.StdEncoding.EncodedLen(n)
		w.grow(el + 2)
		start := len(w.b)
		w.b = w.b[:start+el]
		base64.StdEncoding.Encode(w.b[start:], p[:n])
		w.b = append(w.b, '\r', '\n')
		p = p[n:]
	}
}

// jsonString writes p as a JSON string. p is valid UTF-8.
func (w *wipeBuffer) jsonString(p []byte) {
	const hexd = "0123456789abcdef"
	w.grow(len(p) + 2)
	w.b = append(w.b, '"')
	for _, c := range p {
		switch {
		case c == '"' || c == '\\':
			w.grow(2)
			w.b = append(w.b, '\\', c)
		case c < 0x20:
			w.grow(6)
			w.b = append(w.b, '\\', 'u', '0', '0', hexd[c>>4], hexd[c&0xf])
		default:
			w.grow(1)
			w.b = append(w.b, c)
		}
	}
	w.grow(1)
	w.b = append(w.b, '"')
}

func (w *wipeBuffer) wipe() {
	clear(w.b[:cap(w.b)])
	w.b = w.b[:0]
}
