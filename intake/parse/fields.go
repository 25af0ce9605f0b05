package parse

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// field is one of the three things a request names.
type field int

const (
	fieldNone field = iota
	fieldEnv
	fieldScopes
	fieldLabel
)

// draft is one request as written, before validation.
type draft struct {
	env, label       string
	scopes           []string // words
	has              [4]bool
	scopeWordsCapped bool
}

func (d *draft) any() bool { return d.has[fieldEnv] || d.has[fieldScopes] || d.has[fieldLabel] }

var (
	// A heading that starts another request: "Request 2", "Key #3:", "2nd key".
	headingRE = regexp.MustCompile(`(?i)^\W*((request|key|api key)\s*#?\s*\d{1,2}|(first|second|third|fourth|fifth|\d(st|nd|rd|th))\s+(request|key))\b`)
	bulletRE  = regexp.MustCompile(`^\s*(?:` + bulletPattern + `)\s*`)
	// asciiBorder is a pipe or ASCII table's rule: "+----+----+", "|---|".
	asciiBorder = regexp.MustCompile(`^[+|]?[-=+|: ]*[-=]{3,}[-=+|: ]*$`)
	scopeishRE  = regexp.MustCompile(`(?i)^[a-z]+\s*:\s*[a-z]+\b`)
	parenRE     = regexp.MustCompile(`\([^)]*\)|\[[^\]]*\]`)
)

// fieldOf maps a field's name, in any language of the table, to the field.
func fieldOf(name string) field {
	return fieldWords[strings.Join(strings.Fields(strings.ToLower(name)), " ")]
}

// tableCells splits a table row ("a | b | c", "| a | b |") into cells.
func tableCells(l string) []string {
	t := strings.TrimSpace(l)
	if !strings.Contains(t, "|") {
		return nil
	}
	t = strings.TrimSuffix(strings.TrimPrefix(t, "|"), "|")
	cells := strings.Split(t, "|")
	for i, c := range cells {
		cells[i] = strings.TrimSpace(strings.Trim(strings.TrimSpace(c), "*_"))
	}
	return cells
}

// readDrafts reads the requests in the sender's own lines.
func readDrafts(lines []string, lim Limits) []*draft {
	d := &draftReader{lim: lim, cur: &draft{}}
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if cells := tableCells(t); len(cells) >= 2 {
			if d.tableRow(t, cells) {
				continue
			}
		} else if t != "---" && isBorder(t) {
			continue // the rule under or around a table's header row
		} else {
			d.cols = nil
		}
		if m := matchField(l); m != nil {
			f := d.set(m)
			d.inScopes = f == fieldScopes && (strings.TrimSpace(m[2]) == "" || strings.HasSuffix(strings.TrimSpace(m[2]), ","))
			continue
		}
		if t == "---" || headingRE.MatchString(t) {
			d.flush()
			d.inScopes = false
			continue
		}
		if d.inScopes {
			d.scopeLine(l, t)
		}
	}
	d.flush()
	return d.out
}

// draftReader is readDrafts' state between lines.
type draftReader struct {
	lim      Limits
	out      []*draft
	cur      *draft
	cols     []field // the columns of a table header row, while in a table
	inScopes bool    // in the list under a "Scopes:" line
}

// flush ends the current draft.
func (d *draftReader) flush() {
	if d.cur.any() {
		d.out = append(d.out, d.cur)
	}
	d.cur = &draft{}
}

// set stores a field line's value; a field the draft has already starts
// the next draft.
func (d *draftReader) set(m []string) field {
	f := fieldOf(m[1])
	if d.cur.has[f] {
		d.flush()
	}
	d.cur.set(f, m[2], d.lim)
	return f
}

// tableRow reads a row of table cells, and reports whether it was one
// (a border, a header, a key-value row or a row under a header).
func (d *draftReader) tableRow(t string, cells []string) bool {
	if isBorder(t) {
		return true
	}
	if hdr := tableHeader(cells); hdr != nil {
		d.flush()
		d.cols, d.inScopes = hdr, false
		return true
	}
	if d.cols == nil && len(cells) == 2 {
		// "| Environment | Production |": a key-value row.
		if m := matchField(cells[0] + ": " + cells[1]); m != nil {
			d.set(m)
			return true
		}
	}
	if d.cols == nil {
		return false
	}
	d.flush()
	for i, c := range cells {
		if i < len(d.cols) && d.cols[i] != fieldNone {
			d.cur.set(d.cols[i], c, d.lim)
		}
	}
	d.flush()
	return true
}

