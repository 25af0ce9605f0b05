// Package crypto is keydesk's OpenPGP: it checks partners' technical-contact
// keys and builds the PGP/MIME email that carries a new API key pair to the
// one key pinned for the partner, signed by keydesk's own key.
//
// Invariants:
//   - A contact key is used only if its full fingerprint equals the pinned
//     one, it is a v4 key, it has a valid encryption-capable (sub)key at the
//     time of use (neither expired nor revoked), and both that key and the
//     primary key are strong enough (RSA ≥ 3072 bits by default, or an
//     elliptic curve of 128-bit strength or better). Keys are selected by
//     fingerprint, never by user ID.
//   - What is sent is readable by GnuPG 2.2: one OpenPGP message with a v4
//     signature, PKESK v3 and SEIPD v1 with MDC, never AEAD (gopenpgp v2
//     without an AEAD config). The package never calls gopenpgp's
//     crypto.UpdateTime, so key validity is judged at the real time, or at
//     the time a caller passes.
//   - The API secret is never held in a Go string: templates see a random
//     placeholder, and the secret's bytes are spliced into a buffer this
//     package owns, which is zeroed once the message is encrypted. Errors
//     never quote the plaintext.
package crypto
