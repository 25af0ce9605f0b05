// Package reply turns a parse result into the email keydesk answers a
// request with: an acknowledgement that lists what was understood and when
// it happens, or a rejection that lists each problem with a correct example.
//
// Invariants: a reply goes only to the result's ReplyTo, the authenticated
// sender (never a Reply-To header or an address named in the body); no
// reply is built for review or ignore verdicts (no backscatter); the
// subject is one line, capped; the outgoing ID is derived from the request
// IDs, so building the same reply twice queues it once.
package reply

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/templates"
)

// MaxSubject is the longest reply subject, in characters.
const MaxSubject = 150

// RequestLine is one request as the acknowledgement shows it.
type RequestLine struct {
	ID          string
	Environment string
	Scopes      string
	Label       string
	Approved    bool     // auto-approved: it goes into the next batch
	Why         []string // why a person reviews it first

	// The key's life: a revoke or rotate request. Action is "Revoke" or
	// "Rotate" ("" for a new key); Key names the key as understood
	// ("key-007 (label prod-trading-engine, production)"); Pick: several
	// keys match and a person checks which one; Problem and Suggestion:
	// it was not accepted (the email's other requests were).
	Action     string
	Key        string
	Pick       bool
	Problem    string
	Suggestion string
}

// Rotate reports whether the line is a rotation.
func (l RequestLine) Rotate() bool { return l.Action == "Rotate" }

// Waiting reports whether the line waits for a person.
func (l RequestLine) Waiting() bool { return !l.Approved && l.Problem == "" }

// AckData is what templates/mail/acknowledgement.tmpl gets.
type AckData struct {
	Subject   string // the reply's subject
	Partner   string // the partner's name
	Via       string // the Relationship Manager who forwarded the email, if any
	From      string // the partner's requester
	Requests  []RequestLine
	NextBatch time.Time
	// GraceDays is rotation.grace in days: how long an old key works
	// after its rotation is delivered, unless confirmed before.
	GraceDays int
}

// AnyNew says some request makes a key (a new one or a rotation).
func (d AckData) AnyNew() bool {
	return slices.ContainsFunc(d.Requests, func(l RequestLine) bool { return l.Action != "Revoke" && l.Problem == "" })
}

// AnyKeyLife says some request revokes or replaces a key.
func (d AckData) AnyKeyLife() bool {
	return slices.ContainsFunc(d.Requests, func(l RequestLine) bool { return l.Action != "" && l.Problem == "" })
}

// Plural says the email holds several requests.
func (d AckData) Plural() bool { return len(d.Requests) > 1 }

// AnyApproved says some request goes into the next batch as it is.
func (d AckData) AnyApproved() bool {
	return slices.ContainsFunc(d.Requests, func(l RequestLine) bool { return l.Approved })
}

// AnyWaiting says some new-key request waits for a person's review.
func (d AckData) AnyWaiting() bool {
	return slices.ContainsFunc(d.Requests, func(l RequestLine) bool { return l.Action == "" && l.Waiting() })
}

// ReasonLine is one problem as the rejection shows it.
type ReasonLine struct {
	Code       string
	Message    string
	Suggestion string
}

// RejectData is what templates/mail/rejection.tmpl gets.
type RejectData struct {
	Subject string
	Partner string
	Via     string
	From    string
	IDs     []string
	Reasons []ReasonLine
	Example string // a correct request, to copy
	// ShowExample: some reason is about how the request was written, so
	// the example and the field guide help.
	ShowExample bool
	MaxLabel    int
	Scopes      string // the twelve scopes, for reference
	// KeyLife: every request of the email revokes or rotates a key.
	KeyLife bool
}

// Example is a correct request email body, as the rejection shows it.
const Example = `Environment: sandbox
Scopes: accounts:read, trading:read
Label: sandbox-backend`

// flagWhy says in the partner's words why a flag sends a request to review.
var flagWhy = map[keydesk.Flag]string{
	keydesk.FlagProduction:         "production keys are approved by our support team",
	keydesk.FlagKeysManage:         "a key with keys:manage is approved by our support team",
	keydesk.FlagForwarded:          "the request was forwarded, so our support team confirms it",
	keydesk.FlagScopeNotAllowed:    "it asks for a scope outside your agreed scopes",
	keydesk.FlagDMARCNotPassed:     "your email could not be authenticated, so our support team confirms it",
	keydesk.FlagContactKeyExpiring: "your technical contact's OpenPGP key expires soon: please send a renewed key to your Relationship Manager",
	keydesk.FlagDuplicate:          "it repeats an open request for the same environment and label",
	keydesk.FlagNeedsReview:        "our support team checks how the request was written",
}

// DefaultGrace is rotation.grace when the caller does not say.
const DefaultGrace = 7 * 24 * time.Hour

// Options are what BuildWith needs beyond the result.
type Options struct {
	// NextBatch is when the next batch runs (zero: not known).
	NextBatch time.Time
	// RotationGrace is rotation.grace; zero: DefaultGrace.
	RotationGrace time.Duration
}

// Build returns the acknowledgement (accept) or rejection email for r, or
// nil when no reply is due (ignore, review, no authenticated sender).
// nextBatch is when the next batch runs (zero: not known).
func Build(r *parse.Result, t *templates.Set, nextBatch time.Time) (*keydesk.Outgoing, error) {
	return BuildWith(r, t, Options{NextBatch: nextBatch})
}

