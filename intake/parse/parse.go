// Package parse turns one raw request email into what keydesk does with it:
// a verdict (accept, reject, review, ignore), the key requests it holds, ready
// for the queue, and the reasons and warnings a person can act on.
//
// It reads the message once, as a stream, through go-message (charsets
// registered), prefers text/plain and falls back to HTML rendered as text,
// drops quoted replies and signatures, follows forwards (inline or attached
// as message/rfc822), reads the Environment, Scopes and Label fields, and
// authenticates the sender against the partner registry and our own MTA's
// Authentication-Results.
//
// Invariants:
//   - every input is hostile: the whole message, its header, MIME depth, part
//     count, decoded text, lines, requests per email and scopes per request
//     are bounded, and so is every header block (the message's, each part's,
//     each attached message's: bytes and fields, one and all together);
//     the bound that was hit is named in a reason or warning;
//   - Parse returns an error only when reading fails; bad mail is a verdict;
//   - an address or key named inside an email is never trusted: the sender is
//     the From of the message as authenticated by a trusted authserv-id, or,
//     for a Relationship Manager's forward, the original sender found in the
//     forward, which is always flagged for a person to approve;
//   - a reply is only ever addressed to an authenticated sender; unknown
//     senders, auto-replies, bounces and loops get none (no backscatter);
//   - the same message always yields the same request IDs.
package parse

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/buildmarkets/keydesk"
)

// Verdict is what intake does with an email.
type Verdict string

const (
	// Accept: an authenticated partner's valid request(s); queue them and
	// send an acknowledgement.
	Accept Verdict = "accept"
	// Reject: an authenticated partner's email that cannot be used as is;
	// record it as rejected and send a rejection that says how to fix it.
	Reject Verdict = "reject"
	// Review: support must look (unknown or unauthenticated sender, not a
	// clear request); queue it for review, send nothing.
	Review Verdict = "review"
	// Ignore: auto-replies, bounces, mailing lists, our own mail; nothing
	// is queued and nothing is sent.
	Ignore Verdict = "ignore"
)

// Limits bound what one email may cost. Zero fields take the defaults.
type Limits struct {
	HeaderBytes int64 // the top-level header block; default 256 KiB
	// PartHeaderBytes bounds one MIME part's or attached message's header
	// block; default 64 KiB.
	PartHeaderBytes int64
	// HeaderFields bounds the fields of any one header block; default 1000.
	HeaderFields int
	// TotalHeaderBytes and TotalHeaderFields bound all header blocks of
	// the message together, its own included; default 1 MiB and 5000.
	TotalHeaderBytes  int64
	TotalHeaderFields int
	Depth             int   // MIME nesting, message/rfc822 included; default 8
	Parts             int   // MIME parts in all; default 100
	TextBytes         int   // decoded text examined, all parts together; default 256 KiB
	HTMLBytes         int64 // raw HTML read from one part; default 2 MiB
	Lines             int   // lines of text examined; default 2000
	LineBytes         int   // longer lines are cut; default 2000
	Requests          int   // requests per email; default 10
	ScopeWords        int   // words in one request's Scopes; default 32
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.HeaderBytes <= 0 {
		l.HeaderBytes = 256 << 10
	}
	if l.HTMLBytes <= 0 {
		l.HTMLBytes = 2 << 20
	}
	if l.PartHeaderBytes <= 0 {
		l.PartHeaderBytes = 64 << 10
	}
	if l.TotalHeaderBytes <= 0 {
		l.TotalHeaderBytes = 1 << 20
	}
	def(&l.HeaderFields, 1000)
	def(&l.TotalHeaderFields, 5000)
	def(&l.Depth, 8)
	def(&l.Parts, 100)
	def(&l.TextBytes, 256<<10)
	def(&l.Lines, 2000)
	def(&l.LineBytes, 2000)
	def(&l.Requests, 10)
	def(&l.ScopeWords, 32)
	return l
}

// DefaultMaxBytes bounds a whole message unless Options.MaxBytes says otherwise.
const DefaultMaxBytes = 10 << 20

