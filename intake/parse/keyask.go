package parse

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// A KeyAsk is one existing key the sender's own text asks to revoke or
// rotate: "please revoke key-007", "rotate the key labelled
// prod-trading-engine", "bitte widerrufen Sie bm_key_abc123". The parser
// only reads what is named; intake resolves it against the partner's key
// inventory, which the parser does not know.
//
// Only the sender's own new text is read (never quoted history, never
// keydesk's own words quoted back), so a reply that quotes "please
// revoke key-001" asks for nothing.
type KeyAsk struct {
	Kind keydesk.RequestKind // revoke or rotate
	// What names the key: the API's key ID (key-007), the public half
	// (bm_key_…), or a label. Exactly one of KeyID, APIKey, Label is set,
	// unless All.
	KeyID  string
	APIKey string
	Label  string
	// Bare: Label is the word that follows the verb ("rotate
	// prod-trading-engine"), not an explicit "the key labelled X": it
	// names a key only when it is exactly the label of a live key.
	Bare bool
	// All: the sender asks to revoke all their keys. A person handles it;
	// keydesk never revokes keys in bulk.
	All bool
	// Environment is the one the sentence names; "" when it names none.
	Environment keydesk.Environment
	// Sentence is the partner's sentence, inert and bounded: the reason of
	// the request.
	Sentence string
	// Index is the position of the ask's request in Result.Requests.
	Index int
}

// What is the key as the partner named it, for replies and warnings.
func (a KeyAsk) What() string {
	switch {
	case a.All:
		return "all keys"
	case a.KeyID != "":
		return a.KeyID
	case a.APIKey != "":
		return a.APIKey
	}
	return "the key labelled " + a.Label
}

// Bounds of the key asks of one email.
const (
	// MaxKeyAsks bounds the keys one email may ask to revoke or rotate.
	MaxKeyAsks = 10
	// keyAskBytes bounds the own text read for key asks: they are at the
	// top of what the sender wrote.
	keyAskBytes = 8 << 10
	// maxReasonText bounds the sentence kept as a request's Reason.
	maxReasonText = 300
)

var (
	// revokeVerbRE and rotateVerbRE are the ways partners ask, in English,
	// German, French and Spanish.
	revokeVerbRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(revoke|revoking|revocation of|disable|deactivate|kill|delete|remove|invalidate|widerrufen|widerrufe|widerruf|sperren|sperre|sperrt|deaktivieren|deaktiviere|deaktiviert|löschen|lösche|löscht|entfernen|révoquer|révoquez|révoque|désactiver|désactivez|désactive|supprimer|supprimez|supprime|invalider|revocar|revoque|revoquen|revocad|desactivar|desactive|desactiven|eliminar|elimine|eliminen|borrar|borre|dar de baja)(?:[^\p{L}]|$)`)
	rotateVerbRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(rotate|rotating|rotation of|replace|replacing|roll|roll over|rollover|rotieren|rotiere|rotiert|ersetzen|ersetze|ersetzt|erneuern|erneuere|austauschen|tauschen|faire tourner|renouveler|renouvelez|renouvelle|remplacer|remplacez|remplace|rotation de|rotar|rote|roten|reemplazar|reemplace|reemplacen|renovar|renueve|sustituir|sustituya)(?:[^\p{L}]|$)`)
	// keyWordRE is a word for a key: a sentence with a verb and one of
	// these, but no key named, asks about a key keydesk cannot tell.
	keyWordRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(keys?|api[- ]keys?|schlüssel|api-schlüssel|clés?|cles?|claves?|llaves?)(?:[^\p{L}]|$)`)
	// allRE: "all our keys", "every key", "alle Schlüssel", "toutes nos
	// clés", "todas las claves".
	allRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(all|every|each|alle|sämtliche|tous|toutes|todas|todos)(?:[^\p{L}]|$)`)
	// keyIDRE is a key ID as the API writes it.
	keyIDRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}\p{N}_\-])(key-[0-9]{1,12})(?:[^\p{L}\p{N}_\-]|$)`)
	// apiKeyRE is the public half of a key pair.
	apiKeyRE = regexp.MustCompile(`(?:^|[^\p{L}\p{N}_])(bm_key_[A-Za-z0-9_]{3,96})(?:[^\p{L}\p{N}_]|$)`)
	// keyLabelRE introduces a label explicitly: "the key labelled X",
	// "label X", "Bezeichnung X", "libellé X", "etiqueta X".
	keyLabelRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(?:key (?:labell?ed|named|called)|labell?ed|label|named|called|mit (?:der )?bezeichnung|bezeichnung|namens|libellée?|étiquetée?|étiquette|nommée?|appelée?|etiquetada|etiqueta|llamada|con (?:la )?etiqueta)(?:\s*[:=]\s*|\s+)`)
	// bareTokRE is one word that may be a label: "rotate prod-engine".
	bareTokRE = regexp.MustCompile(`^["“”'‘’«]?([\p{L}\p{N}][\p{L}\p{N}._/\-]{1,63})["“”'‘’»]?`)
	// sentenceRE ends a sentence: the period of "key-007." too.
	sentenceRE = regexp.MustCompile(`[.!?;]+(?:\s|$)|\n`)
)

