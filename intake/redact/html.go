package redact

import (
	"bytes"
	"html"

	"github.com/buildmarkets/keydesk"
)

// html redacts an HTML part: the secrets as written (in the markup, an
// attribute, a link) and those its text shows once the tags are left out
// and the entities decoded (bm&#95;secret_…, a secret split by a <span>).
// A secret found in the text is replaced with the markup it spans.
func (w *walker) html(b []byte, where string) []byte {
	red := w.scan(b, where)
	if red != nil {
		b = red
	}
	// The text differs from the markup only by tags and entities; the
	// word "secret" stays whole in any realistic case (bm&#95;secret_…,
	// a <span> around a secret): without it, there is nothing to read.
	if !bytes.Contains(b, []byte("ecret")) && !bytes.Contains(b, []byte("ECRET")) {
		return red
	}
	text, from, to := textView(b)
	defer clear(text)
	spans := keydesk.FindSecrets(text)
	if len(spans) == 0 {
		return red
	}
	return w.replace(text, b, spans, where, func(sp keydesk.SecretSpan) (int, int) { return from[sp.Start], to[sp.End-1] })
}

// textView is the text of HTML as a reader sees it, roughly: tags left
// out (a block's end as a line break, so that lines stay lines), entities
// decoded. from[i] and to[i] are where the source of text byte i starts
// and ends in b.
func textView(b []byte) (text []byte, from, to []int) {
	text = make([]byte, 0, len(b))
	from = make([]int, 0, len(b))
	to = make([]int, 0, len(b))
	emit := func(s []byte, start, end int) {
		for _, c := range s {
			text = append(text, c)
			from = append(from, start)
			to = append(to, end)
		}
	}
	for i := 0; i < len(b); {
		switch b[i] {
		case '<':
			j := bytes.IndexByte(b[i:], '>')
			if j < 0 {
				emit(b[i:], i, len(b))
				return
			}
			if block(b[i : i+j+1]) {
				emit([]byte{'\n'}, i, i+j+1)
			}
			i += j + 1
		case '&':
			j := bytes.IndexByte(b[i:min(len(b), i+12)], ';')
			if j < 0 {
				emit(b[i:i+1], i, i+1)
				i++
				continue
			}
			dec := html.UnescapeString(string(b[i : i+j+1]))
			emit([]byte(dec), i, i+j+1)
			i += j + 1
		default:
			emit(b[i:i+1], i, i+1)
			i++
		}
	}
	return text, from, to
}

// block reports whether a tag breaks the line: a secret's value ends there.
func block(tag []byte) bool {
	t := bytes.ToLower(bytes.TrimLeft(tag, "</"))
	for _, name := range []string{"br", "p", "div", "tr", "td", "li", "pre", "table", "h1", "h2", "h3", "blockquote"} {
		if bytes.HasPrefix(t, []byte(name)) && len(t) > len(name) && (t[len(name)] == '>' || t[len(name)] == ' ' || t[len(name)] == '/') {
			return true
		}
	}
	return false
}
