package keydesk

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SafeText makes text that came in an email inert wherever keydesk shows
// it or sends it back: the web UI, the JSON API, terminals, logs and the
// subject of a reply. It is the one sanitiser for all of them.
//
//   - invalid UTF-8 becomes U+FFFD;
//   - line ends become "\n" (CR LF, CR, NEL, U+2028, U+2029); tab is kept;
//   - every other control character (C0, DEL, C1: a terminal escape among
//     them) becomes U+FFFD;
//   - format characters, which reorder or hide text (the bidi embeddings,
//     overrides, isolates and marks, U+061C ARABIC LETTER MARK included;
//     zero-width spaces, the BOM, tag characters), become a visible
//     ⟨U+202E⟩, so a person sees that they were there. Zero-width joiner and
//     non-joiner stay: scripts and emoji need them, and they move nothing.
func SafeText(s string) string {
	if isInert(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteRune('\uFFFD')
		case r == '\r':
			if i >= len(s) || s[i] != '\n' {
				b.WriteByte('\n')
			}
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == '\u0085' || r == '\u2028' || r == '\u2029':
			b.WriteByte('\n')
		case unicode.IsControl(r):
			b.WriteRune('\uFFFD')
		case r == '\u200c' || r == '\u200d':
			b.WriteRune(r)
		case unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, "\u27e8U+%04X\u27e9", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// SafeLine is SafeText on one line: line ends, tabs and runs of white
// space become one space, the ends are trimmed, and past max characters
// (max > 0) the text is cut and ends in "…".
func SafeLine(s string, max int) string {
	s = strings.Join(strings.Fields(SafeText(s)), " ")
	if max > 0 && utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	return s
}

// isInert reports whether s is printable ASCII, tabs and "\n" only: the
// common case, returned as it is.
func isInert(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// Inert reports whether s is one line that SafeText leaves as it is:
// valid UTF-8 without control, format or line-break characters. An address
// that is not inert shows as another one.
func Inert(s string) bool {
	return !strings.ContainsAny(s, "\n\t") && SafeText(s) == s
}
