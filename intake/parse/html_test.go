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
		{"display none in capitals and spaces", "<p style=\"DISPLAY : NONE !important\">x</p>seen", "seen"},
		{"display none escaped", "<p style=\"disp\\6c ay:none\">x</p>seen", "seen"},
		{"display none with a comment", "<p style=\"display:/**/none\">x</p>seen", "seen"},
		{"style class rule", "<style>.pre, .x { display: none }</style><p class=\"a PRE\">x</p>seen", "seen"},
		{"style id rule in media query", "<style>@media screen { #h { visibility:hidden } }</style><p id=\"h\">x</p>seen", "seen"},
		{"font size zero", "<span style=\"font-size:0pt\">x</span>seen", "seen"},
		{"opacity zero", "<span style=\"opacity:0\">x</span>seen", "seen"},
		{"transparent", "<span style=\"color:rgba(0,0,0,0)\">x</span>seen", "seen"},
		{"colour of its background", "<span style=\"color:#abc;background:#abc\">x</span>seen", "seen"},
		{"zero box hiding overflow", "<div style=\"width:0;height:0;overflow:hidden\">x</div>seen", "seen"},
		{"zero height alone shows overflow", "<div style=\"height:0\">shown</div>", "shown\n"},
		{"visible style kept", "<p style=\"color:#333;font-size:11pt\">shown</p>", "shown\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderHTML(tt.html); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHTMLHiddenDoubt checks that text hidden in a way keydesk cannot be
// sure of is dropped and the email marked for a person, and that plain
// styling is not.
func TestHTMLHiddenDoubt(t *testing.T) {
	tests := []struct {
		name, html string
		doubt      bool
		keep       bool // keydesk cannot tell which text is hidden: it reads it all
	}{
		{"white text", "<p style=\"color:#FFF\">x</p>seen", true, false},
		{"white text on its own dark background", "<p style=\"color:white;background-color:#000\">seen</p>", false, false},
		{"aria-hidden", "<div aria-hidden=\"true\">x</div>seen", true, false},
		{"off screen", "<div style=\"position:absolute; left:-10000px\">x</div>seen", true, false},
		{"tiny text", "<span style=\"font-size:1px\">x</span>seen", true, false},
		{"font colour white", "<font color=\"#ffffff\">x</font>seen", true, false},
		{"rule keydesk cannot place", "<style>div p:first-child { display:none }</style><div><p>x</p></div>seen", true, true},
		{"outlook's own styles", "<style>p.MsoNormal {margin:0cm; font-size:11.0pt}</style><p class=\"MsoNormal\">seen</p>", false, false},
		{"plain", "<p>seen</p>", false, false},
		{"style rules past the bound", strings.Repeat("<style>"+strings.Repeat("p{color:red}", 3000)+"</style>", 2) + "<p>seen</p>", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &walker{m: &msg{}, lim: Limits{}.withDefaults(), textLeft: 1 << 20}
			got := w.html(strings.NewReader(tt.html))
			if strings.Contains(got, "x") != tt.keep {
				t.Errorf("hidden text read (or kept) wrongly: %q", got)
			}
			if !strings.Contains(got, "seen") {
				t.Errorf("visible text dropped: %q", got)
			}
			if w.m.hiddenDoubt != tt.doubt {
				t.Errorf("doubt %v, want %v", w.m.hiddenDoubt, tt.doubt)
			}
		})
	}
}
