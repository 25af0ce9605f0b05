// Package delivery sends keydesk's outgoing mail: it consumes the OUTBOX
// work queue one message at a time, writes the outer headers, submits the
// email over SMTP, and for key deliveries moves the request to delivered
// (or delivery_failed) and tells the requester.
//
// Invariants:
//   - Sent once: before a message is submitted its ID is claimed in the
//     deliveries bucket (state sending, a compare-and-set), and marked sent
//     the moment the server accepts it, before the queue is acked. A
//     redelivered message already marked sent is acked without sending. The
//     one ambiguous case is a crash between the server's acceptance and the
//     sent mark: the record says sending, and the message is sent again,
//     with the same Message-ID (derived from its ID), so receivers can tell
//     the copies apart. A lost key delivery costs a revoked key; a duplicate
//     costs nothing, since it is the same ciphertext to the same contact.
//   - A key delivery goes only to the technical contact registered for its
//     partner in the registry in force, and only while its request is
//     generated with the same key-creation attempt; a stale one is dropped.
//     Delivery never sees a plain secret: a key delivery whose entity is not
//     multipart/encrypted is refused, and it never imports the API client.
//   - Every failure is temporary (retried with a delay until delivery.retry_for
//     from the message's creation) or permanent (a 5xx reply to MAIL, RCPT or
//     DATA; a malformed message): permanent ones are terminated into the
//     DEADLETTER stream, where `keydesk outbox dead` lists them and
//     `keydesk outbox retry` sends them again.
package delivery
