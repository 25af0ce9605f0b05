package keydesk

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"time"
)

// RequestKind is what a request asks for. The names are part of the
// external interface (JSON API, CLI): never rename one.
type RequestKind string

const (
	KindIssue  RequestKind = "issue"  // a new key
	KindRevoke RequestKind = "revoke" // revoke one existing key of the partner
	KindRotate RequestKind = "rotate" // a new key replacing one, the old revoked after
)

// KindOf is r's kind; records from before kinds existed are issues.
func (r *Request) KindOf() RequestKind {
	if r.Kind == "" {
		return KindIssue
	}
	return r.Kind
}

// Proposal is a change to a request's fields that its partner asked for
// in a reply. It waits for a person: accepted, the fields become the
// proposal's; refused, they stay. Until then the request cannot be
// approved.
type Proposal struct {
	// ID is stable for the email that proposed it (a digest of its source
	// key), so that reading the same email again proposes nothing twice.
	ID        string    `json:"id"`
	From      string    `json:"from"`
	MessageID string    `json:"message_id,omitempty"`
	At        time.Time `json:"at"`
	// The fields as the reply states them; one the reply left out keeps
	// the request's value.
	Environment Environment `json:"environment"`
	Scopes      []Scope     `json:"scopes"`
	Label       string      `json:"label"`
	// WasApproved: the request was approved (by staff or automatically)
	// when the proposal came, and went back to review because of it.
	WasApproved bool `json:"was_approved,omitempty"`
}

// FieldChange is one field of a proposal that differs from the request.
type FieldChange struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// Diff lists the fields p changes on r, in the order environment,
// scopes, label.
func (p *Proposal) Diff(r *Request) []FieldChange {
	var out []FieldChange
	if p.Environment != r.Environment {
		out = append(out, FieldChange{"environment", string(r.Environment), string(p.Environment)})
	}
	if a, b := JoinScopes(r.Scopes), JoinScopes(p.Scopes); a != b {
		out = append(out, FieldChange{"scopes", a, b})
	}
	if p.Label != r.Label {
		out = append(out, FieldChange{"label", r.Label, p.Label})
	}
	return out
}

// Apply sets r's fields to p's.
func (p *Proposal) Apply(r *Request) {
	r.Environment = p.Environment
	r.Scopes = slices.Clone(p.Scopes)
	r.Label = p.Label
}

func (p *Proposal) clone() *Proposal {
	if p == nil {
		return nil
	}
	c := *p
	c.Scopes = slices.Clone(p.Scopes)
	return &c
}

// JoinScopes writes scopes as a comma-separated list, as emails and the
// review page show them.
func JoinScopes(ss []Scope) string {
	p := make([]string, len(ss))
	for i, s := range ss {
		p[i] = string(s)
	}
	return strings.Join(p, ", ")
}

// ThreadKind is what one entry of a request's thread is.
type ThreadKind string

const (
	ThreadEmailIn  ThreadKind = "email_in"  // an email from the partner side
	ThreadEmailOut ThreadKind = "email_out" // an email keydesk sent
	ThreadNote     ThreadKind = "note"      // an internal note of support staff
	ThreadSystem   ThreadKind = "system"    // what keydesk did or noticed
)

// ThreadEntry is one entry of a request's conversation, oldest first in
// GET /api/v1/requests/{id}.
type ThreadEntry struct {
	// ID is stable for what the entry records (the email's source key,
	// the outbox ID, a note's own ID): storing it twice keeps one.
	ID        string     `json:"id"`
	RequestID string     `json:"request_id"`
	At        time.Time  `json:"at"`
	Kind      ThreadKind `json:"kind"`
	From      string     `json:"from,omitempty"`
	To        string     `json:"to,omitempty"`
	Subject   string     `json:"subject,omitempty"`
	MessageID string     `json:"message_id,omitempty"`
	// Text is the entry as people read it: an email's text (made inert,
	// never a secret), a note. Over the thread's caps it is left out and
	// MailRef links the stored email instead.
	Text    string `json:"text,omitempty"`
	MailRef string `json:"mail_ref,omitempty"`
	// Truncated: the text was cut or left out by the thread's caps.
	Truncated bool `json:"truncated,omitempty"`
}

// Thread caps: a request's conversation is bounded in entries and bytes.
// What is over a cap is kept in the mail store and linked, never dropped.
const (
	MaxThreadEntries   = 200
	MaxThreadEntryText = 32 << 10 // bytes of one entry's text
	MaxThreadBytes     = 1 << 20  // bytes of all the texts of one thread
)

// EntryID derives a thread entry's ID from what it records: the same
// input, the same ID.
func EntryID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// NormalizeMessageID is a Message-ID as keydesk compares them: without
// angle brackets and spaces, lower-cased (the local part is case-sensitive
// in theory; mail clients do not change it, and nobody makes two that
// differ only in case).
func NormalizeMessageID(id string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(id), "<> \t"))
}
