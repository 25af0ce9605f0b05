package parse

import (
	"io"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxHTMLTokens bounds the tokens of one HTML part: markup-heavy mail
// clients emit a few thousand for a short message.
const maxHTMLTokens = 200_000

// html renders an HTML part as the text a person sees: blocks and <br> as
// line breaks, list items as "- " or "1. ", table rows as cells joined by
// " | ", blockquotes as "> " lines (so quoted replies are dropped like plain
// ones). Script, style, head and hidden elements are dropped, never run or
// kept: text a reader cannot see must not become a request.
func (w *walker) html(r io.Reader) string {
	lr := &io.LimitedReader{R: r, N: w.lim.HTMLBytes + 1}
	z := html.NewTokenizer(lr)
	z.SetMaxBuf(64 << 10) // one token (a huge attribute or text run) cannot take more
	hw := &htmlWriter{max: w.textLeft}
	var skip htmlSkip
	var rules hidingRules
	inStyle := false
	for tokens := 1; ; tokens++ {
		tt := z.Next()
		if tt == html.ErrorToken || tokens > maxHTMLTokens || hw.full {
			w.htmlStopped(z, tokens)
			break
		}
		name, hasAttr := z.TagName()
		a := atom.Lookup(name)
		switch {
		case a == atom.Style && tt == html.StartTagToken:
			inStyle = true
		case a == atom.Style && tt == html.EndTagToken:
			inStyle = false
			rules.compile()
		case inStyle && tt == html.TextToken:
			rules.addCSS(string(z.Text()))
		}
		if skip.skipping(tt, a, string(name)) {
			continue
		}
		switch tt {
		case html.TextToken:
			hw.text(string(z.Text()))
		case html.StartTagToken, html.SelfClosingTagToken:
			if v := rules.elementVisibility(z, a, hasAttr); v != visible && !voidElement(a) && tt == html.StartTagToken {
				if v == hiddenDoubt {
					w.m.hiddenDoubt = true
				}
				skip = htmlSkip{a: a, name: string(name), depth: 1}
				continue
			}
			hw.startTag(a)
		case html.EndTagToken:
			hw.endTag(a)
		}
	}
	if rules.doubt && hw.b.Len() > 0 {
		w.m.hiddenDoubt = true
	}
	if lr.N <= 0 {
		w.m.bound(limitHTML, "an HTML part is larger than %d bytes: the rest was not read", w.lim.HTMLBytes)
	}
	if hw.full {
		w.m.bound(limitText, "only the first %d bytes of text were read", w.lim.TextBytes)
	}
	w.textLeft -= hw.b.Len()
	return hw.b.String()
}

// htmlStopped records why the tokenizer stopped, when it was a limit.
func (w *walker) htmlStopped(z *html.Tokenizer, tokens int) {
	if tokens > maxHTMLTokens {
		w.m.bound(limitHTML, "an HTML part has more than %d tokens", maxHTMLTokens)
	}
	switch err := z.Err(); {
	case err == nil || err == io.EOF:
	case err == html.ErrBufferExceeded:
		w.m.bound(limitHTML, "an HTML part has a token longer than 64 KiB")
	case err == errTooLarge:
		w.m.tooLarge = true
	}
}

// htmlSkip is the element whose content is being dropped.
type htmlSkip struct {
	a     atom.Atom
	name  string // its name, for unknown atoms
	depth int    // nesting of that element inside itself; 0 when none is
}

// skipping reports whether the token is inside the dropped element,
// following that element's nesting.
func (s *htmlSkip) skipping(tt html.TokenType, a atom.Atom, name string) bool {
	if s.depth == 0 {
		return false
	}
	switch tt {
	case html.StartTagToken:
		if a == s.a && name == s.name && !voidElement(a) {
			s.depth++
		}
	case html.EndTagToken:
		if a == s.a && name == s.name {
			s.depth--
		}
	}
	return true
}

// startTag writes what an opening tag shows: a break, a rule, a quote
// level, a list marker or a table cell's separator.
func (h *htmlWriter) startTag(a atom.Atom) {
	switch a {
	case atom.Br:
		h.newline()
	case atom.Hr:
		h.block()
		h.raw("---")
		h.block()
	case atom.Blockquote:
		h.block()
		h.quote++
	case atom.Ul, atom.Ol:
		h.block()
		n := 0
		if a == atom.Ol {
			n = 1
		}
		if len(h.lists) < 32 {
			h.lists = append(h.lists, n)
		}
	case atom.Li:
		h.block()
		if len(h.lists) > 0 && h.lists[len(h.lists)-1] > 0 {
			h.raw(strconv.Itoa(h.lists[len(h.lists)-1]) + ". ")
			h.lists[len(h.lists)-1]++
		} else {
			h.raw("- ")
		}
	case atom.Tr:
		h.block()
		h.cells = 0
	case atom.Td, atom.Th:
		if h.cells > 0 {
			h.raw(" | ")
		}
		h.cells++
	case atom.Pre:
		h.block()
		h.pre++
	case atom.Img:
		// alt text is what a reader without images sees; it is not a request.
	default:
		if blockElement(a) {
			h.block()
		}
	}
}

// endTag closes what startTag opened.
func (h *htmlWriter) endTag(a atom.Atom) {
	switch a {
	case atom.Blockquote:
		h.block()
		if h.quote > 0 {
			h.quote--
		}
	case atom.Ul, atom.Ol:
		h.block()
		if len(h.lists) > 0 {
			h.lists = h.lists[:len(h.lists)-1]
		}
	case atom.Pre:
		h.block()
		if h.pre > 0 {
			h.pre--
		}
	case atom.Td, atom.Th:
	default:
		if blockElement(a) || a == atom.Li || a == atom.Tr || a == atom.Table {
			h.block()
		}
	}
}

func voidElement(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Hr, atom.Img, atom.Input, atom.Link, atom.Meta, atom.Source, atom.Track, atom.Wbr:
		return true
	}
	return false
}