// bareFiller are the words between a verb and the key it names.
var bareFiller = map[string]bool{
	"the": true, "our": true, "my": true, "this": true, "that": true, "api": true, "key": true, "keys": true, "old": true, "existing": true, "current": true, "please": true,
	"den": true, "die": true, "das": true, "unseren": true, "unsere": true, "meinen": true, "schlüssel": true, "bitte": true,
	"la": true, "le": true, "les": true, "notre": true, "nos": true, "ma": true, "mon": true, "clé": true, "cle": true,
	"el": true, "los": true, "las": true, "nuestra": true, "nuestro": true, "mi": true, "clave": true, "llave": true,
}

// bareNot are words after a verb that never name a key.
var bareNot = map[string]bool{"it": true, "them": true, "all": true, "every": true, "both": true, "and": true, "for": true, "with": true, "from": true, "in": true,
	"production": true, "sandbox": true, "prod": true, "now": true, "asap": true, "immediately": true, "access": true, "us": true, "me": true, "sie": true, "es": true, "ihn": true}

// keyAsks reads the revoke and rotate asks of the sender's own lines,
// at most MaxKeyAsks.
func keyAsks(lines []string) []KeyAsk {
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if b.Len()+len(l) > keyAskBytes {
			break
		}
		if ownWords(l) {
			break
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	text := b.String()
	if holdsKeydeskMarker(text) {
		return nil
	}
	var out []KeyAsk
	last := 0
	ends := append(sentenceRE.FindAllStringIndex(text, -1), []int{len(text), len(text)})
	for _, e := range ends {
		s := text[last:e[0]]
		last = e[1]
		for _, a := range sentenceAsks(s) {
			if len(out) == MaxKeyAsks {
				return out
			}
			if !slices.ContainsFunc(out, func(o KeyAsk) bool { return o.same(a) }) {
				out = append(out, a)
			}
		}
	}
	return out
}

func (a KeyAsk) same(b KeyAsk) bool {
	return a.Kind == b.Kind && a.KeyID == b.KeyID && a.APIKey == b.APIKey && strings.EqualFold(a.Label, b.Label) && a.All == b.All && a.Environment == b.Environment
}

// verb is one asking verb in a sentence.
type verb struct {
	kind       keydesk.RequestKind
	start, end int
	negated    bool // "do not revoke": the keys it governs are not asked for
}

// sentenceAsks reads the asks of one sentence: each key it names belongs
// to the nearest asking verb before it (or, without one, the first after).
func sentenceAsks(s string) []KeyAsk {
	all := findVerbs(s)
	verbs := slices.DeleteFunc(slices.Clone(all), func(v verb) bool { return v.negated })
	if len(verbs) == 0 {
		return nil
	}
	env := sentenceEnv(s)
	reason := keydesk.SafeLine(strings.TrimSpace(s), maxReasonText)
	// The verb that governs a key at pos: the nearest before it, else
	// the first after it; a negated one asks for nothing.
	kindAt := func(pos int) (keydesk.RequestKind, bool) {
		var gov *verb
		for i := range all {
			if all[i].start <= pos {
				gov = &all[i]
			}
		}
		if gov == nil {
			return verbs[0].kind, true
		}
		return gov.kind, !gov.negated
	}
	var out []KeyAsk
	add := func(pos int, a KeyAsk) {
		k, ok := kindAt(pos)
		if !ok {
			return
		}
		a.Kind, a.Environment, a.Sentence = k, env, reason
		out = append(out, a)
	}
	for _, m := range keyIDRE.FindAllStringSubmatchIndex(s, -1) {
		add(m[2], KeyAsk{KeyID: strings.ToLower(s[m[2]:m[3]])})
	}
	for _, m := range apiKeyRE.FindAllStringSubmatchIndex(s, -1) {
		add(m[2], KeyAsk{APIKey: s[m[2]:m[3]]})
	}
	byID := len(out) > 0
	for _, m := range keyLabelRE.FindAllStringIndex(s, -1) {
		if byID {
			// A sentence that names a key ID names its keys by ID; a
			// label in it is more likely the new key's ("revoke key-001
			// and make one labelled x").
			break
		}
		if l := labelAt(s[m[1]:]); l != "" && !keyIDRE.MatchString(" "+l+" ") {
			add(m[0], KeyAsk{Label: l})
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, v := range verbs {
		clause := s[v.start:]
		if allRE.MatchString(clause) && keyWordRE.MatchString(clause) && v.kind == keydesk.KindRevoke {
			add(v.start, KeyAsk{All: true})
			return out
		}
	}
	for _, v := range verbs {
		if l := bareAfter(s[v.end:]); l != "" {
			add(v.start, KeyAsk{Label: l, Bare: true})
		}
	}
	return out
}

// findVerbs lists the asking verbs of s, each marked negated when a
// negation before it in its clause takes it back ("do not revoke key-001").
func findVerbs(s string) []verb {
	var vs []verb
	for _, k := range []struct {
		kind keydesk.RequestKind
		re   *regexp.Regexp
	}{{keydesk.KindRevoke, revokeVerbRE}, {keydesk.KindRotate, rotateVerbRE}} {
		for _, m := range k.re.FindAllStringSubmatchIndex(s, -1) {
			vs = append(vs, verb{k.kind, m[2], m[3], negatedVerb(s, m[2])})
		}
	}
	slices.SortFunc(vs, func(a, b verb) int { return a.start - b.start })
	return vs
}

// negatedVerb reports whether a negation stands before position i in its
// clause.
func negatedVerb(s string, i int) bool {
	start := 0
	for _, m := range proseClauseRE.FindAllStringIndex(s[:i], -1) {
		start = m[1]
	}
	return proseNegRE.MatchString(s[start:i])
}

// sentenceEnv is the environment a sentence names, or "" for none or two.
func sentenceEnv(s string) keydesk.Environment {
	var env keydesk.Environment
	for _, m := range proseEnvRE.FindAllStringSubmatchIndex(s, -1) {
		e := proseEnv(s[m[2]:m[3]])
		if env != "" && env != e {
			return ""
		}
		env = e
	}
	return env
}

// labelAt reads the label at the start of rest: quoted, or one word.
func labelAt(rest string) string {
	sm := proseLabelTokRE.FindStringSubmatch(strings.TrimLeft(rest, " "))
	if sm == nil {
		return ""
	}
	l := strings.TrimRight(sm[1]+sm[2], ".,;:!?-_/")
	if len([]rune(l)) < 2 || proseNotLabel[strings.ToLower(l)] || bareNot[strings.ToLower(l)] {
		return ""
	}
	if label, err := keydesk.ParseLabel(l); err == nil {
		return label
	}
	return ""
}

// bareAfter is the word after a verb and its filler words, when it may
// be a label: it names a key only if one has exactly that label.
func bareAfter(rest string) string {
	rest = strings.TrimLeft(rest, " ")
	for range 4 {
		w, after, _ := strings.Cut(rest, " ")
		if !bareFiller[strings.ToLower(strings.Trim(w, ",:"))] {
			break
		}
		rest = strings.TrimLeft(after, " ")
	}
	sm := bareTokRE.FindStringSubmatch(rest)
	if sm == nil {
		return ""
	}
	l := strings.TrimRight(sm[1], ".,;:!?-_/")
	quoted := sm[0] != sm[1] && len(sm[0]) > len(sm[1])+1
	if !quoted && !strings.ContainsAny(l, "-_.0123456789") {
		// A plain word after a verb ("rotate its keys") is prose; a label
		// as partners make them (prod-trading-engine, md_feed2) or a
		// quoted one is read as a label.
		return ""
	}
	lw := strings.ToLower(l)
	if len([]rune(l)) < 2 || proseNotLabel[lw] || bareNot[lw] || bareFiller[lw] || allRE.MatchString(l) || keyWordRE.MatchString(l) {
		return ""
	}
	if label, err := keydesk.ParseLabel(l); err == nil {
		return label
	}
	return ""
}

// confirmRE are the ways a technical contact says a rotation is done:
// "done", "confirmed", "the new key is in use", in English, German,
// French and Spanish.
var confirmRE = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(done|confirm|confirmed|i confirm|we confirm|new key is in use|new key is now in use|switched to the new key|erledigt|bestätigt|bestätige|bestätigen|fertig|der neue schlüssel ist in gebrauch|neuer schlüssel ist aktiv|confirmé|confirmée|je confirme|nous confirmons|c'est fait|terminé|la nouvelle clé est utilisée|hecho|confirmado|confirmo|confirmamos|listo|la nueva clave está en uso)(?:[^\p{L}]|$)`)

// confirmBytes bounds the own text read for a confirmation: it is short.
const confirmBytes = 2 << 10

// confirms reports whether the sender's own lines say the new key is in
// use, in a clause no negation takes back ("not done yet").
func confirms(own []string) bool {
	n := 0
	for _, l := range own {
		n += len(l)
		if n > confirmBytes {
			return false
		}
		if strings.Contains(l, "?") {
			continue // "can you confirm…?" asks, it does not confirm
		}
		for _, m := range confirmRE.FindAllStringSubmatchIndex(l, -1) {
			if !negatedVerb(l, m[2]) {
				return true
			}
		}
	}
	return false
}

// readKeyAsks reads the key asks of the email's own text (for a
// Relationship Manager's forward, of the partner's forwarded text when
// the manager's own names none), at most what Limits.Requests leaves
// after the n new-key requests.
func (d *decision) readKeyAsks(bd body, internal bool, n int) []KeyAsk {
	asks := keyAsks(bd.own)
	if len(asks) == 0 && internal && bd.forward != nil {
		asks = keyAsks(bd.forward.own)
	}
	room := max(d.o.Limits.Requests-n, 0)
	if len(asks) > room {
		d.warn(fmt.Sprintf("the email asks about %d keys: only %d were read (at most %d requests are read from one email)", len(asks), room, d.o.Limits.Requests))
		asks = asks[:room]
	}
	return asks
}

// keyRecords builds the records of the key asks, numbered from start
// after the new-key requests. They always wait for a person: a forged or
// mistaken email must never take a partner's key away by itself, whatever
// the environment's auto-approval says.
func (d *decision) keyRecords(start int) []*keydesk.Request {
	res := d.res
	if res.Verdict == Ignore {
		return nil
	}
	var out []*keydesk.Request
	for j := range d.asks {
		a := &d.asks[j]
		a.Index = start + j
		r := &keydesk.Request{
			ID:              keydesk.RequestID(res.Date, res.SourceKey, a.Index, 0),
			Kind:            a.Kind,
			Environment:     a.Environment,
			Requester:       res.From,
			SourceMessageID: res.MessageID,
			SourceDate:      res.Date,
			SourceKey:       res.SourceKey,
			Index:           a.Index,
			Subject:         res.Subject,
			Reasons:         appendReasons(nil, d.reasons...),
			Warnings:        append([]string(nil), res.Warnings...),
			Reason:          a.Sentence,
		}
		if r.Requester == "" {
			r.Requester = res.Via
		}
		if res.Partner != nil {
			r.Partner = res.Partner.ID
		}
		switch {
		case a.KeyID != "" && a.Kind == keydesk.KindRotate:
			r.ReplacesKeyID = a.KeyID
		case a.KeyID != "":
			r.KeyID = a.KeyID
		}
		if a.Label != "" && !a.Bare {
			r.Label = a.Label
		}
		for _, f := range d.flags {
			r.AddFlag(f)
		}
		if a.Environment == keydesk.Production {
			r.AddFlag(keydesk.FlagProduction)
		}
		if a.All {
			r.AddFlag(keydesk.FlagNeedsReview)
			r.Warnings = append(r.Warnings, "the partner asks to revoke all their keys: a person handles it (keydesk never revokes keys in bulk)")
		}
		if res.Verdict == Reject {
			r.State = keydesk.StateRejected
			r.Problem = problem(res.Reasons)
		} else {
			r.State = keydesk.StatePendingReview
		}
		out = append(out, r)
	}
	return out
}