// Options configure Parse.
type Options struct {
	// Registry is the partner registry; nil means every sender is unknown.
	Registry *keydesk.Registry
	// TrustedAuthservIDs are our own MTA's authserv-ids: only
	// Authentication-Results headers stamped by one of them count.
	TrustedAuthservIDs []string
	// Microsoft365TenantID, when set, is the directory (tenant) ID of the
	// Microsoft 365 organisation that hosts the mailbox: the topmost
	// Authentication-Results header, which Exchange Online writes without
	// an authserv-id, counts as our own MTA's when the tenant's headers
	// vouch for it (see dmarc).
	Microsoft365TenantID string
	// RequireDMARC sends mail without a trusted dmarc=pass for its From
	// domain to review, unanswered. Without it, such mail is flagged only.
	RequireDMARC bool
	// InternalDomains are Buildmarkets' own domains: Relationship Managers
	// forward partners' requests from there.
	InternalDomains []string
	// RelationshipManagers, when set, are the only addresses whose
	// forwards are read as a partner's request; without them, any address
	// at an internal domain is taken for a Relationship Manager.
	RelationshipManagers []string
	// MaxBytes bounds the whole message (default DefaultMaxBytes): a
	// larger one is refused as too large.
	MaxBytes int64
	// KeepBytes, when set, is how much of the raw email is kept (intake
	// keeps a copy cut at imap.max_message_bytes): each attachment past it
	// is named in a warning, so the review shows what was not kept.
	KeepBytes int64
	// Limits bound the parts of a message.
	Limits Limits
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ReceivedAt is when the mailbox received the message (IMAP
	// INTERNALDATE). It dates the requests when the Date header is missing
	// or absurd, so that a rescan derives the same IDs; zero falls back to Now.
	ReceivedAt time.Time
	// ContactKeyProblem says why a partner's technical-contact key cannot
	// be used now (nil: it can). A problem rejects the email with
	// contact-key-unusable: a key that cannot be delivered is never made.
	ContactKeyProblem func(p *keydesk.Partner) error
	// ExpiringSoon flags requests of a partner whose contact key expires soon.
	ExpiringSoon func(p *keydesk.Partner) bool
}

// Result is what one email means.
type Result struct {
	MessageID string // without angle brackets
	Subject   string
	// From is the authenticated original sender (the partner side). For a
	// forward by a Relationship Manager it is the sender found in the forward.
	From string
	// Via is the Relationship Manager who forwarded the email, if any.
	Via     string
	Date    time.Time
	Partner *keydesk.Partner // nil for unknown senders
	Verdict Verdict
	// Requests are ready for queue.Create: IDs derived from the source,
	// state approved, pending_review or rejected. None for Ignore.
	Requests []*keydesk.Request
	Reasons  []keydesk.Reason
	Warnings []string
	// ReplyTo is where the acknowledgement or rejection goes: the
	// authenticated sender (the Relationship Manager for a forward); empty
	// when no reply is due.
	ReplyTo string
	// SourceKey identifies the message for deduplication.
	SourceKey string
	// Size is the number of bytes read.
	Size int64

	// The conversation: what a reply says about the requests it answers.

	// InReplyTo and References are the Message-IDs the email answers
	// (without angle brackets, as written), at most MaxReferences of
	// them together, each at most MaxMessageIDLength bytes.
	InReplyTo  []string
	References []string
	// SubjectIDs are the request IDs (KR-…) named in the subject, and
	// TextIDs those in the sender's own new text (never the quoted
	// history), upper-cased, at most MaxNamedIDs each.
	SubjectIDs []string
	TextIDs    []string
	// Authenticated: the sender is an authorised requester of Partner and
	// passed DMARC, writing for themselves (no forward): an email that
	// may speak for the partner's requests.
	Authenticated bool
	// Stated are the fields the sender's own text states, one per request
	// block and environment, as the parser read them; a field the email
	// left out is not Has. Their Reasons are what stands against the
	// fields stated (a bad scope), never a field left out.
	Stated []Stated
	// Question: the sender's own text asks where things stand ("any
	// update?", "where is my key", "Stand?", "des nouvelles ?").
	Question bool
	// Text is the sender's own new text, inert (keydesk.SafeText), at
	// most MaxOwnText bytes.
	Text string

	// The key's life.

	// KeyAsks are the keys the sender's own text asks to revoke or
	// rotate; each has its request in Requests (kind revoke or rotate,
	// pending_review), unresolved: intake resolves them against the
	// partner's key inventory.
	KeyAsks []KeyAsk
	// Confirms: the sender's own text says a rotation is done ("done",
	// "confirmed", "the new key is in use"). It means something only in
	// a reply to a delivered rotation.
	Confirms bool
	// DMARC: our MTA stamped dmarc=pass for the From domain and the
	// email could be read whole, whoever the sender is.
	DMARC bool
}

// Stated is one request's fields as an email states them.
type Stated struct {
	Environment    keydesk.Environment
	HasEnvironment bool
	Scopes         []keydesk.Scope
	HasScopes      bool
	Label          string
	HasLabel       bool
	Reasons        []keydesk.Reason
}

// Any reports whether s states some field.
func (s Stated) Any() bool { return s.HasEnvironment || s.HasScopes || s.HasLabel }

// errTooLarge is the cause of a read stopped by Options.MaxBytes; Parse
// turns it into a too-large reason, never returns it.
var errTooLarge = errors.New("parse: message exceeds the size limit")

// countingReader counts and hashes what passes and stops past the limit.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
	h     hash.Hash
	over  bool
	err   error // the underlying reader's error other than EOF
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.over {
		return 0, errTooLarge
	}
	if rem := c.limit + 1 - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		c.over = true
		n -= int(c.n - c.limit)
		c.n = c.limit
		c.h.Write(p[:n])
		return n, errTooLarge
	}
	c.h.Write(p[:n])
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// Parse reads one raw email from r and says what it means. Its error is
// for reading r only (the mailbox connection failed): every property of the
// mail itself, however broken, ends in a verdict with reasons.
func Parse(r io.Reader, o Options) (*Result, error) {
	o.Limits = o.Limits.withDefaults()
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cr := &countingReader{r: r, limit: o.MaxBytes, h: sha256.New()}
	m := readMessage(cr, o.Limits, func() int64 { return cr.n })
	if cr.err != nil {
		return nil, fmt.Errorf("parse: read message: %w", cr.err)
	}
	if cr.over {
		m.tooLarge = true
	} else {
		// Drain what the MIME walk left unread (an epilogue, a part after a
		// bound was hit), so the size and the digest cover the whole message.
		if _, err := io.Copy(io.Discard, cr); err != nil {
			if !errors.Is(err, errTooLarge) {
				return nil, fmt.Errorf("parse: read message: %w", err)
			}
			m.tooLarge = true
		}
	}
	m.size = cr.n
	res := decide(m, o, hex.EncodeToString(cr.h.Sum(nil)))
	res.Size = cr.n
	return res, nil
}
