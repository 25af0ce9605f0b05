// Package redact finds the API secrets partners paste into emails and
// takes them out of the raw email before keydesk keeps anything of it.
//
// Partners paste credentials into support email ("we get 401 with this
// pair": an X-API-Key and X-API-Secret line, a .env file attached, a
// forwarded message that holds one). Such a secret is as live as one
// keydesk made, and keydesk is the first system that sees it: Redact
// returns the email with every secret replaced by a marker that keeps
// only a fingerprint and a length class,
//
//	[bm_secret redacted sha256:1a2b3c4d len:32-63]
//
// and what it found: each secret's fingerprint (the first 8 hex digits of
// the SHA-256 of the secret as written), its length class, the API key
// (bm_key_…) or key ID written beside it, and where it was.
//
// What a secret looks like is keydesk.FindSecrets: Buildmarkets secrets
// (bm_secret_…), X-API-Secret header values and api_secret fields. They
// are looked for in every header field (encoded words decoded), every
// text part (quoted-printable and base64 decoded, UTF-16 and UTF-7
// transcoded), HTML as written and as its text reads (tags left out,
// entities decoded), quoted text, attached text files (by type or by
// name: .env, .txt, .json, .yaml, .csv…) and attached messages
// (message/rfc822), recursively.
//
// Invariants:
//   - only the parts that hold a secret are rewritten, each in its own
//     transfer encoding; every other byte of the email is kept as it was;
//   - the output never holds a secret FindSecrets finds in the input's
//     decoded parts, and redacting it again changes nothing;
//   - the work is bounded: MIME depth, parts and the bytes decoded and
//     scanned; what is past a bound is scanned as written (a secret
//     in plain text is still found there) and named in Result.Unscanned;
//   - a secret is held in the byte buffers of the part being read (a
//     header's encoded words aside, which Go decodes into a string), and
//     the buffers decoded from the input are zeroed once the part is done.
package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"path"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/buildmarkets/keydesk"
)

// Limits bound the work on one email. Zero fields take the defaults.
type Limits struct {
	// Depth bounds MIME nesting, attached messages included; default 8.
	Depth int
	// Parts bounds the MIME parts looked into; default 256.
	Parts int
	// ScanBytes bounds the decoded bytes scanned, all parts together;
	// default 32 MiB.
	ScanBytes int
}

func (l Limits) withDefaults() Limits {
	if l.Depth <= 0 {
		l.Depth = 8
	}
	if l.Parts <= 0 {
		l.Parts = 256
	}
	if l.ScanBytes <= 0 {
		l.ScanBytes = 32 << 20
	}
	return l
}

// Finding is one secret found in an email (however many times it occurs).
type Finding struct {
	// Fingerprint is the first 8 hex digits of the SHA-256 of the secret
	// as written (bm_secret_ prefix included): support can compute it
	// from a secret they hold, and match it, without keydesk keeping it.
	Fingerprint string `json:"fingerprint"`
	// Length is the secret's length class: 1-15, 16-31, 32-63, 64-127 or 128+.
	Length string             `json:"length"`
	Kind   keydesk.SecretKind `json:"kind"`
	// APIKey (bm_key_…) and KeyID are what the email names beside the
	// secret: the key it belongs to. Empty when none is near.
	APIKey string `json:"api_key,omitempty"`
	KeyID  string `json:"key_id,omitempty"`
	// Where lists the places it was found (a header field, a part and
	// its type or file name), at most maxWhere of them.
	Where []string `json:"where"`
	// Count is how many times it occurs.
	Count int `json:"count"`
}

// Marker is the text that stands for the secret in the redacted email.
func (f *Finding) Marker() string { return marker(f.Kind, f.Fingerprint, f.Length) }

func marker(kind keydesk.SecretKind, fp, length string) string {
	what := "secret"
	if kind == keydesk.SecretBM {
		what = "bm_secret"
	}
	return "[" + what + " redacted sha256:" + fp + " len:" + length + "]"
}

// Result is what Redact found and did.
type Result struct {
	Findings []*Finding
	// Unscanned names what was past a limit and only scanned as written.
	Unscanned []string
}

const maxWhere = 8

// fingerprint and lengthClass describe a secret without holding it.
func fingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:4])
}

func lengthClass(n int) string {
	switch {
	case n < 16:
		return "1-15"
	case n < 32:
		return "16-31"
	case n < 64:
		return "32-63"
	case n < 128:
		return "64-127"
	}
	return "128+"
}

