package parse

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode"
)

// TestHostileTextIsInert: control characters (C0, C1) and bidi overrides
// in the subject, the Message-ID, the sender's address and a forward's
// From line never reach what keydesk parse prints: they show as U+FFFD
// or as a visible ⟨U+202E⟩.
func TestHostileTextIsInert(t *testing.T) {
	hostile := "invoice\u202efdp.exe \u009b31m\u061c\x1b]8;;x\x07"
	word := "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(hostile)) + "?="
	tests := []struct {
		name string
		raw  string
	}{
		{"subject", strings.Replace(email("", request), "Subject: keys", "Subject: "+word, 1)},
		{"raw UTF-8 subject", strings.Replace(email("", request), "Subject: keys", "Subject: "+hostile, 1)},
		{"message-id", strings.Replace(email("", request), "<t1@acme.example>", "<t1\u202e\u0085@acme.example>", 1)},
		{"sender", strings.Replace(email("", request), "<jane@acme.example>", "<jane\u202e\u009b@acme.example>", 1)},
		{"forward", rmEmail("rm@buildmarkets.ai", "", inlineForward("Jane \u202e<jane\u009b@evil.test>"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, tt.raw, testOptions())
			line, err := r.Summary("x.eml").JSONLine()
			if err != nil {
				t.Fatal(err)
			}
			out := strings.TrimSuffix(string(line), "\n")
			for _, c := range out {
				if unicode.IsControl(c) || (unicode.Is(unicode.Cf, c) && c != '\u200c' && c != '\u200d') {
					t.Fatalf("%U reaches the output: %s", c, out)
				}
			}
			for _, s := range append([]string{r.Subject, r.MessageID}, r.Warnings...) {
				if strings.ContainsFunc(s, func(c rune) bool { return unicode.IsControl(c) || unicode.Is(unicode.Cf, c) }) {
					t.Errorf("%q is not inert", s)
				}
			}
			if (tt.name == "sender" || tt.name == "forward") && (r.Partner != nil || r.Verdict != Review || r.ReplyTo != "") {
				t.Errorf("verdict %s partner %v reply to %q: an address with hidden characters names no sender", r.Verdict, r.Partner, r.ReplyTo)
			}
			if tt.name == "subject" && !strings.Contains(r.Subject, "⟨U+202E⟩") {
				t.Errorf("subject %q: the override is not shown", r.Subject)
			}
		})
	}
}
