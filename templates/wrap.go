package templates

import (
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/width"
)

// Width is the column every line of an email to a partner ends by: 72
// leaves room for a "> " quote or two in the reply without the partner's
// client rewrapping it.
const Width = 72

// RuneColumns is how many columns r takes on a fixed-width screen: two for
// an East Asian wide or fullwidth character, none for a combining mark or
// a format character, one otherwise.
func RuneColumns(r rune) int {
	switch {
	case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Cf, r):
		return 0
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

// Columns is how many columns s takes on one line (see RuneColumns).
func Columns(s string) int {
	n := 0
	for _, r := range s {
		n += RuneColumns(r)
	}
	return n
}

// Wrap breaks every line of text that is wider than width columns at
// spaces; lines that fit are left exactly as they are. Write a paragraph
// as one line and Wrap fills it. A continuation line is indented to where
// the line's content starts:
//
//   - under the text of a list item ("- ", "* ", "1. ");
//   - under the value of an aligned field ("  Scopes:      a, b, c" or
//     "  Label        text", a label followed by two spaces or, on an
//     indented line, by a colon);
//   - otherwise under the line's own indentation.
//
// A word is never broken (an ID, an address, a URL): a word that does not
// fit after the label goes on the next line, and a word longer than the
// line can hold after the indentation stands alone on a line of its own at
// the first column. A value whose spaces must not become line breaks (a
// fingerprint in groups of four) belongs on a line of its own in the
// template.
func Wrap(text string, width int) string {
	lines := strings.Split(text, "\n")
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if Columns(l) <= width {
			out = append(out, l)
			continue
		}
		out = append(out, wrapLine(l, width)...)
	}
	return strings.Join(out, "\n")
}

var (
	// listItem is a bullet or a number of a list, with the spaces after it.
	listItem = regexp.MustCompile(`^(?:[-*•]|[0-9]{1,2}[.)]) +`)
	// alignedField is a label of at most four words followed by two or
	// more spaces: "Environment  sandbox", "Scopes:      a, b".
	alignedField = regexp.MustCompile(`^[^ ]+(?: [^ ]+){0,3}? {2,}`)
	// colonField is a short label and a colon: "What to do: ...".
	colonField = regexp.MustCompile(`^[^ :]+(?: [^ :]+){0,2}: +`)
)

// maxLabel bounds how far a field's value may start: past it a
// continuation would leave too little room to be worth aligning.
const maxLabel = 24

// hangOf returns the start of line that every continuation line repeats
// as spaces: the indentation and a list marker or a field's label. A
// start wider than half the width is not repeated: the words would have
// no room left.
func hangOf(line string, width int) string {
	indent := len(line) - len(strings.TrimLeft(line, " "))
	rest := line[indent:]
	var heads []string
	if m := listItem.FindString(rest); m != "" {
		heads = append(heads, line[:indent+len(m)])
	}
	m := alignedField.FindString(rest)
	if m == "" && indent > 0 {
		m = colonField.FindString(rest)
	}
	if m != "" && Columns(m) <= maxLabel && len(m) < len(rest) {
		heads = append(heads, line[:indent+len(m)])
	}
	for _, h := range append(heads, line[:indent]) {
		if Columns(h) <= width/2 {
			return h
		}
	}
	return ""
}

// wrapLine fills the words of one over-wide line into lines of at most
// width columns (see Wrap).
func wrapLine(line string, width int) []string {
	head := hangOf(line, width)
	hang := Columns(head)
	pad := strings.Repeat(" ", hang)
	var out []string
	cur, n, empty := head, hang, true
	flush := func() {
		if s := strings.TrimRight(cur, " "); strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	for w := range strings.FieldsSeq(line[len(head):]) {
		wc := Columns(w)
		switch {
		case empty && n+wc <= width:
			cur, n, empty = cur+w, n+wc, false
		case !empty && n+1+wc <= width:
			cur, n = cur+" "+w, n+1+wc
		default:
			flush()
			if hang+wc <= width {
				cur, n, empty = pad+w, hang+wc, false
			} else {
				// Longer than any line can hold: on its own, whole.
				out = append(out, w)
				cur, n, empty = pad, hang, true
			}
		}
	}
	if !empty {
		flush()
	}
	return out
}
