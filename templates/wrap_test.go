package templates

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWrap(t *testing.T) {
	long := "https://portal.buildmarkets.example/partners/acme/requests/KR-20261127-7QX4/details"
	tests := []struct {
		name, in, want string
		width          int
	}{
		{"a line that fits is left as it is", "-- \n  a  b\n", "-- \n  a  b\n", 20},
		{"a paragraph fills its lines", "one two three four five six", "one two three\nfour five six", 14},
		{"an indented line keeps its indentation", "  one two three four", "  one two three\n  four", 15},
		{"a field's value is aligned", "  Scopes:      a:read, b:write, c:read", "  Scopes:      a:read, b:write,\n               c:read", 32},
		{"a field without a colon is aligned", "  Label        one two three four", "  Label        one two three\n               four", 30},
		{"a colon field on an indented line is aligned", "    What to do: one two three four five", "    What to do: one two three\n                four five", 32},
		{"a list item hangs under its text", "1. one two three\n  - four five six", "1. one two\n   three\n  - four\n    five six", 12},
		{"an ID is never broken", "see KR-20261127-7QX4 now", "see\nKR-20261127-7QX4\nnow", 17},
		{"a word longer than the width stands alone", "  Link: " + long + " here", "  Link:\n" + long + "\n        here", 72},
		{"a value too wide after its label stands alone", "  api_secret:   0123456789abcdef0", "  api_secret:\n0123456789abcdef0", 32},
		{"a label wider than half the line is not repeated", "  Some long label:  one two three", "  Some long label: one two\n  three", 26},
		{"wide characters take two columns", "日本語 日本語 日本語", "日本語 日本語\n日本語", 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Wrap(tt.in, tt.width)
			if got != tt.want {
				t.Errorf("Wrap(%q, %d) =\n%s\nwant\n%s", tt.in, tt.width, got, tt.want)
			}
			for _, l := range strings.Split(got, "\n") {
				if Columns(l) > tt.width && strings.Contains(strings.TrimSpace(l), " ") {
					t.Errorf("line %q is wider than %d", l, tt.width)
				}
			}
		})
	}
}

// FuzzWrap: whatever a partner's values hold, Wrap keeps every word, in
// order and whole, and leaves no line wider than the width but one that
// is a single word.
func FuzzWrap(f *testing.F) {
	f.Add("  Scopes:      accounts:read, trading:read, trading:write, marketdata:read, keys:manage", 30)
	f.Add("1. Store the pair in your secrets manager (HashiCorp Vault, AWS Secrets Manager)", 20)
	f.Add("日本語のラベル 日本語のラベル 日本語のラベル\n  - é\u0301 x", 10)
	f.Fuzz(func(t *testing.T, s string, width int) {
		if width < 1 || width > 200 || !utf8.ValidString(s) {
			return
		}
		got := Wrap(s, width)
		if !slices.Equal(strings.Fields(got), strings.Fields(s)) {
			t.Fatalf("Wrap(%q, %d) = %q: the words changed", s, width, got)
		}
		for _, l := range strings.Split(got, "\n") {
			if Columns(l) > width && strings.ContainsAny(strings.TrimSpace(l), " ") && !slices.Contains(strings.Split(s, "\n"), l) {
				t.Fatalf("Wrap(%q, %d): line %q is wider than %d", s, width, l, width)
			}
		}
	})
}
