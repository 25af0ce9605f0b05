package parse

import (
	"regexp"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// A suggestion is what an email's prose names when it has no field lines:
// "a production key with trading:read and marketdata:read, label it
// acme-md". It is never a request: the request stays in review with its
// fields empty, and the suggestion waits on it as a Proposal that a person
// accepts or corrects (flag from-prose).
type suggestion struct {
	env    keydesk.Environment
	scopes []keydesk.Scope
	label  string
}

// String is the suggestion as the review item shows it.
func (s suggestion) String() string {
	return "suggested: " + string(s.env) + " · " + keydesk.JoinScopes(s.scopes) + " · " + s.label
}

// proseBytes bounds the text read for a suggestion: the request is at the
// top of the sender's own text.
const proseBytes = 4 << 10

var (
	// proseClauseRE ends a clause: a negation reaches no further than it.
	proseClauseRE = regexp.MustCompile(`(?i)[,;.!?\n]\s|[,;!?\n]|\s(?:but|only|just|aber|nur|sondern|mais|seulement|pero|solo|sólo|sino|ma|soltanto|mas|apenas|maar|alleen|men|bara|ale|tylko)\s`)
	// proseNegRE are the words that negate what follows them in a clause.
	proseNegRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(?:not|no|never|without|nor|instead of|rather than|[a-z]+n['’]t|nicht|kein|keine|keinen|ohne|statt|anstatt|pas|sans|ni|plutôt que|au lieu d[eu']|sin|nunca|en vez de|en lugar de|non|senza|invece d[ie]|não|nao|sem|em vez de|niet|geen|zonder|in plaats van|inte|ingen|utan|istället för|nie|bez|zamiast)(?:[^\p{L}]|$)`)
	// proseScopeRE is a scope as the API writes it.
	proseScopeRE = regexp.MustCompile(`(?i)\b([a-z]+)\s?:\s?(read|write|manage)\b`)
	// proseEnvRE are the words for an environment, in the languages of
	// field names; "test" and "live" count only before "key", and a word
	// inside a name (acme-prod-md) is no environment.
	proseEnvRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}\-_./])(sandbox|production|prod|produktion|produktiv|produktivumgebung|produktionsumgebung|testumgebung|bac à sable|producción|produccion|entorno de pruebas|produzione|produção|producao|productie|produkcja|produkcyjn[a-z]*|piaskownic[a-z]*|(?:test|testing|live)(?:-|\s)(?:api(?:-|\s))?key)(?:[^\p{L}\-_/]|$)`)
	// proseLabelRE introduces a label: "label it X", "called X",
	// "Bezeichnung X", "libellé X", "etiqueta X"…
	proseLabelRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(?:label(?:led|ed)?|labelled as|call(?:ed)?|named|bezeichnung|beschriftung|namens|nenne (?:ihn|ihm|es)|libellé|étiquette|intitulée?|nommée?|appelée?|appelez-la|appelez-le|etiqueta|llamad[ao]|llámal[ao]|etichetta|chiamat[ao]|chiamal[ao]|rótulo|rotulo|chamad[ao]|genaamd|noem (?:hem|het)|etikett|nazwa|nazwij (?:go|ją))(?:\s*[:=]\s*|\s+)`)
	// proseLabelTokRE is the label itself: quoted, or one word.
	proseLabelTokRE = regexp.MustCompile(`^(?:["“”'‘’«»]\s*([^"“”'‘’«»\n]{2,64}?)\s*["“”'‘’«»]|([\p{L}\p{N}][\p{L}\p{N}._/\-]{1,63}))`)
)

// proseFiller are the words between a label's cue and the label.
var proseFiller = map[string]bool{
	"it": true, "as": true, "is": true, "be": true, "to": true, "the": true, "key": true, "this": true, "them": true, "should": true, "will": true, "with": true,
	"soll": true, "sein": true, "lauten": true, "ist": true, "der": true, "die": true, "das": true, "den": true, "mit": true, "schlüssel": true,
	"la": true, "le": true, "clé": true, "cle": true, "de": true, "el": true, "lo": true, "il": true, "o": true, "a": true, "het": true, "hem": true, "sera": true, "será": true, "sarà": true, "como": true, "comme": true, "come": true, "als": true,
}

// proseNotLabel are words a cue can be followed by that are never a label.
var proseNotLabel = map[string]bool{"for": true, "and": true, "with": true, "please": true, "thanks": true, "thank": true, "if": true, "by": true, "of": true, "we": true, "you": true, "our": true, "me": true, "us": true, "him": true, "her": true}

// keydeskMarkers are lines of keydesk's own emails: text that holds them is
// keydesk's words quoted back, never a partner's prose.
var keydeskMarkers = []string{"buildmarkets api key desk", "buildmarkets partner support", "this is what we understood", "we could not accept your request", "we received your request for buildmarkets"}

// holdsKeydeskMarker reports whether text holds one of keydeskMarkers.
func holdsKeydeskMarker(text string) bool {
	low := strings.ToLower(text)
	for _, m := range keydeskMarkers {
		if strings.Contains(low, m) {
			return true
		}
	}
	return false
}

// proseSuggestion reads a suggestion from the sender's own lines, or
// reports none. All three must be named: one environment (a second one
// makes it unclear which), valid scopes and a label; what a clause
// negates ("we do not need production") is not named.
func proseSuggestion(lines []string) (suggestion, bool) {
	// Lines wrapped by the mail program are one sentence again; an empty
	// line ends it.
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if b.Len()+len(l) > proseBytes {
			break
		}
		if l == "" {
			b.WriteByte('\n')
			continue
		}
		b.WriteString(l)
		b.WriteByte(' ')
	}
	text := b.String()
	if holdsKeydeskMarker(text) {
		return suggestion{}, false
	}
	var s suggestion
	var envs []keydesk.Environment
	for _, c := range clauses(text) {
		for _, m := range proseEnvRE.FindAllStringSubmatchIndex(c, -1) {
			if negated(c, m[2]) {
				continue
			}
			if e := proseEnv(c[m[2]:m[3]]); !slices.Contains(envs, e) {
				envs = append(envs, e)
			}
		}
		for _, m := range proseScopeRE.FindAllStringSubmatchIndex(c, -1) {
			sc := keydesk.Scope(strings.ToLower(c[m[2]:m[3]]) + ":" + strings.ToLower(c[m[4]:m[5]]))
			if sc.Valid() && !negated(c, m[0]) && !slices.Contains(s.scopes, sc) {
				s.scopes = append(s.scopes, sc)
			}
		}
	}
	s.label = proseLabel(text)
	if len(envs) != 1 || len(s.scopes) == 0 || s.label == "" {
		return suggestion{}, false
	}
	s.env = envs[0]
	slices.SortFunc(s.scopes, func(a, b keydesk.Scope) int { return slices.Index(keydesk.Scopes, a) - slices.Index(keydesk.Scopes, b) })
	return s, true
}

// clauses splits text where a negation stops reaching.
func clauses(text string) []string {
	var out []string
	last := 0
	for _, m := range proseClauseRE.FindAllStringIndex(text, -1) {
		out = append(out, text[last:m[0]])
		last = m[1]
	}
	return append(out, text[last:])
}

// negated reports whether a negation comes before position i of clause c.
func negated(c string, i int) bool {
	return proseNegRE.MatchString(c[:i])
}

func proseEnv(w string) keydesk.Environment {
	w = strings.ToLower(w)
	switch {
	case strings.HasPrefix(w, "sandbox"), strings.HasPrefix(w, "test"), strings.HasPrefix(w, "bac"),
		strings.HasPrefix(w, "entorno"), strings.HasPrefix(w, "piaskownic"):
		return keydesk.Sandbox
	}
	return keydesk.Production
}

// proseLabel finds the first label a cue introduces.
func proseLabel(text string) string {
	for _, m := range proseLabelRE.FindAllStringIndex(text, -1) {
		rest := text[m[1]:]
		for range 3 { // skip "it", "as", "the key"…
			w, after, _ := strings.Cut(rest, " ")
			if !proseFiller[strings.ToLower(strings.Trim(w, ":=,"))] {
				break
			}
			rest = strings.TrimLeft(after, " :=")
		}
		sm := proseLabelTokRE.FindStringSubmatch(rest)
		if sm == nil {
			continue
		}
		l := sm[1] + sm[2]
		l = strings.TrimRight(l, ".,;:!?-_/")
		if len([]rune(l)) < 2 || proseNotLabel[strings.ToLower(l)] || proseEnvRE.MatchString(l) || proseScopeRE.MatchString(l) {
			continue
		}
		if label, err := keydesk.ParseLabel(l); err == nil {
			return label
		}
	}
	return ""
}
