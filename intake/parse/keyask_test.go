package parse

import (
	"fmt"
	"strings"
	"testing"
)

// TestKeyAsks reads the ways partners ask to revoke or rotate keys.
func TestKeyAsks(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string // kind:what:environment
	}{
		{"key id", "Please revoke key-007.", []string{"revoke:key-007:"}},
		{"key id production", "please kill key-12 in production asap", []string{"revoke:key-12:production"}},
		{"public half", "Delete bm_key_abc123 please", []string{"revoke:bm_key_abc123:"}},
		{"label explicit", "Could you deactivate the key labelled prod-trading-engine?", []string{"revoke:the key labelled prod-trading-engine:"}},
		{"label quoted", "Please revoke the key named “md feed” in sandbox.", []string{"revoke:the key labelled md feed:sandbox"}},
		{"bare label", "please rotate prod-trading-engine", []string{"rotate:the key labelled prod-trading-engine:"}},
		{"bare plain word is prose", "our service needs to rotate its own keys", nil},
		{"two verbs", "Rotate key-001 and revoke key-002.", []string{"rotate:key-001:", "revoke:key-002:"}},
		{"negated", "Please do not revoke key-001, rotate key-002 instead.", []string{"rotate:key-002:"}},
		{"all", "Please revoke all our keys.", []string{"revoke:all keys:"}},
		{"alle", "Bitte sperren Sie alle unsere Schlüssel.", []string{"revoke:all keys:"}},
		{"todas", "Por favor, eliminen todas nuestras claves.", []string{"revoke:all keys:"}},
		{"german", "Bitte widerrufen Sie key-003 in der Produktion.", []string{"revoke:key-003:production"}},
		{"french rotate", "Pouvez-vous remplacer la clé key-004 ?", []string{"rotate:key-004:"}},
		{"spanish", "Por favor revoquen la clave key-009 del entorno de pruebas.", []string{"revoke:key-009:sandbox"}},
		{"no verb", "We use key-001 in production.", nil},
		{"verb without key", "Please delete my previous email.", nil},
		{"keydesk words quoted back", "We received your request for Buildmarkets API keys. Revoke key-001", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range keyAsks(strings.Split(tc.text, "\n")) {
				got = append(got, fmt.Sprintf("%s:%s:%s", a.Kind, a.What(), a.Environment))
				if a.Sentence == "" || len(a.Sentence) > 4*maxReasonText {
					t.Errorf("sentence %q", a.Sentence)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("asks %q, want %q", got, tc.want)
			}
		})
	}
}

// TestKeyAsksBounded: however many keys an email names, at most
// MaxKeyAsks are read.
func TestKeyAsksBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("Please revoke")
	for i := range 500 {
		fmt.Fprintf(&b, " key-%03d", i)
	}
	if n := len(keyAsks([]string{b.String()})); n != MaxKeyAsks {
		t.Errorf("%d asks, want %d", n, MaxKeyAsks)
	}
}

// TestConfirms reads a rotation's confirmation, and what is not one.
func TestConfirms(t *testing.T) {
	for text, want := range map[string]bool{
		"Done.":                              true,
		"Confirmed, thanks!":                 true,
		"We switched: the new key is in use": true,
		"Erledigt, danke":                    true,
		"C'est fait.":                        true,
		"Listo":                              true,
		"Not done yet, give us a week.":      false,
		"Can you confirm the key was sent?":  false,
		"Thanks for the key":                 false,
	} {
		if got := confirms([]string{text}); got != want {
			t.Errorf("confirms(%q) = %v, want %v", text, got, want)
		}
	}
}
