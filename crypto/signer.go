package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/buildmarkets/keydesk"
)

// Signer is keydesk's own OpenPGP key, unlocked, that signs every delivery.
// It is safe for concurrent use.
type Signer struct {
	ring        *pgp.KeyRing
	fingerprint string
	public      string
	expires     time.Time
}

// LoadSigner reads keydesk's armored private key from file and unlocks it
// with passphrase (empty for an unprotected key). The key must be able to
// sign now: a v4 key, not expired or revoked, strong enough.
func LoadSigner(armoredPrivateKeyFile string, passphrase keydesk.Secret) (*Signer, error) {
	data, err := os.ReadFile(armoredPrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("crypto: signing key: %w", err)
	}
	defer clear(data)
	s, err := NewSigner(data, passphrase.RevealBytes(), time.Now())
	if err != nil {
		return nil, fmt.Errorf("crypto: signing key %s: %w", armoredPrivateKeyFile, err)
	}
	return s, nil
}

// NewSigner unlocks an armored private key held in memory and checks it can
// sign at now.
func NewSigner(armoredPrivate, passphrase []byte, now time.Time) (*Signer, error) {
	if len(armoredPrivate) > MaxKeyBytes {
		return nil, errors.New("the key file is too large to be a private key")
	}
	key, err := pgp.NewKeyFromArmoredReader(bytes.NewReader(armoredPrivate))
	if err != nil {
		return nil, fmt.Errorf("not an armored OpenPGP private key: %w", err)
	}
	if !key.IsPrivate() {
		return nil, errors.New("holds a public key: signing_key.file must hold keydesk's armored PRIVATE key")
	}
	e := key.GetEntity()
	if v := e.PrimaryKey.Version; v != 4 {
		return nil, fmt.Errorf("is a version %d key: use a v4 key, which GnuPG 2.2 can verify", v)
	}
	locked, err := key.IsLocked()
	if err != nil {
		return nil, err
	}
	if locked {
		if len(passphrase) == 0 {
			return nil, errors.New("is protected by a passphrase and none is configured (signing_key.passphrase or passphrase_file)")
		}
		unlocked, err := key.Unlock(passphrase)
		if err != nil {
			return nil, errors.New("the passphrase does not unlock it (signing_key.passphrase)")
		}
		key.ClearPrivateParams()
		key = unlocked
		e = key.GetEntity()
	}
	selfSig, _ := e.PrimarySelfSignature()
	if selfSig == nil {
		return nil, errors.New("has no valid self-signature")
	}
	if e.Revoked(now) {
		return nil, errors.New("is revoked: generate a new signing key and publish it to partners")
	}
	sk, ok := e.SigningKey(now)
	if !ok {
		if exp, has := keyExpiry(e.PrimaryKey, selfSig); has && !now.Before(exp) {
			return nil, fmt.Errorf("expired on %s: extend it (gpg --quick-set-expire) and export it again", exp.UTC().Format("2006-01-02"))
		}
		return nil, errors.New("has no valid signing (sub)key")
	}
	var c Checker
	if err := c.strongEnough(e.PrimaryKey, "primary key"); err != nil {
		return nil, err
	}
	if err := c.strongEnough(sk.PublicKey, "signing key"); err != nil {
		return nil, err
	}
	pub, err := key.GetArmoredPublicKeyWithCustomHeaders("", "")
	if err != nil {
		return nil, err
	}
	ring, err := pgp.NewKeyRing(key)
	if err != nil {
		return nil, err
	}
	primaryExp, _ := keyExpiry(e.PrimaryKey, selfSig)
	subExp, _ := keyExpiry(sk.PublicKey, sk.SelfSignature)
	return &Signer{ring: ring, fingerprint: fingerprintOf(e.PrimaryKey), public: pub, expires: earliest(primaryExp, subExp)}, nil
}

// earliest returns the earliest non-zero time (zero if all are).
func earliest(ts ...time.Time) time.Time {
	var r time.Time
	for _, t := range ts {
		if !t.IsZero() && (r.IsZero() || t.Before(r)) {
			r = t
		}
	}
	return r
}

// Fingerprint is the signing key's full fingerprint, upper-case hex.
func (s *Signer) Fingerprint() string { return s.fingerprint }

// PublicKey is the signing key's armored public key, for partners to verify
// deliveries with.
func (s *Signer) PublicKey() string { return s.public }

// Expires is when the signing key stops being able to sign (zero: never).
func (s *Signer) Expires() time.Time { return s.expires }

// Close wipes the unlocked private key from memory. A closed Signer must
// not be used.
func (s *Signer) Close() {
	if s != nil && s.ring != nil {
		s.ring.ClearPrivateParams()
	}
}
