package keydesk

import "time"

// MessageKind is what an outgoing email is for.
type MessageKind string

const (
	KindKeyDelivery      MessageKind = "key-delivery"      // PGP/MIME, to the technical contact
	KindAcknowledgement  MessageKind = "acknowledgement"   // to the requester
	KindRejection        MessageKind = "rejection"         // to the requester
	KindDeliveryNotice   MessageKind = "delivery-notice"   // to the requester, after a key delivery
	KindRevocationNotice MessageKind = "revocation-notice" // to the requester, an undeliverable key was revoked
	KindBatchReport      MessageKind = "batch-report"      // to support
	KindAlert            MessageKind = "alert"             // to support
)

// Outgoing is an email waiting in the outbox. Producers (intake, batch)
// say what to send and to whom; delivery writes the envelope and the outer
// headers (From, Date, Message-ID, Auto-Submitted, X-Loop) and sends it.
type Outgoing struct {
	// ID is unique and stable for what it sends (request ID, kind, attempt):
	// the outbox deduplicates on it and delivery records it as sent.
	ID        string      `json:"id"`
	Kind      MessageKind `json:"kind"`
	RequestID string      `json:"request_id,omitempty"`
	Partner   string      `json:"partner,omitempty"`
	// AttemptID ties a key delivery to the key-creation attempt it carries:
	// a delivery whose attempt is no longer the request's is stale.
	AttemptID string   `json:"attempt_id,omitempty"`
	To        []string `json:"to"`
	Subject   string   `json:"subject"`
	// InReplyTo threads a reply to the partner's email (its Message-ID).
	InReplyTo string `json:"in_reply_to,omitempty"`
	// Text is a text/plain UTF-8 body; Entity, when set, replaces it: a
	// complete MIME entity (its Content-* headers, a blank line, its body),
	// such as PGP/MIME ciphertext.
	Text      string    `json:"text,omitempty"`
	Entity    []byte    `json:"entity,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}
