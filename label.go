package keydesk

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLabelLength is the longest label, in characters.
const MaxLabelLength = 64

// InvalidLabelError says why a label cannot be used.
type InvalidLabelError struct {
	Input  string
	Reason string
}

func (e *InvalidLabelError) Error() string {
	return "label " + fmt.Sprintf("%q", truncate(e.Input, 80)) + ": " + e.Reason
}

// ParseLabel checks a label as the partner wrote it. Labels are kept as
// written (any script, spaces allowed), with surrounding space trimmed. Line
// breaks and control characters are refused: a label ends up in email
// headers, file names and templates, where they could inject content.
func ParseLabel(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", &InvalidLabelError{Input: s, Reason: "is not valid UTF-8 text"}
	}
	l := strings.TrimSpace(s)
	if l == "" {
		return "", &InvalidLabelError{Input: s, Reason: "is empty: give the key a descriptive label such as sandbox-backend"}
	}
	for _, r := range l {
		switch {
		case r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029' || r == '\u0085':
			return "", &InvalidLabelError{Input: s, Reason: "contains a line break: a label must be on one line"}
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return "", &InvalidLabelError{Input: s, Reason: fmt.Sprintf("contains the control character %U: use printable characters only", r)}
		case !unicode.IsPrint(r) && r != ' ':
			return "", &InvalidLabelError{Input: s, Reason: fmt.Sprintf("contains the unprintable character %U", r)}
		}
	}
	if n := utf8.RuneCountInString(l); n > MaxLabelLength {
		return "", &InvalidLabelError{Input: s, Reason: fmt.Sprintf("is %d characters long: the limit is %d", n, MaxLabelLength)}
	}
	return l, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