// Redact returns raw with every secret replaced by its marker, and what
// it found. When nothing is found it returns raw itself. raw is read,
// never changed; the caller bounds its size.
func Redact(raw []byte, lim Limits) ([]byte, *Result) {
	if !mayHold(raw) {
		return raw, &Result{}
	}
	w := &walker{lim: lim.withDefaults(), res: &Result{}, byFP: map[string]*Finding{}}
	w.scanLeft = w.lim.ScanBytes
	out := w.entity(raw, "", 0)
	if out == nil {
		out = raw
	}
	// Last, the email as written, whole: what no part holds (a boundary,
	// a header past a limit) and what writing a part again made.
	if again := w.scan(out, "the email as written"); again != nil {
		out = again
	}
	return out, w.res
}

// mayHold reports whether raw may hold a secret: the word "secret" as
// written, or something that can hide it (a base64 or quoted-printable
// part, an encoded word, a charset that does not write ASCII as ASCII).
// Most emails have none of these, and cost one pass of byte searches.
func mayHold(raw []byte) bool {
	for _, w := range hiders {
		if bytes.Contains(raw, w) {
			return true
		}
	}
	return false
}

var hiders = [][]byte{
	[]byte("ecret"), []byte("ECRET"), []byte("ase64"), []byte("ASE64"), []byte("uoted-"), []byte("UOTED-"), []byte("=?"),
	[]byte("tf-"), []byte("TF-"), []byte("cs-"), []byte("CS-"), []byte("nicode"), []byte("NICODE"),
}

type walker struct {
	lim      Limits
	res      *Result
	byFP     map[string]*Finding
	parts    int
	scanLeft int
	besides  int // lookups of what is beside a secret, at most maxBesides
}

// maxBesides bounds the lookups of the key beside a secret in one email:
// each reads 2 KiB around it, and an email may hold thousands of secrets.
const maxBesides = 64

func (w *walker) unscanned(format string, args ...any) {
	if len(w.res.Unscanned) < 20 {
		w.res.Unscanned = append(w.res.Unscanned, fmt.Sprintf(format, args...))
	}
}

// scan replaces the secrets of text (in a copy) and records them; it
// returns nil when text holds none. where names the place.
func (w *walker) scan(text []byte, where string) []byte {
	spans := keydesk.FindSecrets(text)
	if len(spans) == 0 {
		return nil
	}
	return w.replace(text, text, spans, where, func(sp keydesk.SecretSpan) (int, int) { return sp.Start, sp.End })
}

// replace records each span's secret, read in text, and returns raw with
// each span's range in raw (rawRange) replaced by the secret's marker.
func (w *walker) replace(text, raw []byte, spans []keydesk.SecretSpan, where string, rawRange func(keydesk.SecretSpan) (int, int)) []byte {
	var out []byte
	last := 0
	for _, sp := range spans {
		f := w.record(text, sp, where)
		s, e := rawRange(sp)
		if s < last {
			continue // inside a range already replaced
		}
		out = append(append(out, raw[last:s]...), f.Marker()...)
		last = e
	}
	return append(out, raw[last:]...)
}

