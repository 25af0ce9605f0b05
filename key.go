package keydesk

import (
	"strings"
	"time"
)

// KeyRef names one API key. The Buildmarkets API numbers keys per partner
// account and environment (both environments of one partner may hold a
// key-001), so a key ID alone never identifies a key: every set, map and
// comparison of keys in keydesk uses the whole triple.
type KeyRef struct {
	Partner     string      `json:"partner"`
	Environment Environment `json:"environment"`
	ID          string      `json:"key_id"`
}

// String is partner/environment/key_id, as logs and notes show a key.
func (k KeyRef) String() string { return k.Partner + "/" + string(k.Environment) + "/" + k.ID }

// IsZero reports whether k names no key.
func (k KeyRef) IsZero() bool { return k.ID == "" }

// KeyRef names the key the request holds; zero if it holds none.
func (r *Request) KeyRef() KeyRef {
	if r.KeyID == "" {
		return KeyRef{}
	}
	return KeyRef{Partner: r.Partner, Environment: r.Environment, ID: r.KeyID}
}

// Key is what the Buildmarkets API tells of a key: never its secret. The
// API client returns it and the batch reads it; one type serves both.
type Key struct {
	ID        string
	Label     string
	APIKey    string
	Scopes    []Scope
	CreatedAt time.Time // zero when the API gave none
}

// CreatedKey is a key just created, with its secret: the only time the API
// reveals it. The caller wipes APISecret once it is encrypted.
type CreatedKey struct {
	Key
	APISecret Secret
}

// KeyDelivery is one new API key pair on its way to the technical contact:
// what the batch hands to the sealer, and what the delivery email carries.
type KeyDelivery struct {
	RequestID   string
	PartnerName string
	Environment Environment
	Scopes      []Scope
	Label       string
	KeyID       string
	APIKey      string
	// APISecret is the secret half, shown once by the API. The sealer reads
	// it but does not wipe it: the caller owns it and wipes it.
	APISecret Secret
	CreatedAt time.Time
	// Subject is the real subject, sent only inside the encryption as a
	// protected header; empty: the key-delivery template's subject.
	Subject string
	// ReplacesKeyID is, for a rotation, the key the new one replaces (same
	// partner and environment); OldKeyStops is when that key is revoked at
	// the latest (zero: only once the contact confirms).
	ReplacesKeyID string
	OldKeyStops   time.Time
}

// Rotation follows the old key of a rotate request once the new one is
// delivered: it is revoked when the technical contact confirms (or staff
// do), or at Due, whichever comes first, with a reminder before Due.
type Rotation struct {
	// Due is when the old key is revoked at the latest: delivery plus
	// rotation.grace.
	Due time.Time `json:"due,omitzero"`
	// ConfirmedAt and ConfirmedBy: the contact's reply, or the staff
	// member, that said the new key is in use.
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	ConfirmedBy string    `json:"confirmed_by,omitempty"`
	// RemindedAt is when the reminder before Due was queued.
	RemindedAt time.Time `json:"reminded_at,omitzero"`
	// RevokeRequest is the revoke request made for the old key.
	RevokeRequest string `json:"revoke_request,omitempty"`
	// OldRevokedAt is when the old key was revoked.
	OldRevokedAt time.Time `json:"old_revoked_at,omitzero"`
}

// MadeBy says who made a key of the inventory.
type MadeBy string

const (
	MadeByKeydesk MadeBy = "keydesk" // a request of keydesk made it
	MadeByPartner MadeBy = "partner" // made outside keydesk, with the partner's own keys:manage key
)

// InventoryKey is one key of a partner account as keydesk knows it: what
// the API lists, joined with keydesk's records. It never holds a secret.
type InventoryKey struct {
	KeyRef
	Label     string    `json:"label"`
	Scopes    []Scope   `json:"scopes"`
	APIKey    string    `json:"api_key,omitempty"` // the public half
	CreatedAt time.Time `json:"created_at,omitzero"`
	// FirstSeen is when keydesk first listed the key (or made it): a key
	// known before an attempt started is never that attempt's orphan.
	FirstSeen time.Time `json:"first_seen"`
	// RevokedAt: revoked by keydesk, or gone from the API's list (revoked
	// outside keydesk) when keydesk noticed.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RequestID string    `json:"request_id,omitempty"` // the request that made it
	MadeBy    MadeBy    `json:"made_by"`
	// RotationRemindedAt is when the requester was reminded that the key
	// is older than rotation.max_age allows: once per key.
	RotationRemindedAt time.Time `json:"rotation_reminded_at,omitzero"`
}

// Live reports whether the key works (is not revoked).
func (k *InventoryKey) Live() bool { return k.RevokedAt.IsZero() }

// AgeDays is the key's age in whole days at now (from its creation, or
// from when keydesk first saw it when the API gave no creation time).
func (k *InventoryKey) AgeDays(now time.Time) int {
	from := k.CreatedAt
	if from.IsZero() {
		from = k.FirstSeen
	}
	if from.IsZero() || now.Before(from) {
		return 0
	}
	return int(now.Sub(from) / (24 * time.Hour))
}

// Inventory is the keys of one partner account in one environment, as
// the batch role last listed them: the record the review role shows.
type Inventory struct {
	Partner     string         `json:"partner"`
	Environment Environment    `json:"environment"`
	ListedAt    time.Time      `json:"listed_at,omitzero"`
	Keys        []InventoryKey `json:"keys"`
	// Problem is why the last listing failed (the keys are then those of
	// the listing before).
	Problem string `json:"problem,omitempty"`
	// Revision is the store's revision, for compare-and-set.
	Revision uint64 `json:"-"`
}

// Key returns the inventory's key with the ID id, or nil (also for a nil
// inventory: one never listed).
func (inv *Inventory) Key(id string) *InventoryKey {
	if inv == nil {
		return nil
	}
	for i := range inv.Keys {
		if inv.Keys[i].ID == id {
			return &inv.Keys[i]
		}
	}
	return nil
}

// Live returns the keys that are not revoked, labelled label when label is
// not empty (compared as partners write it: case and spaces aside).
func (inv *Inventory) Live(label string) []InventoryKey {
	if inv == nil {
		return nil
	}
	var out []InventoryKey
	for _, k := range inv.Keys {
		if k.Live() && (label == "" || strings.EqualFold(strings.TrimSpace(k.Label), strings.TrimSpace(label))) {
			out = append(out, k)
		}
	}
	return out
}

// RotationDue reports whether the rotation policy (rotation.max_age and
// rotation.remind_before) calls for the key to be rotated at now: it is
// live and older than maxAge − remindBefore. A maxAge of 0 is no policy.
// The age counts from the key's creation, or from when keydesk first saw
// it when the API gave no creation time; a key of unknown age is never
// due, so that a listing without dates cannot flood the partner page.
func (k *InventoryKey) RotationDue(now time.Time, maxAge, remindBefore time.Duration) bool {
	if maxAge <= 0 || !k.Live() {
		return false
	}
	from := k.CreatedAt
	if from.IsZero() {
		from = k.FirstSeen
	}
	if from.IsZero() {
		return false
	}
	return now.Sub(from) >= maxAge-max(remindBefore, 0)
}
