package keydesk

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Flag marks a request for a person's attention. Flags never reject: they
// keep a request from auto-approval and show on the review queue.
type Flag string

const (
	FlagProduction         Flag = "production"
	FlagKeysManage         Flag = "keys-manage"
	FlagForwarded          Flag = "forwarded"
	FlagScopeNotAllowed    Flag = "scope-not-allowed"
	FlagDMARCNotPassed     Flag = "dmarc-not-passed"
	FlagUnknownSender      Flag = "unknown-sender"
	FlagContactKeyExpiring Flag = "contact-key-expiring"
	FlagNeedsReview        Flag = "needs-review" // mail that is not a clear key request
	// FlagDuplicate: the same partner, environment and label as an open
	// request (DuplicateOf names it).
	FlagDuplicate Flag = "duplicate"
	// FlagProposedChange: the partner asked to change the fields; a person
	// accepts or refuses (Proposal).
	FlagProposedChange Flag = "proposed-change"
	// FlagFromProse: no field line was found, but the email's prose names
	// the fields; they wait as a Proposal for a person, never as the
	// request's own.
	FlagFromProse Flag = "from-prose"
	// FlagSecretExposed: a live API secret was pasted in the email (it
	// was redacted before anything was stored); on a revoke request
	// keydesk proposed, the key it was found beside.
	FlagSecretExposed Flag = "secret-exposed"
)

// ReasonCode is the fixed vocabulary of why an email was not accepted as is.
type ReasonCode string

const (
	ReasonMissingEnvironment     ReasonCode = "missing-environment"
	ReasonInvalidEnvironment     ReasonCode = "invalid-environment"
	ReasonMissingScopes          ReasonCode = "missing-scopes"
	ReasonUnknownScope           ReasonCode = "unknown-scope"
	ReasonMissingLabel           ReasonCode = "missing-label"
	ReasonInvalidLabel           ReasonCode = "invalid-label"
	ReasonUnknownSender          ReasonCode = "unknown-sender"
	ReasonSenderNotAuthenticated ReasonCode = "sender-not-authenticated"
	ReasonContactKeyUnusable     ReasonCode = "contact-key-unusable"
	ReasonTooLarge               ReasonCode = "too-large"
	ReasonMalformed              ReasonCode = "malformed"
	ReasonAutoReply              ReasonCode = "auto-reply"
	ReasonBounce                 ReasonCode = "bounce"
	ReasonDuplicate              ReasonCode = "duplicate"
	// ReasonPoison: the email was set aside unparsed after imap.max_attempts
	// attempts at it ended with the process (a crash, an out-of-memory kill).
	ReasonPoison ReasonCode = "poison"
	// ReasonUnknownKey: a revoke or rotate request names a key that is
	// not a live key of the sender's partner.
	ReasonUnknownKey ReasonCode = "unknown-key"
)

// Reason is one problem with a request email, in words the partner can act on.
type Reason struct {
	Code       ReasonCode `json:"code"`
	Message    string     `json:"message"`
	Suggestion string     `json:"suggestion,omitempty"`
}

// Approval is one staff member's approval of a request.
type Approval struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
	// Person is who approved, for four eyes: the same person through two
	// sessions, or through single sign-on and an API token tied to them,
	// counts once. Empty in approvals from before it: By stands for it.
	Person string `json:"person,omitempty"`
}

// PersonKey is the person who gave the approval.
func (a Approval) PersonKey() string {
	if a.Person != "" {
		return a.Person
	}
	return a.By
}

// Attempt is one try at creating the request's key. It is written before
// the API is called, so that after a crash the batch knows to reconcile.
type Attempt struct {
	ID        string    `json:"id"`
	StartedAt time.Time `json:"started_at"`
}

// Event is what changed in one step of a request's life: the audit trail.
type Event struct {
	Ref      string    `json:"ref,omitempty"` // the request, batch or staff member it concerns
	Revision uint64    `json:"revision,omitempty"`
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	From     State     `json:"from,omitempty"`
	To       State     `json:"to,omitempty"`
	Change   string    `json:"change,omitempty"`
	// Count is how many occurrences one event stands for, when repeated
	// ones are rolled up (failed sign-ins: one event per name, address and
	// minute); 0 means one.
	Count int `json:"count,omitempty"`
	// Subject is the identity provider's subject (its stable ID) of a
	// person signed in by single sign-on; Actor is then their email.
	Subject string `json:"subject,omitempty"`
}