// record notes the secret at sp in text.
func (w *walker) record(text []byte, sp keydesk.SecretSpan, where string) *Finding {
	secret := text[sp.Start:sp.End]
	fp := fingerprint(secret)
	f := w.byFP[fp]
	if f == nil {
		f = &Finding{Fingerprint: fp, Length: lengthClass(len(secret)), Kind: sp.Kind}
		w.byFP[fp] = f
		w.res.Findings = append(w.res.Findings, f)
	}
	f.Count++
	// A place is named by what the email says of it (a file name, a
	// header's name): never with a secret in it.
	where = keydesk.RedactSecrets(where)
	if len(f.Where) < maxWhere && !contains(f.Where, where) {
		f.Where = append(f.Where, where)
	}
	if (f.APIKey == "" || f.KeyID == "") && w.besides < maxBesides {
		w.besides++
		k, id := beside(text, sp.Start, sp.End)
		if keydesk.HoldsSecret(k) {
			k = ""
		}
		if keydesk.HoldsSecret(id) {
			id = ""
		}
		if f.APIKey == "" {
			f.APIKey = k
		}
		if f.KeyID == "" {
			f.KeyID = id
		}
	}
	return f
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// What names a key beside a secret: its public half, or its ID.
var (
	apiKeyRE   = regexp.MustCompile(`bm_key_[A-Za-z0-9_\-]{4,64}`)
	keyIDRE    = regexp.MustCompile(`(?i)\bkey[_ \-]?id["']?[ \t]*[:=][ \t]*["']?([A-Za-z0-9][A-Za-z0-9._\-]{0,63})|\b(key-[0-9]{1,12})\b`)
	besideSpan = 1024 // bytes before and after a secret that are "beside" it
)

// beside returns the bm_key_ and the key ID nearest the secret at
// [start, end) within besideSpan bytes.
func beside(text []byte, start, end int) (apiKey, keyID string) {
	lo, hi := max(0, start-besideSpan), min(len(text), end+besideSpan)
	near := func(re *regexp.Regexp) string {
		best, dist := "", -1
		for _, m := range re.FindAllSubmatchIndex(text[lo:hi], -1) {
			s, e := m[0], m[1]
			for g := 2; g+1 < len(m); g += 2 {
				if m[g] >= 0 {
					s, e = m[g], m[g+1]
				}
			}
			s, e = s+lo, e+lo
			if s < end && start < e {
				continue // the secret itself
			}
			d := start - e
			if s >= end {
				d = s - end
			}
			if dist < 0 || d < dist {
				best, dist = string(text[s:e]), d
			}
		}
		return best
	}
	return near(apiKeyRE), near(keyIDRE)
}

// field is one header field as written: its bytes, name and value.
type field struct {
	raw  []byte
	name string
}

// splitHeader splits an entity into its header fields and its body.
func splitHeader(b []byte) (fields []field, sep, body []byte) {
	i := 0
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		line := b[i:]
		if j >= 0 {
			line = b[i : i+j+1]
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return fields, line, b[i+len(line):]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.raw = b[i-len(last.raw) : i+len(line)]
		} else {
			name := line
			if c := bytes.IndexByte(line, ':'); c >= 0 {
				name = line[:c]
			}
			fields = append(fields, field{raw: line, name: strings.TrimSpace(string(name))})
		}
		i += len(line)
	}
	return fields, nil, nil
}

// blockOf is the bytes from first to the end of last, two slices of
// one header block, in order.
func blockOf(first, last []byte) []byte {
	n := len(first)
	if len(last) > 0 && cap(first) >= len(last) {
		// last starts within first's backing array: its end is where
		// last ends, counted from first.
		n = cap(first) - cap(last) + len(last)
	}
	return first[:n]
}

// value is a field's value unfolded, encoded words left as they are.
func (f field) value() string {
	v := f.raw[len(f.name):]
	if c := bytes.IndexByte(v, ':'); c >= 0 {
		v = v[c+1:]
	}
	s := unfold.Replace(string(v))
	return strings.TrimSpace(s)
}

var unfold = strings.NewReplacer("\r\n", "", "\n", "", "\r", "")

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// header redacts the header fields; it returns the new header block (nil:
// unchanged) and the content type, transfer encoding and file name.
func (w *walker) header(fields []field, where string) (out []byte, ct string, params map[string]string, cte, filename string) {
	changed := false
	var b []byte
	// One look at the whole block first: most hold no word "secret" and
	// no encoded word, and then no field needs a closer one.
	look := false
	if len(fields) > 0 {
		first, last := fields[0].raw, fields[len(fields)-1].raw
		block := blockOf(first, last)
		look = bytes.Contains(block, []byte("ecret")) || bytes.Contains(block, []byte("ECRET")) || bytes.Contains(block, []byte("=?"))
	}
	for _, f := range fields {
		var nb []byte
		if look {
			nb = w.headerField(f, where)
		}
		if nb != nil {
			changed = true
			b = append(b, nb...)
		} else {
			b = append(b, f.raw...)
		}
		switch {
		case strings.EqualFold(f.name, "content-type"):
			ct, params, _ = mime.ParseMediaType(f.value())
		case strings.EqualFold(f.name, "content-transfer-encoding"):
			cte = strings.ToLower(strings.TrimSpace(f.value()))
		case strings.EqualFold(f.name, "content-disposition"):
			if _, p, err := mime.ParseMediaType(f.value()); err == nil {
				filename = p["filename"]
			}
		}
	}
	if filename == "" && params != nil {
		filename = params["name"]
	}
	if !changed {
		return nil, ct, params, cte, filename
	}
	return b, ct, params, cte, filename
}

