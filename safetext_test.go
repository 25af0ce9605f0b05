package keydesk

import (
	"strings"
	"testing"
)

// TestSafeText: what an email can hold that would act on a screen, a
// terminal or a mail client is made inert and visible; ordinary text of
// any script is left as it is.
func TestSafeText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "Environment: sandbox\n\tScopes: x", "Environment: sandbox\n\tScopes: x"},
		{"scripts and emoji", "Schlüssel für 東京 👩\u200d💻 می\u200cخواهم", "Schlüssel für 東京 👩\u200d💻 می\u200cخواهم"},
		{"line ends", "a\r\nb\rc\u0085d\u2028e\u2029f", "a\nb\nc\nd\ne\nf"},
		{"C0 and DEL", "a\x1b[2Jb\x00c\x7f", "a\uFFFD[2Jb\uFFFDc\uFFFD"},
		{"C1", "a\u009b31mb\u0090c", "a\uFFFD31mb\uFFFDc"},
		{"right-to-left override", "invoice\u202efdp.exe", "invoice⟨U+202E⟩fdp.exe"},
		{"every bidi control", "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069",
			"⟨U+061C⟩⟨U+200E⟩⟨U+200F⟩⟨U+202A⟩⟨U+202B⟩⟨U+202C⟩⟨U+202D⟩⟨U+2066⟩⟨U+2067⟩⟨U+2068⟩⟨U+2069⟩"},
		{"hidden characters", "acme\u200b.example\ufeff\U000E0041", "acme⟨U+200B⟩.example⟨U+FEFF⟩⟨U+E0041⟩"},
		{"invalid UTF-8", "caf\xe9", "caf\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SafeText(tt.in); got != tt.want {
				t.Errorf("SafeText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSafeLine(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"one line", "  Re:\tkeys\r\nBcc: x@evil.test \u2028 more ", 0, "Re: keys Bcc: x@evil.test more"},
		{"controls", "pay\x1b[31m\u202eman", 0, "pay\uFFFD[31m⟨U+202E⟩man"},
		{"cut", strings.Repeat("é", 10), 4, "éééé…"},
		{"short enough", "éééé", 4, "éééé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SafeLine(tt.in, tt.max); got != tt.want {
				t.Errorf("SafeLine(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func TestInert(t *testing.T) {
	for _, s := range []string{"jane@acme.example", "Jane  Doe <jane@acme.example>", "bücher.example"} {
		if !Inert(s) {
			t.Errorf("Inert(%q) = false", s)
		}
	}
	for _, s := range []string{"jane\u202e@acme.example", "jane\u009b@acme.example", "a\nb", "caf\xe9"} {
		if Inert(s) {
			t.Errorf("Inert(%q) = true", s)
		}
	}
}