// Request is one key request: one environment, its scopes and a label, from
// one source email. It is the record support reviews and batches act on.
type Request struct {
	ID          string      `json:"id"`
	Kind        RequestKind `json:"kind,omitempty"` // empty in records from before kinds: an issue
	State       State       `json:"state"`
	Partner     string      `json:"partner,omitempty"` // partner ID; empty for an unknown sender
	Environment Environment `json:"environment,omitempty"`
	Scopes      []Scope     `json:"scopes,omitempty"`
	Label       string      `json:"label,omitempty"`
	Flags       []Flag      `json:"flags,omitempty"`
	Requester   string      `json:"requester"` // the From address of the source email

	SourceMessageID string    `json:"source_message_id,omitempty"`
	SourceDate      time.Time `json:"source_date"` // the email's Date, which the ID's date comes from
	SourceKey       string    `json:"source_key"`  // what the ID is derived from
	Index           int       `json:"index"`       // position of this request in its email
	MailRef         string    `json:"mail_ref,omitempty"`
	Subject         string    `json:"subject,omitempty"`
	Reasons         []Reason  `json:"reasons,omitempty"`
	Warnings        []string  `json:"warnings,omitempty"`

	Approvals []Approval `json:"approvals,omitempty"`
	Attempt   *Attempt   `json:"attempt,omitempty"`
	// KeyID is the key the request is about, in its partner's account and
	// environment: the key made (issue, rotate) or the key to revoke
	// (revoke).
	KeyID   string `json:"key_id,omitempty"`
	APIKey  string `json:"api_key,omitempty"` // the public half only; the secret is never stored
	Problem string `json:"problem,omitempty"` // why it is rejected, blocked, failed or undeliverable

	// WidenedBy names the staff who widened the request by a correction
	// (a scope, keys:manage or production added): none of them may
	// approve it, with or without four eyes.
	WidenedBy []string `json:"widened_by,omitempty"`

	// Assignee is the staff member on it; empty: nobody.
	Assignee string `json:"assignee,omitempty"`
	// Proposal is a change the partner asked for in a reply, waiting for
	// a person.
	Proposal *Proposal `json:"proposed_change,omitempty"`
	// DuplicateOf is the open request with the same partner, environment
	// and label that this one repeats (FlagDuplicate).
	DuplicateOf string `json:"duplicate_of,omitempty"`
	// StatusReplyAt is when the last automatic status reply about it was
	// queued, and StatusReplyRef what it answered: at most one an hour.
	StatusReplyAt  time.Time `json:"status_reply_at,omitzero"`
	StatusReplyRef string    `json:"status_reply_ref,omitempty"`

	// The key's life (revoke and rotate requests).
	//
	// ReplacesKeyID is the key a rotate request replaces (same partner and
	// environment); Rotation follows it until it is revoked.
	ReplacesKeyID string    `json:"replaces_key_id,omitempty"`
	Rotation      *Rotation `json:"rotation,omitempty"`
	// KeyCandidates are the live keys a revoke or rotate request named by
	// label matches when there are several: a person picks one (KeyID).
	KeyCandidates []string `json:"key_candidates,omitempty"`
	// Reason is why a revocation or rotation was asked for: the staff
	// member's reason, or the partner's own words.
	Reason string `json:"reason,omitempty"`
	// RevokedAt is when the request's key (KeyID) was revoked.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// RevokeOf is, on a revoke request that keydesk made itself (the old
	// key of a rotation, an exposed secret), the request it serves.
	RevokeOf string `json:"revoke_of,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	LastEvent *Event    `json:"last_event,omitempty"`

	// Revision is the store's revision of this record, for compare-and-set.
	Revision uint64 `json:"-"`
}

// HasFlag reports whether the request carries f.
func (r *Request) HasFlag(f Flag) bool { return slices.Contains(r.Flags, f) }

// AddFlag adds f once.
func (r *Request) AddFlag(f Flag) {
	if !r.HasFlag(f) {
		r.Flags = append(r.Flags, f)
	}
}

// ApprovedBy reports whether name has approved the request already.
func (r *Request) ApprovedBy(name string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.By == name })
}

// ApprovedByPerson reports whether the person (an Approval's PersonKey)
// has approved the request already.
func (r *Request) ApprovedByPerson(person string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.PersonKey() == person })
}

// Clone returns a deep copy, so that a change function can be retried.
func (r *Request) Clone() *Request {
	c := *r
	c.Scopes = slices.Clone(r.Scopes)
	c.Flags = slices.Clone(r.Flags)
	c.Reasons = slices.Clone(r.Reasons)
	c.Warnings = slices.Clone(r.Warnings)
	c.Approvals = slices.Clone(r.Approvals)
	c.WidenedBy = slices.Clone(r.WidenedBy)
	c.Proposal = r.Proposal.clone()
	c.KeyCandidates = slices.Clone(r.KeyCandidates)
	if r.Rotation != nil {
		x := *r.Rotation
		c.Rotation = &x
	}
	if r.Attempt != nil {
		a := *r.Attempt
		c.Attempt = &a
	}
	if r.LastEvent != nil {
		e := *r.LastEvent
		c.LastEvent = &e
	}
	return &c
}

// crockford is Crockford's base32 alphabet: no I, L, O or U, so an ID read
// out on the phone cannot be misheard as another.
var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// RequestID derives the ID of the index-th request of a source email:
// KR-YYYYMMDD-XXXX, the date the email was written (UTC) and four base32
// characters of a hash of its source key and the index. The same email
// always yields the same IDs, so a rescan creates nothing twice. salt is 0
// unless two emails of one day collide on the four characters; the store
// then asks for salt 1, 2, ….
func RequestID(date time.Time, sourceKey string, index, salt int) string {
	h := sha256.New()
	h.Write([]byte(sourceKey))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(index))
	binary.BigEndian.PutUint64(b[8:], uint64(salt))
	h.Write(b[:])
	sum := h.Sum(nil)
	return fmt.Sprintf("KR-%s-%s", date.UTC().Format("20060102"), crockford.EncodeToString(sum[:5])[:4])
}

var requestIDRE = regexp.MustCompile(`^KR-[0-9]{8}-[0-9A-HJKMNP-TV-Z]{4}$`)

// ValidRequestID reports whether id has the shape of a request ID. Input
// is upper-cased first: people type IDs in any case.
func ValidRequestID(id string) bool { return requestIDRE.MatchString(strings.ToUpper(id)) }

// SourceKey is what identifies an email for deduplication: the sender and
// its Message-ID, or, without one, a digest of the raw message.
func SourceKey(from, messageID string, raw []byte) string {
	from = strings.ToLower(strings.TrimSpace(from))
	if id := strings.Trim(strings.TrimSpace(messageID), "<>"); id != "" {
		return from + "\x00" + id
	}
	sum := sha256.Sum256(raw)
	return from + "\x00sha256:" + fmt.Sprintf("%x", sum)
}
