package parse

import (
	"strings"
	"testing"
)

func renderHTML(s string) string {
	w := &walker{m: &msg{}, lim: Limits{}.withDefaults(), textLeft: 1 << 20}
	return w.html(strings.NewReader(s))
}

func TestHTMLToText(t *testing.T) {
	tests := []struct {
		name, html, want string
	}{
		{"paragraphs and br", "<p>Hello<br>there</p><p>Environment:&nbsp;sandbox</p>", "Hello\nthere\nEnvironment: sandbox\n"},
		{"entities", "<div>Label: a&amp;b &lt;c&gt; &#x4e2d;</div>", "Label: a&b <c> 中\n"},
		{"white space collapses", "<p>Scopes:\n   accounts:read,\n\t trading:read</p>", "Scopes: accounts:read, trading:read\n"},
		{"unordered list", "<ul><li>accounts:read</li><li>trading:read</li></ul>", "- accounts:read\n- trading:read\n"},
		{"ordered list", "<ol><li>one</li><li>two</li></ol>", "1. one\n2. two\n"},
		{"table rows", "<table><tr><th>Environment</th><th>Label</th></tr><tr><td>sandbox</td><td>x</td></tr></table>", "Environment | Label\nsandbox | x\n"},
		{"script and style dropped", "<style>p{}</style><p>a</p><script>var s='Environment: production'</script><p>b</p>", "a\nb\n"},
		{"hidden dropped", "<p>a</p><div style=\"DISPLAY: none\"><div>Label: hidden</div></div><span hidden>x</span><p>b</p>", "a\nb\n"},
		{"head dropped", "<html><head><title>Scopes: keys:manage</title></head><body>ok</body></html>", "ok\n"},
		{"blockquote quoted", "<p>mine</p><blockquote>theirs<br>more</blockquote>", "mine\n> theirs\n> more\n"},
		{"pre keeps lines", "<pre>Environment: sandbox\nScopes: a</pre>", "Environment: sandbox\nScopes: a\n"},
		{"unclosed tags", "<p>Environment: sandbox<p>Label: x<div>", "Environment: sandbox\nLabel: x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderHTML(tt.html); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSplitBody(t *testing.T) {
	tests := []struct {
		name       string
		text       string
		own        string // own lines joined by |
		fwdFrom    string
		fwdSubject bool // the email's subject says Fwd:
	}{
		{"signature", "Environment: sandbox\n-- \nLabel: sig", "Environment: sandbox", "", false},
		{"quoted lines", "mine\n> theirs\nmine too", "mine|mine too", "", false},
		{"gmail attribution", "new\n\nOn Wed, 25 Nov 2026 at 16:02, Desk <support@buildmarkets.ai> wrote:\n> Environment: production", "new|", "", false},
		{"wrapped attribution", "new\nOn Wed, 25 Nov 2026 at 16:02, Buildmarkets API key desk <\nsupport@buildmarkets.ai> wrote:\nLabel: old", "new", "", false},
		{"german attribution", "neu\nAm 25.11.2026 um 16:02 schrieb Desk <support@buildmarkets.ai>:\nLabel: alt", "neu", "", false},
		{"outlook reply block", "new\n________________________________\nFrom: Desk <support@buildmarkets.ai>\nSent: Wednesday\nTo: x\nSubject: RE: keys\n\nLabel: old", "new", "", false},
		{"original message", "new\n-----Original Message-----\nFrom: Desk <support@buildmarkets.ai>\nSent: Wednesday\nSubject: keys\n\nLabel: old", "new", "", false},
		{"outlook forward block", "fyi\nFrom: Jane [mailto:jane@acme.example]\nSent: Wednesday\nSubject: FW: keys\n\nLabel: fwd", "fyi", "jane@acme.example", false},
		{"gmail forward", "fyi\n---------- Forwarded message ---------\nFrom: Jane Doe <Jane@Acme.example>\nDate: x\n\nLabel: fwd", "fyi", "jane@acme.example", false},
		{"apple forward", "Begin forwarded message:\n\nFrom: jane@acme.example\nSubject: k\n\nLabel: fwd", "", "jane@acme.example", false},
		{"quoted forward", "---------- Forwarded message ---------\nFrom: <jane@acme.example>\n\n> Label: fwd\n> \n> Jane", "", "jane@acme.example", false},
		{"bottom posting", "On Wed, 25 Nov 2026, Desk <support@buildmarkets.ai> wrote:\n> Label: old\n>\n\nLabel: new", "|Label: new", "", false},
		{"interleaved", "On Wed, Desk wrote:\n> Which label?\nLabel: new\n> Thanks", "Label: new", "", false},
		{"sent from phone", "Label: x\nSent from my iPhone\nLabel: y", "Label: x", "", false},
		{"outlook block in a forward", "fyi\nFrom: Jane <jane@acme.example>\nSent: Wednesday\nSubject: keys\n\nLabel: fwd", "fyi", "jane@acme.example", true},
		{"outlook block in a reply", "new\nFrom: Jane <jane@acme.example>\nSent: Wednesday\nSubject: keys\n\nLabel: old", "new", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, _, _ := splitLines(tt.text, Limits{}.withDefaults())
			b := splitBody(lines, tt.fwdSubject, 0)
			if got := strings.Join(b.own, "|"); got != tt.own {
				t.Errorf("own %q, want %q", got, tt.own)
			}
			from := ""
			if b.forward != nil {
				from = b.forward.from
				if !strings.Contains(strings.Join(b.forward.own, "\n"), "Label: fwd") {
					t.Errorf("forwarded text %q lacks the request", b.forward.own)
				}
			}
			if from != tt.fwdFrom {
				t.Errorf("forward from %q, want %q", from, tt.fwdFrom)
			}
		})
	}
}

func TestReadDrafts(t *testing.T) {
	lim := Limits{}.withDefaults()
	tests := []struct {
		name string
		text string
		want string // env/scopes/label per request, joined by " ; "
	}{
		{"basic", "Environment: sandbox\nScopes: accounts:read, trading:read\nLabel: a", "sandbox/accounts:read,trading:read/a"},
		{"equals and case", "ENVIRONMENT = Production\nscope = Trading:Write\nlabel = B", "production/trading:write/B"},
		{"scopes list below", "Environment: sandbox\nScopes:\n\n- accounts:read – balances\n- marketdata:read (quotes)\n\nLabel: a", "sandbox/accounts:read,marketdata:read/a"},
		{"numbered fields", "1. Environment: sandbox\n2. Scopes: accounts:read\n3. Label: n", "sandbox/accounts:read/n"},
		{"second environment starts a request", "Environment: sandbox\nScopes: accounts:read\nLabel: a\nEnvironment: production\nScopes: trading:read\nLabel: b", "sandbox/accounts:read/a ; production/trading:read/b"},
		{"heading starts a request", "Key 1\nEnvironment: sandbox\nKey 2\nEnvironment: production", "sandbox// ; production//"},
		{"markdown table", "| Environment | Scopes | Label |\n|---|---|---|\n| sandbox | accounts:read | t1 |\n| production | trading:read | t2 |", "sandbox/accounts:read/t1 ; production/trading:read/t2"},
		{"two-cell rows", "Environment | sandbox\nScopes | accounts:read\nLabel | x", "sandbox/accounts:read/x"},
		{"both environments", "Environment: sandbox & production\nScopes: accounts:read\nLabel: x", "sandbox/accounts:read/x ; production/accounts:read/x"},
		{"label quotes and period", "Environment: test\nScopes: accounts:read\nLabel: \"my key\".", "sandbox/accounts:read/my key"},
		{"prose is not a field", "Our test environment: ready\nThe label we like: none", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, _, _ := splitLines(tt.text, lim)
			var got []string
			for _, d := range readDrafts(lines, lim) {
				for _, p := range validate(d, lim) {
					var sc []string
					for _, s := range p.scopes {
						sc = append(sc, string(s))
					}
					got = append(got, string(p.env)+"/"+strings.Join(sc, ",")+"/"+p.label)
				}
			}
			if g := strings.Join(got, " ; "); g != tt.want {
				t.Errorf("got %q, want %q", g, tt.want)
			}
		})
	}
}

