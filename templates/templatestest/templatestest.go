// Package templatestest checks an email to a partner against the
// conventions every one of them keeps (docs/delivery.md, "Emails to
// partners"), for the tests of the template set and of each builder.
package templatestest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk/templates"
)

// Reply and ReplyPlural are the sentence just before the sign-off, for an
// email about one request and about several.
const (
	Reply       = "For anything about this request, reply to this email."
	ReplyPlural = "For anything about these requests, reply to this email."
)

// SignOff ends every email to a partner: the company's, never the tool's.
const SignOff = "Kind regards,\nBuildmarkets Partner Support\n"

// Problems lists how body breaks the conventions: a line wider than
// templates.Width columns (unless it is one word that cannot be broken),
// an ending other than the reply sentence, a blank line and SignOff, or
// the tool's name anywhere. None: it keeps them all.
func Problems(body string) []string {
	var p []string
	for i, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if c := templates.Columns(l); c > templates.Width && strings.ContainsRune(strings.TrimSpace(l), ' ') {
			p = append(p, fmt.Sprintf("line %d is %d columns, more than %d: %q", i+1, c, templates.Width, l))
		}
	}
	if !strings.HasSuffix(body, "\n"+Reply+"\n\n"+SignOff) && !strings.HasSuffix(body, "\n"+ReplyPlural+"\n\n"+SignOff) {
		p = append(p, fmt.Sprintf("it does not end with %q, a blank line and the sign-off %q", Reply, SignOff))
	}
	if strings.Contains(strings.ToLower(body), "keydesk") {
		p = append(p, "it names the tool (keydesk)")
	}
	return p
}

// Check fails t for each of body's Problems.
func Check(t testing.TB, body string) {
	t.Helper()
	for _, p := range Problems(body) {
		t.Errorf("email to a partner: %s\n%s", p, body)
	}
}
