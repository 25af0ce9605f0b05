package parse

import (
	"reflect"
	"strings"
	"testing"
)

// TestHTMLLimits checks each way an HTML part is cut short is recorded as
// a limit of the kind decide reads, and the text before it kept.
func TestHTMLLimits(t *testing.T) {
	tests := []struct {
		name     string
		html     string
		lim      Limits
		textLeft int
		want     []limit
	}{
		{"within limits", "<p>Label: x</p>", Limits{}, 1 << 20, nil},
		{"too many tokens", "<p>Label: x</p>" + strings.Repeat("<b>", maxHTMLTokens), Limits{}, 1 << 20,
			[]limit{{limitHTML, "an HTML part has more than 200000 tokens"}}},
		{"token too long", "<p>Label: x</p><p title=\"" + strings.Repeat("x", 70<<10) + "\">", Limits{}, 1 << 20,
			[]limit{{limitHTML, "an HTML part has a token longer than 64 KiB"}}},
		{"part too large", "<p>Label: x</p>" + strings.Repeat("<b></b>", 100), Limits{HTMLBytes: 100}, 1 << 20,
			[]limit{{limitHTML, "an HTML part is larger than 100 bytes: the rest was not read"}}},
		{"text budget spent", "<p>Label: x</p><p>" + strings.Repeat("word ", 100) + "</p>", Limits{TextBytes: 50}, 50,
			[]limit{{limitText, "only the first 50 bytes of text were read"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &walker{m: &msg{}, lim: tt.lim.withDefaults(), textLeft: tt.textLeft}
			got := w.html(strings.NewReader(tt.html))
			if !strings.HasPrefix(got, "Label: x\n") {
				t.Errorf("text %q, want it to start with the label", got)
			}
			if !reflect.DeepEqual(w.m.bounds, tt.want) {
				t.Errorf("bounds %v, want %v", w.m.bounds, tt.want)
			}
		})
	}
}

// TestHTMLHidden checks what a reader cannot see is dropped, however the
// element that hides it nests.
func TestHTMLHidden(t *testing.T) {
	tests := []struct {
		name, html, want string
	}{
		{"nested same element", "<div hidden><div>Label: a</div><div>b</div></div><p>seen</p>", "seen\n"},
		{"void element does not nest", "<span hidden><br>x</span>seen", "seen"},
		{"self-closing hidden hides nothing", "<div hidden/>seen", "seen"},
		{"visibility hidden", "<p style=\"visibility: hidden\">x</p>seen", "seen"},
		{"outlook mso-hide", "<p style=\"mso-hide:all\">x</p>seen", "seen"},
		{"unknown element by name", "<x-a hidden><x-b>in</x-b><x-a>in</x-a></x-a>seen", "seen"},
		{"textarea never shown", "<textarea>Scopes: keys:manage</textarea>seen", "seen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderHTML(tt.html); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
