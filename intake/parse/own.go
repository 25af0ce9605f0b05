package parse

import (
	"regexp"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// keydesk's own emails name the three fields too: the acknowledgement
// repeats what it understood, the rejection shows an example block. Quoted
// back below a reply in a client or language keydesk does not know, they
// would read as a request. Their fixed sentences are recognised wherever
// they stand, with or without "> ", and end the partner's own text: what
// follows is history. TestOwnSentencesInTemplates keeps this list in step
// with templates/mail.
var ownSentences = []string{
	"we could not accept your request for buildmarkets api keys",
	"we could not accept your request about your buildmarkets api keys",
	"the request about buildmarkets api keys from",
	"the request for buildmarkets api keys from",
	"we received your request for buildmarkets api keys",
	"we received the request for buildmarkets api keys from",
	"this is what we understood:",
	"please send the request again as a new email, with one block like this for",
	"each key (one environment per block):",
	"once that is fixed, please send the request again as a new email.",
	"if something above is not what you meant, reply to this email to correct",
	"we received your correction to request",
	"environment  sandbox (testing) or production (live)",
	"label        a name for the key pair, one line, at most",
	"scopes       only those the integration needs, separated by commas:",
	"your request for a buildmarkets api key was reviewed by our support team",
}

// closingSentences end every partner-facing email keydesk writes, by the
// house convention for its mail.
var closingSentences = []string{
	"for anything about this request, reply to this email.",
	"for anything about these requests, reply to this email.",
}

// ownLineRE are keydesk's lines that carry a request ID: the
// acknowledgement's "Request:     KR-…" and "For reference: KR-…".
var ownLineRE = regexp.MustCompile(`(?i)^(request:\s+|for reference:\s+)KR-\d{8}-[0-9A-Z]{4}\b|^status:\s+(approved: the key is created|waiting for review, because)`)

// ownStarts are the first four letters of keydesk's lines, lower-case.
var ownStarts = func() map[string]bool {
	m := map[string]bool{"requ": true, "for ": true, "stat": true}
	for _, s := range append(append([]string(nil), ownSentences...), closingSentences...) {
		m[s[:4]] = true
	}
	return m
}()

// ownWords reports whether a trimmed line is one of keydesk's fixed
// sentences.
func ownWords(t string) bool {
	t = strings.TrimSpace(strings.TrimLeft(t, "> "))
	if len(t) < 12 || len(t) > 200 {
		return false
	}
	if !ownStarts[strings.ToLower(t[:4])] {
		return false // a cheap test first: most lines start otherwise
	}
	if ownLineRE.MatchString(t) {
		return true
	}
	lt := strings.ToLower(t)
	for _, s := range ownSentences {
		if strings.HasPrefix(lt, s) {
			return true
		}
	}
	for _, s := range closingSentences {
		if strings.HasPrefix(lt, s) {
			return true
		}
	}
	return false
}

// ownExample is the example block of keydesk's rejection
// (intake/reply.Example). A request that is exactly this example is held
// for a person: it is more likely the rejection quoted back than a key
// the partner wants.
var ownExample = struct {
	env    keydesk.Environment
	scopes []keydesk.Scope
	label  string
}{keydesk.Sandbox, []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead}, "sandbox-backend"}

func isOwnExample(pr parsedRequest) bool {
	if pr.env != ownExample.env || pr.label != ownExample.label || len(pr.scopes) != len(ownExample.scopes) {
		return false
	}
	for _, s := range pr.scopes {
		if !slices.Contains(ownExample.scopes, s) {
			return false
		}
	}
	return true
}