// headerField redacts one field: as written, and as its encoded words
// read. A field that held a secret in an encoded word is written anew,
// its value encoded again where needed.
func (w *walker) headerField(f field, where string) []byte {
	if !bytes.Contains(f.raw, []byte("ecret")) && !bytes.Contains(f.raw, []byte("ECRET")) && !bytes.Contains(f.raw, []byte("=?")) {
		return nil
	}
	where = strings.TrimSpace(where + " header " + f.name)
	if out := w.scan(f.raw, where); out != nil {
		return out
	}
	dec, err := wordDecoder.DecodeHeader(f.value())
	if err != nil {
		return nil
	}
	text := []byte(f.name + ": " + dec)
	red := w.scan(text, where)
	if red == nil {
		return nil
	}
	clear(text)
	eol := "\r\n"
	if !bytes.HasSuffix(f.raw, []byte("\r\n")) {
		eol = "\n"
	}
	return []byte(f.name + ": " + mime.QEncoding.Encode("utf-8", string(red[len(f.name)+2:])) + eol)
}

// entity redacts one MIME entity (header and body); nil: unchanged.
func (w *walker) entity(b []byte, where string, depth int) []byte {
	w.parts++
	if depth > w.lim.Depth || w.parts > w.lim.Parts {
		w.unscanned("%s: past the %d parts or %d levels keydesk looks into", placeName(where), w.lim.Parts, w.lim.Depth)
		return w.scan(b, placeName(where))
	}
	fields, sep, body := splitHeader(b)
	hdr, ct, params, cte, filename := w.header(fields, where)
	if ct == "" {
		ct = "text/plain" // RFC 2045
	}
	newBody := w.body(body, ct, params, cte, filename, where, depth)
	if hdr == nil && newBody == nil {
		return nil
	}
	if newBody != nil && newBody.charset != "" {
		hdr = setCharset(hdr, fields, newBody.charset)
	}
	out := make([]byte, 0, len(b))
	if hdr != nil {
		out = append(out, hdr...)
	} else {
		for _, f := range fields {
			out = append(out, f.raw...)
		}
	}
	out = append(out, sep...)
	if newBody != nil {
		return append(out, newBody.b...)
	}
	return append(out, body...)
}

func placeName(where string) string {
	if where == "" {
		return "the email"
	}
	return where
}

// newBody is a rewritten body, and the charset it is now in when that
// changed (a UTF-16 part is written back as UTF-8).
type newBody struct {
	b       []byte
	charset string
}

var charsetParamRE = regexp.MustCompile(`(?i)(charset\s*=\s*)("[^"]*"|[^;\s]*)`)

func setCharset(hdr []byte, fields []field, cs string) []byte {
	var out []byte
	src := hdr
	if src == nil {
		for _, f := range fields {
			src = append(src, f.raw...)
		}
	}
	fs, _, _ := splitHeader(append(src, '\n'))
	for _, f := range fs {
		if strings.EqualFold(f.name, "content-type") {
			out = append(out, charsetParamRE.ReplaceAll(f.raw, []byte("${1}"+cs))...)
		} else {
			out = append(out, f.raw...)
		}
	}
	return out
}

