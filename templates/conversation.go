package templates

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// MailWidth is the widest line of a partner's email. A value that does
// not fit beside its label goes on a line of its own.
const MailWidth = 72

// RequestFacts are a request's fields as a partner's email lists them.
type RequestFacts struct {
	ID          string
	Environment string
	Scopes      string // comma-separated
	Label       string
	// Status is the state in the partner's words (StateWords).
	Status string
}

// FactsOf is r's facts for an email.
func FactsOf(r *keydesk.Request) RequestFacts {
	return RequestFacts{ID: r.ID, Environment: string(r.Environment), Scopes: keydesk.JoinScopes(r.Scopes),
		Label: r.Label, Status: StateWords(r.State)}
}

// StaffReply is what mail/staff-reply.tmpl gets: a support person's
// words to the requester, with the request's facts.
type StaffReply struct {
	Subject string // "Re: <their subject>"
	Text    string // what the person wrote; checked to hold no secret
	Request RequestFacts
}

// ProposalOutcome is what mail/proposal-outcome.tmpl gets: whether the
// change the partner asked for in a reply was made.
type ProposalOutcome struct {
	Subject  string
	Accepted bool
	// Asked are the fields the partner asked to change, with the values
	// asked for (AskedOf).
	Asked []Fact
	// Request is the request as it is now (after an accepted change).
	Request RequestFacts
}

// Fact is one named value of an email's facts block.
type Fact struct{ Name, Value string }

// AskedOf names the values a proposal asked for, as the facts block
// names fields ("Scopes", not "scopes").
func AskedOf(changes []keydesk.FieldChange) []Fact {
	out := make([]Fact, 0, len(changes))
	for _, c := range changes {
		name := c.Field
		if name != "" {
			name = strings.ToUpper(name[:1]) + name[1:]
		}
		v := c.To
		if v == "" {
			v = "(none)"
		}
		out = append(out, Fact{Name: name, Value: v})
	}
	return out
}

// stateWords says where a request stands, in a partner's words.
var stateWords = map[keydesk.State]string{
	keydesk.StateReceived:       "received, waiting for review by our support team",
	keydesk.StatePendingReview:  "waiting for review by our support team",
	keydesk.StateApproved:       "approved: the key is created in the next batch",
	keydesk.StateGenerating:     "the key is being created",
	keydesk.StateGenerated:      "the key is created and on its way to your technical contact",
	keydesk.StateDelivered:      "delivered, encrypted, to your technical contact",
	keydesk.StateDeliveryFailed: "the key could not be delivered; our support team is on it",
	keydesk.StateRevoked:        "revoked",
	keydesk.StateRejected:       "not approved",
	keydesk.StateCancelled:      "cancelled",
	keydesk.StateBlocked:        "on hold: your technical contact's OpenPGP key cannot be used",
	keydesk.StateFailed:         "on hold: our support team is on it",
}

// StateWords is st in a partner's words.
func StateWords(st keydesk.State) string {
	if w, ok := stateWords[st]; ok {
		return w
	}
	return string(st)
}

// field writes one "  Label:       value" line of a facts block; a value
// too long for the line goes below its label, wrapped and indented.
func field(label, value string) string {
	line := fmt.Sprintf("  %-13s%s", label+":", value)
	if utf8.RuneCountInString(line) <= MailWidth {
		return line
	}
	return "  " + label + ":\n" + indentLines(4, wrapText(MailWidth-4, value))
}

func indentLines(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// wrapText breaks each line of s longer than width at spaces; a word
// longer than width stays whole on a line of its own.
func wrapText(width int, s string) string {
	var out []string
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		if utf8.RuneCountInString(line) <= width {
			out = append(out, line)
			continue
		}
		cur := ""
		for _, w := range strings.Fields(line) {
			switch {
			case cur == "":
				cur = w
			case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) <= width:
				cur += " " + w
			default:
				out = append(out, cur)
				cur = w
			}
		}
		out = append(out, cur)
	}
	return strings.Join(out, "\n")
}