// keyLine describes a revoke or rotate request as understood.
func keyLine(q *keydesk.Request) RequestLine {
	l := RequestLine{ID: q.ID, Environment: string(q.Environment), Label: q.Label, Action: "Revoke"}
	id := q.KeyID
	if q.KindOf() == keydesk.KindRotate {
		l.Action, id = "Rotate", q.ReplacesKeyID
	}
	var about []string
	switch {
	case len(q.KeyCandidates) > 0:
		l.Pick = true
		id = "the keys labelled " + q.Label
		if q.Label == "" {
			id = "one of the keys " + strings.Join(q.KeyCandidates, ", ")
		} else {
			about = append(about, strings.Join(q.KeyCandidates, ", "))
		}
	case id == "" && q.HasFlag(keydesk.FlagNeedsReview) && q.Label == "" && q.Problem == "":
		id = "all keys"
	case id == "" && q.Label != "":
		id = "the key labelled " + q.Label
	case id == "":
		id = "a key"
	default:
		if q.Label != "" {
			about = append(about, "label "+q.Label)
		}
	}
	if q.Environment != "" {
		about = append(about, string(q.Environment))
	}
	l.Key = id
	if len(about) > 0 {
		l.Key += " (" + strings.Join(about, ", ") + ")"
	}
	if q.State == keydesk.StateRejected {
		for _, rs := range q.Reasons {
			l.Problem, l.Suggestion = rs.Message, rs.Suggestion
		}
		if l.Problem == "" {
			l.Problem = q.Problem
		}
	}
	return l
}

// BuildWith is Build with Options.
func BuildWith(r *parse.Result, t *templates.Set, o Options) (*keydesk.Outgoing, error) {
	nextBatch := o.NextBatch
	if o.RotationGrace <= 0 {
		o.RotationGrace = DefaultGrace
	}
	if r == nil || r.ReplyTo == "" || (r.Verdict != parse.Accept && r.Verdict != parse.Reject) {
		return nil, nil
	}
	if t == nil {
		return nil, errors.New("reply: no templates")
	}
	partner := ""
	partnerID := ""
	if r.Partner != nil {
		partner, partnerID = r.Partner.Name, r.Partner.ID
	}
	subject := Subject(r.Subject)
	out := &keydesk.Outgoing{
		Partner:   partnerID,
		To:        []string{r.ReplyTo},
		InReplyTo: r.MessageID,
	}
	base := baseID(r)
	if len(r.Requests) > 0 {
		out.RequestID = r.Requests[0].ID
	}
	var m templates.Mail
	var err error
	if r.Verdict == parse.Accept {
		d := AckData{Subject: subject, Partner: partner, Via: r.Via, From: r.From, NextBatch: nextBatch,
			GraceDays: int((o.RotationGrace + 12*time.Hour) / (24 * time.Hour))}
		for _, q := range r.Requests {
			if q.KindOf() != keydesk.KindIssue {
				d.Requests = append(d.Requests, keyLine(q))
				continue
			}
			l := RequestLine{ID: q.ID, Environment: string(q.Environment), Scopes: keydesk.JoinScopes(q.Scopes), Label: q.Label,
				Approved: q.State == keydesk.StateApproved}
			if !l.Approved {
				for _, f := range q.Flags {
					if w, ok := flagWhy[f]; ok {
						l.Why = append(l.Why, w)
					}
				}
				if len(l.Why) == 0 {
					l.Why = []string{"keys for this environment are approved by our support team"}
				}
			}
			d.Requests = append(d.Requests, l)
		}
		out.ID, out.Kind = base+".ack", keydesk.KindAcknowledgement
		m, err = t.RenderPartnerMail("acknowledgement", d)
	} else {
		d := RejectData{Subject: subject, Partner: partner, Via: r.Via, From: r.From, Example: Example,
			MaxLabel: keydesk.MaxLabelLength, Scopes: keydesk.JoinScopes(keydesk.Scopes)}
		d.KeyLife = len(r.Requests) > 0
		for _, q := range r.Requests {
			d.IDs = append(d.IDs, q.ID)
			if q.KindOf() == keydesk.KindIssue {
				d.KeyLife = false
			}
		}
		for _, rs := range r.Reasons {
			d.Reasons = append(d.Reasons, ReasonLine{Code: string(rs.Code), Message: rs.Message, Suggestion: rs.Suggestion})
			switch rs.Code {
			case keydesk.ReasonMissingEnvironment, keydesk.ReasonInvalidEnvironment, keydesk.ReasonMissingScopes,
				keydesk.ReasonUnknownScope, keydesk.ReasonMissingLabel, keydesk.ReasonInvalidLabel:
				d.ShowExample = true
			}
		}
		out.ID, out.Kind = base+".rejection", keydesk.KindRejection
		m, err = t.RenderPartnerMail("rejection", d)
	}
	if err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	out.Subject, out.Text = m.Subject, m.Body
	return out, nil
}

// baseID is the first request's ID, or a digest of the source.
func baseID(r *parse.Result) string {
	if len(r.Requests) > 0 {
		return r.Requests[0].ID
	}
	sum := sha256.Sum256([]byte(r.SourceKey))
	return "src-" + hex.EncodeToString(sum[:8])
}

var rePrefix = regexp.MustCompile(`(?i)^\s*(re|aw|sv|antw)\s*:\s*`)

// Subject is "Re: " and their subject, made inert (keydesk.SafeLine), on
// one line and capped; one "Re:" only, however many their client stacked.
func Subject(theirs string) string {
	// Their subject goes back to them and to their mail client: inert,
	// as everything from an email that keydesk shows or sends.
	s := keydesk.SafeLine(theirs, 0)
	for rePrefix.MatchString(s) {
		s = rePrefix.ReplaceAllString(s, "")
	}
	if s == "" {
		s = "your API key request"
	}
	s = "Re: " + s
	if utf8.RuneCountInString(s) > MaxSubject {
		s = string([]rune(s)[:MaxSubject-1]) + "…"
	}
	return s
}