// textFile reports whether an attachment is a text file a secret may be
// pasted or saved in, by its type or its name.
func textFile(ct, filename string) bool {
	switch ct {
	case "application/json", "application/yaml", "application/x-yaml", "application/toml", "application/xml",
		"application/x-sh", "application/x-shellscript", "application/javascript", "application/x-env":
		return true
	}
	if strings.HasPrefix(ct, "text/") {
		return true
	}
	name := strings.ToLower(path.Base(strings.ReplaceAll(filename, `\`, "/")))
	if name == "" || name == "." {
		return false
	}
	if strings.HasPrefix(name, ".env") || strings.HasSuffix(name, ".env") {
		return true
	}
	switch path.Ext(name) {
	case ".txt", ".json", ".yaml", ".yml", ".csv", ".tsv", ".ini", ".conf", ".cfg", ".properties",
		".toml", ".log", ".sh", ".md", ".xml", ".js", ".py", ".http", ".har", ".eml":
		return true
	}
	return false
}

// body redacts an entity's body; nil: unchanged.
func (w *walker) body(b []byte, ct string, params map[string]string, cte, filename, where string, depth int) *newBody {
	place := where
	if place == "" {
		place = "body"
	}
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		if out := w.multipart(b, params["boundary"], where, depth); out != nil {
			return &newBody{b: out}
		}
		return nil
	case ct == "message/rfc822" || ct == "message/global":
		dec, ok := decode(b, cte)
		if !ok {
			w.unscanned("%s: an attached message in an unknown encoding %q", place, cte)
			return w.asWritten(b, place)
		}
		if !w.budget(len(dec), place) {
			return w.asWritten(b, place)
		}
		out := w.entity(dec, join(where, "message"), depth+1)
		if out == nil {
			return nil
		}
		return &newBody{b: encode(out, cte, b)}
	case textFile(ct, filename):
	default:
		// A file keydesk cannot read as text (an image, a PDF, an
		// archive): only its bytes as written are looked at, by the
		// last pass over the whole email.
		return nil
	}
	desc := place + " (" + ct
	if filename != "" {
		desc += ", " + keydesk.SafeLine(filename, 100)
	}
	desc += ")"
	dec, ok := decode(b, cte)
	if !ok {
		w.unscanned("%s: an unknown transfer encoding %q", desc, cte)
		return w.asWritten(b, desc)
	}
	if cte == "base64" || cte == "quoted-printable" {
		defer clear(dec)
	}
	if !w.budget(len(dec), desc) {
		return w.asWritten(b, desc)
	}
	cs := strings.ToLower(params["charset"])
	text, transcoded := dec, false
	if wide(cs) {
		r, err := charset.Reader(cs, bytes.NewReader(dec))
		if err == nil {
			if t, err := io.ReadAll(io.LimitReader(r, int64(4*len(dec)+16))); err == nil {
				text, transcoded = t, true
				defer clear(t)
			}
		}
	}
	var red []byte
	if ct == "text/html" {
		red = w.html(text, desc)
	} else {
		red = w.scan(text, desc)
	}
	if red == nil {
		if cte == "base64" || cte == "quoted-printable" || transcoded {
			return w.asWritten(b, desc)
		}
		return nil
	}
	nb := &newBody{b: encode(red, cte, b)}
	if transcoded {
		nb.charset = "utf-8"
	}
	return nb
}

// asWritten scans a body as written, without decoding it.
func (w *walker) asWritten(b []byte, place string) *newBody {
	if out := w.scan(b, place); out != nil {
		return &newBody{b: out}
	}
	return nil
}

func (w *walker) budget(n int, place string) bool {
	if n > w.scanLeft {
		w.unscanned("%s: past the %d bytes keydesk decodes per email", place, w.lim.ScanBytes)
		return false
	}
	w.scanLeft -= n
	return true
}

func join(where, next string) string {
	if where == "" {
		return next
	}
	return where + " > " + next
}

// wide reports whether a charset does not write ASCII as ASCII: its
// text must be transcoded before a secret can be found in it.
func wide(cs string) bool {
	for _, p := range []string{"utf-16", "utf-32", "ucs-2", "ucs-4", "utf-7", "unicode"} {
		if strings.HasPrefix(cs, p) {
			return true
		}
	}
	return false
}

// multipart redacts the parts of a multipart body; nil: unchanged.
func (w *walker) multipart(b []byte, boundary, where string, depth int) []byte {
	if boundary == "" {
		return w.scan(b, placeName(where))
	}
	delim := []byte("--" + boundary)
	type span struct{ start, end int } // a part's bytes, without the line break before the next delimiter
	var parts []span
	partStart := -1
	closed := false
	// The delimiter is searched for, not every line read: an attachment's
	// thousands of lines cost one byte search.
	for i := 0; i < len(b) && !closed; {
		k := bytes.Index(b[i:], delim)
		if k < 0 {
			break
		}
		at := i + k
		lineEnd := len(b)
		if j := bytes.IndexByte(b[at:], '\n'); j >= 0 {
			lineEnd = at + j + 1
		}
		i = at + len(delim)
		if at > 0 && b[at-1] != '\n' {
			continue // not at the start of a line
		}
		rest := bytes.TrimRight(b[at+len(delim):lineEnd], " \t\r\n")
		if len(rest) != 0 && !bytes.Equal(rest, []byte("--")) {
			continue
		}
		if partStart >= 0 {
			end := at
			if end > partStart && b[end-1] == '\n' {
				end--
				if end > partStart && b[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, span{partStart, max(end, partStart)})
		}
		partStart = lineEnd
		closed = len(rest) == 2
		i = lineEnd
	}
	if len(parts) == 0 {
		return w.scan(b, placeName(where))
	}
	var out []byte
	last := 0
	// The preamble and the epilogue are no part, but text all the same.
	pre := w.scan(b[:parts[0].start], placeName(where)+" preamble")
	if pre != nil {
		// The preamble's length changed: rebuild from the start.
		out = append(out, pre...)
		last = parts[0].start
	}
	for n, p := range parts {
		name := fmt.Sprintf("part %d", n+1)
		if where != "" {
			name = where + "." + fmt.Sprint(n+1)
		}
		red := w.entity(b[p.start:p.end], name, depth+1)
		if red == nil {
			continue
		}
		out = append(append(out, b[last:p.start]...), red...)
		last = p.end
	}
	tail := parts[len(parts)-1].end
	if closed {
		if epi := w.scan(b[tail:], placeName(where)+" epilogue"); epi != nil {
			out = append(append(out, b[last:tail]...), epi...)
			last = len(b)
		}
	}
	if out == nil {
		return nil
	}
	return append(out, b[last:]...)
}

// decode undoes a transfer encoding; ok is false for one keydesk does
// not know. 7bit, 8bit and binary return b itself.
func decode(b []byte, cte string) ([]byte, bool) {
	switch cte {
	case "", "7bit", "8bit", "binary":
		return b, true
	case "base64":
		// Line breaks are what the decoder skips itself; anything else
		// (spaces, junk) is filtered out first, the slow way.
		out := make([]byte, len(b)+4) // decoded is never longer; Decode panics on too short a buffer
		if n, err := base64.StdEncoding.Decode(out, bytes.TrimRight(b, "\r\n")); err == nil {
			return out[:n], true
		}
		clean := make([]byte, 0, len(b))
		for _, c := range b {
			if c == '=' {
				break // padding: the end of the data
			}
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
				clean = append(clean, c)
			}
		}
		if len(clean)%4 == 1 {
			clean = clean[:len(clean)-1] // a stray character decodes to nothing
		}
		n, _ := base64.RawStdEncoding.Decode(out, clean)
		clear(clean)
		return out[:n], true
	case "quoted-printable":
		out, ok := decodeQP(b)
		if !ok {
			// Written back from what decodes, the rest would be lost:
			// scan it as written instead.
			clear(out)
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// encode writes text back in the transfer encoding cte, with the line
// breaks orig (the body as it was) uses.
func encode(text []byte, cte string, orig []byte) []byte {
	crlf := bytes.Contains(orig, []byte("\r\n")) || !bytes.Contains(orig, []byte("\n"))
	eol := "\r\n"
	if !crlf {
		eol = "\n"
	}
	trailing := bytes.HasSuffix(orig, []byte("\n"))
	var out []byte
	switch cte {
	case "base64":
		enc := base64.StdEncoding.EncodeToString(text)
		var b strings.Builder
		for len(enc) > 76 {
			b.WriteString(enc[:76] + eol)
			enc = enc[76:]
		}
		b.WriteString(enc)
		if trailing {
			b.WriteString(eol)
		}
		out = []byte(b.String())
	case "quoted-printable":
		var b bytes.Buffer
		qw := quotedprintable.NewWriter(&b)
		_, _ = qw.Write(text)
		_ = qw.Close()
		out = b.Bytes()
		if !crlf {
			out = bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n"))
		}
	default:
		out = text
	}
	return out
}

// decodeQP decodes a quoted-printable body in one pass: soft line breaks
// (and the spaces before them) removed, =XX decoded. ok is false for an
// '=' that is neither, which mime/quotedprintable refuses too.
func decodeQP(b []byte) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		k := bytes.IndexByte(b[i:], '=')
		if k < 0 {
			out = append(out, b[i:]...)
			break
		}
		out = append(out, b[i:i+k]...)
		i += k
		rest := b[i+1:]
		switch {
		case len(rest) >= 2 && unhex(rest[0]) >= 0 && unhex(rest[1]) >= 0:
			out = append(out, byte(unhex(rest[0])<<4|unhex(rest[1])))
			i += 2
		case len(rest) == 0:
		default:
			// A soft line break, after optional trailing white space.
			j := 0
			for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
				j++
			}
			switch {
			case j < len(rest) && rest[j] == '\n':
				i += j + 1
			case j+1 < len(rest) && rest[j] == '\r' && rest[j+1] == '\n':
				i += j + 2
			case j == len(rest):
				i += j
			default:
				return out, false
			}
		}
	}
	return out, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	}
	return -1
}