func blockElement(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Div, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
		atom.Table, atom.Thead, atom.Tbody, atom.Tfoot, atom.Section, atom.Article,
		atom.Header, atom.Footer, atom.Dl, atom.Dt, atom.Dd, atom.Address, atom.Center,
		atom.Body, atom.Html, atom.Main, atom.Nav, atom.Aside, atom.Figure, atom.Caption, atom.Form, atom.Fieldset:
		return true
	}
	return false
}

// htmlWriter collapses white space as a browser does and keeps track of
// line starts, so blockquote prefixes and list markers land right.
type htmlWriter struct {
	b       strings.Builder
	max     int
	full    bool
	quote   int
	pre     int
	cells   int
	lists   []int // per open list: 0 for <ul>, else the next number
	lineLen int   // bytes on the current line after its prefix
	space   bool  // a space is pending before the next word
	nl      int   // newlines just written (0 on a line with content)
}

func (h *htmlWriter) write(s string) {
	if h.full {
		return
	}
	if h.b.Len()+len(s) > h.max {
		h.full = true
		return
	}
	h.b.WriteString(s)
}

func (h *htmlWriter) startLine() {
	if h.lineLen == 0 {
		q := min(h.quote, 20)
		if q > 0 {
			h.write(strings.Repeat("> ", q))
		}
	}
}

func (h *htmlWriter) raw(s string) {
	h.startLine()
	if h.space && h.lineLen > 0 {
		h.write(" ")
	}
	h.space = false
	h.write(s)
	h.lineLen += len(s)
	h.nl = 0
}

func (h *htmlWriter) text(s string) {
	if h.pre > 0 {
		for i, l := range strings.Split(s, "\n") {
			if i > 0 {
				h.newline()
			}
			if l != "" {
				h.raw(l)
			}
		}
		return
	}
	for i, f := range strings.FieldsFunc(s, isHTMLSpace) {
		if i > 0 || (len(s) > 0 && isHTMLSpace(rune(s[0]))) {
			h.space = true
		}
		h.raw(f)
	}
	if len(s) > 0 && isHTMLSpace(rune(s[len(s)-1])) {
		h.space = true
	}
}

func isHTMLSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\u00a0'
}

func (h *htmlWriter) newline() {
	h.write("\n")
	h.lineLen, h.space = 0, false
	h.nl++
}

// block ends the current line; a block starting after text leaves one
// blank line at most.
func (h *htmlWriter) block() {
	if h.lineLen > 0 {
		h.newline()
	}
	h.space = false
}