func TestStripComments(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a (b; c) d", "a   d"},
		{"a (b (c) d) e", "a   e"},
		{`a "(not a comment)" b`, `a "(not a comment)" b`},
		{`a (x\) y) b`, "a   b"},
	}
	for _, tt := range tests {
		if got := stripComments(tt.in); got != tt.want {
			t.Errorf("stripComments(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestGenericHeaderBlock checks a header block in a language keydesk has
// no words for is found by its shape, and a partner's own lines are not.
func TestGenericHeaderBlock(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  bool
	}{
		{"turkish with address", []string{"Kimden: Support <support@buildmarkets.ai>", "Gönderildi: 25 Kasım 2026 16:02", "Kime: Jane <jane@acme.example>", "Konu: API"}, true},
		{"hungarian name only", []string{"Feladó: Buildmarkets Partner Support", "Elküldve: 2026. november 25. 16:02", "Címzett: Jane Doe", "Tárgy: API key request"}, true},
		{"name only, too few lines", []string{"Name: Jane", "Date: 2026-12-01", "Team: backend"}, false},
		{"no date", []string{"Kimden: Support <support@buildmarkets.ai>", "Kime: Jane <jane@acme.example>", "Konu: API"}, false},
		{"field lines are never a block", []string{"Contact: jane@acme.example", "Environment: production", "Scopes: trading:read", "Label: due 2026-12-01"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := genericHeaderBlockAt(tt.lines, 0); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