// scopeLine reads a line of the list under "Scopes:", which ends at a
// blank line after an item or at a line that is no item.
func (d *draftReader) scopeLine(l, t string) {
	switch {
	case t == "" && len(d.cur.scopes) == 0:
		// a blank line between "Scopes:" and its list
	case t == "":
		d.inScopes = false
	case bulletRE.MatchString(l) || scopeishRE.MatchString(t):
		item := bulletRE.ReplaceAllString(l, "")
		// "- accounts:read – balances and positions": the scope is before
		// the dash; the rest describes it.
		for _, sep := range []string{" – ", " — ", " - ", " -- "} {
			item, _, _ = strings.Cut(item, sep)
		}
		d.cur.addScopes(item, d.lim)
	default:
		d.inScopes = false
	}
}

// tableHeader returns the columns of a header row naming at least two fields.
func tableHeader(cells []string) []field {
	cols := make([]field, len(cells))
	n := 0
	for i, c := range cells {
		if m := matchField(c + ":"); m != nil && strings.TrimSpace(m[2]) == "" {
			cols[i] = fieldOf(m[1])
			n++
		}
	}
	if n < 2 {
		return nil
	}
	return cols
}

func (d *draft) set(f field, v string, lim Limits) {
	d.has[f] = true
	switch f {
	case fieldEnv:
		d.env = v
	case fieldLabel:
		d.label = v
	case fieldScopes:
		d.addScopes(v, lim)
	}
}

var scopeFiller = map[string]bool{"and": true, "&": true, "plus": true, "only": true, "please": true, "scope": true, "scopes": true, "+": true}

var scopeSplitter = strings.NewReplacer(",", " ", ";", " ", "/", " ", "&", " ", "`", " ", "\"", " ", "“", " ", "”", " ")

// addScopes splits a Scopes value into words, rejoining "accounts : read"
// and "accounts read" into one scope word.
func (d *draft) addScopes(v string, lim Limits) {
	v = parenRE.ReplaceAllString(v, " ")
	words := strings.Fields(scopeSplitter.Replace(v))
	var ws []string
	for i := 0; i < len(words); i++ {
		w := strings.Trim(words[i], "*_'.")
		if w == "" || scopeFiller[strings.ToLower(w)] {
			continue
		}
		if i+1 < len(words) {
			next := strings.ToLower(strings.Trim(words[i+1], "*_'.,"))
			verb := strings.TrimPrefix(next, ":")
			switch {
			case strings.HasSuffix(w, ":") && isVerb(verb):
				w += verb
				i++
			case !strings.Contains(w, ":") && (strings.HasPrefix(next, ":") || isVerb(next)) && isVerb(verb):
				w += ":" + verb
				i++
			case !strings.Contains(w, ":") && next == ":" && i+2 < len(words):
				w += ":" + strings.Trim(words[i+2], "*_'.")
				i += 2
			}
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if len(d.scopes) >= lim.ScopeWords {
			d.scopeWordsCapped = true
			return
		}
		d.scopes = append(d.scopes, w)
	}
}

func isVerb(s string) bool { return s == "read" || s == "write" || s == "manage" }

var envSplitter = strings.NewReplacer(",", " ", "/", " ", ";", " ")

// envFiller are the words around an environment's name: "the production
// environment", "entorno de producción", "die Produktionsumgebung".
var envFiller = map[string]bool{"and": true, "&": true, "or": true, "both": true, "please": true, "only": true, "the": true, "+": true,
	"de": true, "del": true, "la": true, "le": true, "el": true, "die": true, "das": true, "der": true, "di": true, "da": true, "do": true, "het": true, "de la": true, "und": true, "et": true, "y": true, "e": true, "en": true}

// parsedRequest is one validated request (one environment).
type parsedRequest struct {
	env     keydesk.Environment
	scopes  []keydesk.Scope
	label   string
	reasons []keydesk.Reason
	has     [4]bool // which fields the email wrote (draft.has)
}

// validate turns a draft into one request per environment it names, each
// with the reasons it cannot be used as written.
func validate(d *draft, lim Limits) []parsedRequest {
	var reasons []keydesk.Reason
	var envs []keydesk.Environment
	if !d.has[fieldEnv] || strings.TrimSpace(strings.Trim(d.env, "*_`'\".")) == "" {
		reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonMissingEnvironment,
			Message:    "the request does not say which environment the key is for",
			Suggestion: "add a line such as \"Environment: sandbox\" (or production)"})
	} else {
		v := envPhrases.Replace(strings.ToLower(parenRE.ReplaceAllString(d.env, " ")))
		for _, w := range strings.Fields(envSplitter.Replace(v)) {
			w = strings.Trim(w, "*_`'\".:")
			if envFiller[w] || isFieldName(w) {
				continue
			}
			e, err := keydesk.ParseEnvironment(envWord(w))
			if err != nil {
				reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonInvalidEnvironment,
					Message:    fmt.Sprintf("%q is not an environment", keydesk.SafeLine(w, 40)),
					Suggestion: "write \"Environment: sandbox\" (testing) or \"Environment: production\" (live)"})
				continue
			}
			if !containsEnv(envs, e) {
				envs = append(envs, e)
			}
		}
		if len(envs) == 0 && len(reasons) == 0 {
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonMissingEnvironment,
				Message:    "the Environment line names no environment",
				Suggestion: "write \"Environment: sandbox\" or \"Environment: production\""})
		}
	}
	scopes, errs := keydesk.ParseScopes(d.scopes)
	for _, err := range errs {
		var ue *keydesk.UnknownScopeError
		if errors.As(err, &ue) {
			r := keydesk.Reason{Code: keydesk.ReasonUnknownScope, Message: fmt.Sprintf("%q is not a scope", keydesk.SafeLine(ue.Input, 40))}
			if ue.Suggestion != "" {
				r.Suggestion = "did you mean " + string(ue.Suggestion) + "?"
			} else {
				r.Suggestion = "the scopes are " + scopeList()
			}
			reasons = append(reasons, r)
		}
	}
	if d.scopeWordsCapped {
		reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonUnknownScope,
			Message:    fmt.Sprintf("the Scopes line has more than %d words", lim.ScopeWords),
			Suggestion: "list only the scopes the key needs, separated by commas: " + scopeList()})
	}
	if len(scopes) == 0 && len(errs) == 0 && !d.scopeWordsCapped {
		reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonMissingScopes,
			Message:    "the request lists no scopes",
			Suggestion: "add a line such as \"Scopes: accounts:read, trading:read\" with only the scopes the key needs"})
	}
	label := ""
	if !d.has[fieldLabel] || strings.TrimSpace(d.label) == "" {
		reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonMissingLabel,
			Message:    "the request has no label for the key",
			Suggestion: "add a line such as \"Label: sandbox-backend\""})
	} else {
		l := strings.TrimSuffix(strings.TrimSpace(d.label), ".")
		l = strings.Trim(l, "`\"'“”")
		var err error
		label, err = keydesk.ParseLabel(l)
		if err != nil {
			reasons = append(reasons, keydesk.Reason{Code: keydesk.ReasonInvalidLabel,
				Message:    keydesk.SafeLine(err.Error(), 200),
				Suggestion: fmt.Sprintf("use one line of at most %d characters, such as \"Label: sandbox-backend\"", keydesk.MaxLabelLength)})
		}
	}
	if len(envs) == 0 {
		return []parsedRequest{{scopes: scopes, label: label, reasons: reasons, has: d.has}}
	}
	out := make([]parsedRequest, 0, len(envs))
	for _, e := range envs {
		out = append(out, parsedRequest{env: e, scopes: scopes, label: label, reasons: reasons, has: d.has})
	}
	return out
}

