package parse

import (
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// body is the readable text of an email split into what the sender wrote
// and what they forwarded.
type body struct {
	own     []string // the sender's own lines: no quotes, no signature, no history
	forward *forward // the first forwarded message, if any
}

// forward is a forwarded message found in the text.
type forward struct {
	from    string // the address in its From line; "" when none could be read
	rawFrom string
	// several is every address of a From line that names more than one
	// (then from is ""): which one sent the message is not clear.
	several []string
	subject string
	own     []string // its own lines
}

// lineNormalizer unifies line ends and turns invisible and non-breaking
// spaces into what a reader sees.
var lineNormalizer = strings.NewReplacer("\r\n", "\n", "\r", "\n",
	"\u00a0", " ", "\u2007", " ", "\u202f", " ", "\t", "  ",
	"\u200b", "", "\u200c", "", "\u200d", "", "\ufeff", "", "\u2060", "")

// splitLines normalises line ends and invisible characters and applies
// the line bounds.
func splitLines(s string, lim Limits) (lines []string, cut, long bool) {
	s = lineNormalizer.Replace(s)
	for len(s) > 0 {
		if len(lines) >= lim.Lines {
			return lines, true, long
		}
		l, rest, _ := strings.Cut(s, "\n")
		s = rest
		if len(l) > lim.LineBytes {
			l = l[:lim.LineBytes]
			for len(l) > 0 && !utf8.ValidString(l) {
				l = l[:len(l)-1]
			}
			long = true
		}
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines, false, long
}

var (
	mailtoRE   = regexp.MustCompile(`(?i)[<\[(](?:mailto:)?([^\s<>\[\]()]+@[^\s<>\[\]()]+)[>\])]`)
	bareAddrRE = regexp.MustCompile(`[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	// An attribution line that names no verb (Gmail in Japanese, Apple
	// Mail in Czech): "2026年11月23日(月) 10:02 Jane <jane@x>:" — an
	// address and a time, ending in a colon.
	attribNoVerbRE = regexp.MustCompile(`@.*[:：]\s*$`)
	timeRE         = regexp.MustCompile(`\d{1,2}[:.時]\d{2}|\d{4}`)
	// genericHdrRE is a header-like line in a language not in the table:
	// a short word, a colon, a value.
	genericHdrRE = regexp.MustCompile(`^\s*[*_]*\s*(\p{L}[\p{L}\p{M} .'-]{0,23})\s*[*_]*\s*[:：]\s*[*_]*\s*(\S.*)$`)
)

func isSignature(l string) bool {
	t := strings.TrimSpace(l)
	if l == "-- " || t == "--" || t == "—" {
		return true
	}
	lt := strings.ToLower(t)
	return strings.HasPrefix(lt, "sent from my ") || strings.HasPrefix(lt, "get outlook for ") ||
		strings.HasPrefix(lt, "envoyé de mon ") || strings.HasPrefix(lt, "von meinem ")
}

// headerKey maps the header-block names of every language in the table
// to from, date, to or subject.
func headerKey(l string) (key, value string, ok bool) {
	// "**Von:** x", "差出人： x": the name is what stands before the first
	// colon, without emphasis. A map lookup, where one expression over
	// every language's names would cost more than the rest of the parse.
	i := strings.IndexAny(l, ":：")
	if i < 0 || i > 64 {
		return "", "", false
	}
	name := strings.Trim(l[:i], " *_")
	if len(name) > 32 {
		return "", "", false // longer than any header name of the table
	}
	name = strings.ToLower(name)
	if strings.Contains(name, "  ") {
		name = strings.Join(strings.Fields(name), " ")
	}
	k, known := headerWords[name]
	if !known {
		return "", "", false
	}
	_, size := utf8.DecodeRuneInString(l[i:])
	v := strings.TrimLeft(l[i+size:], " *_")
	v = strings.TrimSpace(strings.Trim(strings.TrimSpace(v), "*|"))
	return k, v, true
}

// headerBlockAt reports whether lines[i] starts a forward or reply header
// block (From: then Sent:/Date: within a few lines), the shape Outlook
// writes with no marker line. Beyond the languages of the table, a line
// "word: address or name" followed by two more "word: value" lines, one of
// them a date, is taken for a header block too: what follows is history.
func headerBlockAt(lines []string, i int) bool {
	k, _, ok := headerKey(lines[i])
	if ok && k == "from" {
		for j := i + 1; j < len(lines) && j <= i+4; j++ {
			if k, _, ok := headerKey(lines[j]); ok && k == "date" {
				return true
			}
		}
	}
	return genericHeaderBlockAt(lines, i)
}

// genericHeaderBlockAt is headerBlockAt for a language keydesk has no words
// for: a "word: value" line naming an address, then at least two more such
// lines within four, one with a date or time (three more when the first
// names no address). A field name never counts.
func genericHeaderBlockAt(lines []string, i int) bool {
	if !hasColonEarly(lines[i]) {
		return false
	}
	colons := 0 // a cheap test first: the lines below must look like header lines too
	for j := i + 1; j < len(lines) && j <= i+4 && strings.TrimSpace(lines[j]) != ""; j++ {
		if hasColonEarly(lines[j]) {
			colons++
		}
	}
	if colons < 2 {
		return false
	}
	m := genericHdrRE.FindStringSubmatch(lines[i])
	if m == nil || isFieldName(m[1]) {
		return false
	}
	// With an address, two more lines make a block; with a name only,
	// three: "Name: Jane" and "Date: …" alone are ordinary lines.
	need := 2
	if !strings.Contains(m[2], "@") {
		need = 3
	}
	more, dated := 0, false
	for j := i + 1; j < len(lines) && j <= i+4; j++ {
		var mj []string
		if hasColonEarly(lines[j]) {
			mj = genericHdrRE.FindStringSubmatch(lines[j])
		}
		if mj == nil {
			if strings.TrimSpace(lines[j]) == "" {
				break
			}
			continue // a wrapped recipient list
		}
		if isFieldName(mj[1]) {
			return false
		}
		more++
		dated = dated || timeRE.MatchString(mj[2])
	}
	return more >= need && dated
}

// isAttribution reports whether t (one trimmed line) introduces a quoted
// reply: "On …, Jane <jane@x> wrote:" in any language of the table, or an
// address and a time ending in a colon.
func isAttribution(t string) bool {
	if len(t) > 400 || !(strings.HasSuffix(t, ":") || strings.HasSuffix(t, "：")) {
		return false // every attribution ends in a colon: most lines are out at once
	}
	return wroteRE.MatchString(t) || (attribNoVerbRE.MatchString(t) && timeRE.MatchString(t) && strings.ContainsAny(t, "<>[]()"))
}

// historyMark reports whether a trimmed line is a marker line of a reply's
// or a forward's history ("-----Original Message-----", "Begin forwarded
// message:"), and which.
func historyMark(t string) (string, bool) {
	if len(t) > 120 {
		return "", false
	}
	m := strings.Trim(t, "-_=*:： ")
	if len(m) > 48 || m == "" {
		return "", false // longer than any marker of the table
	}
	m = strings.Join(strings.Fields(strings.ToLower(m)), " ")
	_, ok := historyMarks[m]
	return m, ok
}

// readHeaderBlock reads "Key: value" lines from lines[i:], skipping blank
// lines before the first one, and returns the block and where its body starts.
func readHeaderBlock(lines []string, i int) (f forward, next int) {
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	seen := false
	for ; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			if seen {
				return f, i + 1
			}
			continue
		}
		k, v, ok := headerKey(l)
		if !ok {
			if !seen {
				return f, i
			}
			continue // a wrapped To: or Cc: list
		}
		seen = true
		switch k {
		case "from":
			if f.rawFrom == "" {
				f.rawFrom = keydesk.SafeLine(v, 300)
				f.from, f.several = addressIn(v)
			}
		case "subject":
			if f.subject == "" {
				f.subject = keydesk.SafeLine(v, 300)
			}
		}
	}
	return f, i
}

// addressIn finds the address in a forward header's From value:
// "Jane <jane@x>", "Jane [mailto:jane@x]", "jane@x". A value that is not
// one RFC 5322 address and names several different addresses, such as
// "Jane <jane@x> <attacker@y>", is ambiguous: it returns "" and them all,
// for a person to judge. Taking the first would let the text before the
// real address name the partner.
func addressIn(v string) (string, []string) {
	if !keydesk.Inert(v) {
		return "", nil // a control or bidi character: what it shows is not what it is
	}
	if a, err := mail.ParseAddress(v); err == nil {
		return keydesk.ASCIILower(a.Address), nil
	}
	type at struct {
		pos  int
		addr string
	}
	var all []at
	for _, m := range mailtoRE.FindAllStringSubmatchIndex(v, 5) {
		all = append(all, at{m[2], v[m[2]:m[3]]})
	}
	for _, m := range bareAddrRE.FindAllStringIndex(v, 5) {
		all = append(all, at{m[0], v[m[0]:m[1]]})
	}
	slices.SortStableFunc(all, func(a, b at) int { return a.pos - b.pos })
	var found []string // in the order the line names them
	for _, a := range all {
		s := a.addr
		if pa, err := mail.ParseAddress(s); err == nil {
			s = pa.Address
		}
		if s = keydesk.ASCIILower(s); !slices.Contains(found, s) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", found
}

// unquoteAll removes one level of "> " when every non-blank line has it, as
// some clients quote a forwarded message.
func unquoteAll(lines []string) []string {
	n := 0
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if !strings.HasPrefix(strings.TrimLeft(l, " "), ">") {
			return lines
		}
		n++
	}
	if n == 0 {
		return lines
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		l = strings.TrimLeft(l, " ")
		l = strings.TrimPrefix(l, ">")
		out[i] = strings.TrimPrefix(l, " ")
	}
	return out
}

// splitBody separates the sender's own text from quoted history and finds
// the first forward. forwarded says the email's subject marks it as a
// forward (Fwd:, FW:, WG:…): Outlook's header block then starts the
// forwarded message, since that block alone looks the same in a reply.
// depth bounds forwards inside forwards.
func splitBody(lines []string, forwarded bool, depth int) body {
	var b body
	inSig := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, ">") {
			continue
		}
		// "On …, Jane <jane@x>" may wrap before "wrote:".
		attribution := isAttribution(t)
		wrapped := !attribution && i+1 < len(lines) && strings.ContainsAny(t, "0123456789") && !strings.HasSuffix(t, ":") &&
			isAttribution(t+" "+strings.TrimSpace(lines[i+1]))
		if attribution || wrapped {
			// A reply. When the history is quoted with "> ", lines after it
			// are the sender's again (bottom or interleaved posting);
			// unquoted history ends the sender's text here.
			j := i + 1
			if wrapped {
				j++
			}
			for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
				j++
			}
			if j < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[j]), ">") {
				i = j - 1
				continue
			}
			return b
		}
		if ownWords(t) {
			return b // keydesk's own email quoted back: history, never a request
		}
		mark, marked := historyMark(t)
		if marked || headerBlockAt(lines, i) {
			start := i
			if marked {
				start = i + 1
			}
			f, next := readHeaderBlock(lines, start)
			isForward := marked && forwardMarks[mark]
			if !isForward && (fwdSubjRE.MatchString(f.subject) || (forwarded && depth == 0)) {
				isForward = true
			}
			if !isForward || depth >= 3 {
				return b // quoted history of a reply
			}
			inner := splitBody(unquoteAll(lines[next:]), fwdSubjRE.MatchString(f.subject), depth+1)
			f.own = inner.own
			b.forward = &f
			return b
		}
		if strings.Trim(t, "_") == "" && t != "" {
			continue // Outlook's rule above a header block
		}
		if isSignature(l) {
			inSig = true
		}
		if !inSig {
			b.own = append(b.own, l)
		}
	}
	return b
}

// hasColonEarly reports whether a colon (ASCII or full-width) stands in
// the first 64 bytes of l, as in every header-block line: a cheap test
// before the regular expressions.
func hasColonEarly(l string) bool {
	if len(l) > 64 {
		l = l[:64]
	}
	return strings.ContainsAny(l, ":：")
}
