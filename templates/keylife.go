package templates

import "time"

// KeyRevoked is what mail/key-revoked.tmpl gets: a key revoked as a revoke
// request asked, told to the requester and the technical contact. It
// names the key, never a secret.
type KeyRevoked struct {
	RequestID   string // the revoke request
	Partner     string // the partner's name
	Environment string
	KeyID       string
	Label       string
	APIKey      string // the public half, for the partner to recognise the key
	RevokedAt   time.Time
	// Reason is why it was revoked: the requester's or staff's words.
	Reason string
	// Rotation: the key was the old key of a rotation.
	Rotation bool
}