func containsEnv(es []keydesk.Environment, e keydesk.Environment) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}

func scopeList() string {
	s := make([]string, len(keydesk.Scopes))
	for i, sc := range keydesk.Scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ", ")
}

// matchField reads a field line: an optional bullet, optional emphasis,
// a field's name in any language of the table, a separator and the value.
// It returns the line, the name and the value, or nil. The names are
// tried by their first letter, longest first; one regular expression over
// every name would cost more than the rest of the parse.
func matchField(l string) []string {
	t := l
	if mayBeBullet(t) {
		if loc := bulletRE.FindStringIndex(t); loc != nil {
			t = t[loc[1]:]
		}
	}
	t = strings.TrimLeft(t, " *_")
	r, _ := utf8.DecodeRuneInString(t)
	for _, n := range fieldNames[unicode.ToLower(r)] {
		p := runePrefix(t, utf8.RuneCountInString(n))
		if !strings.EqualFold(p, n) {
			continue
		}
		if m := fieldSepRE.FindStringSubmatch(t[len(p):]); m != nil {
			return []string{l, p, m[1]}
		}
	}
	return nil
}

// runePrefix is the first n runes of s (all of s when it has fewer).
func runePrefix(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// isBorder reports whether a trimmed line is a table's rule.
func isBorder(t string) bool {
	return (strings.Contains(t, "---") || strings.Contains(t, "===")) && asciiBorder.MatchString(t)
}

// mayBeBullet is a cheap test before bulletRE: the line's first
// character could start a list marker.
func mayBeBullet(l string) bool {
	r, _ := utf8.DecodeRuneInString(strings.TrimLeft(l, " "))
	return strings.ContainsRune("-*•·+▪▫◦‣○●■□►▶➢➤✓✔–—(0123456789abcdefgh", r)
}
