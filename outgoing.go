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
	KindStatusReply      MessageKind = "status-reply"      // to the requester, who asked where a request stands
	KindReceived         MessageKind = "received"          // to the requester: a person is looking at it
	KindProposalOutcome  MessageKind = "proposal-outcome"  // to the requester: their correction accepted or refused
	KindStaffReply       MessageKind = "staff-reply"       // to the requester, written by support
	KindDigest           MessageKind = "digest"            // to support: what waits, and for how long
	KindKeyRevoked       MessageKind = "key-revoked"       // to the requester and the technical contact: a key was revoked as asked
	KindRotationReminder MessageKind = "rotation-reminder" // to the requester and the technical contact: a rotation's old key is revoked soon
	KindRotationDue      MessageKind = "rotation-due"      // to the requester: a key is older than the rotation policy allows
	KindSecretExposed    MessageKind = "secret-exposed"    // to the requester: their email held a live secret, which support will revoke
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
	// Thread lists every request the message is about when there are
	// several (an acknowledgement of a multi-request email); empty: just
	// RequestID. Delivery adds the sent message to each one's thread.
	Thread  []string `json:"thread,omitempty"`
	Partner string   `json:"partner,omitempty"`
	// AttemptID ties a key delivery to the key-creation attempt it carries:
	// a delivery whose attempt is no longer the request's is stale.
	AttemptID string   `json:"attempt_id,omitempty"`
	To        []string `json:"to"`
	Subject   string   `json:"subject"`
	// InReplyTo threads a reply to the partner's email (its Message-ID);
	// References, when set, is the thread's Message-IDs before it.
	InReplyTo  string   `json:"in_reply_to,omitempty"`
	References []string `json:"references,omitempty"`
	// Text is a text/plain UTF-8 body; Entity, when set, replaces it: a
	// complete MIME entity (its Content-* headers, a blank line, its body),
	// such as PGP/MIME ciphertext.
	Text      string    `json:"text,omitempty"`
	Entity    []byte    `json:"entity,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Requests lists the requests o is about: Thread, or RequestID alone.
func (o *Outgoing) Requests() []string {
	if len(o.Thread) > 0 {
		return o.Thread
	}
	if o.RequestID != "" {
		return []string{o.RequestID}
	}
	return nil
}
