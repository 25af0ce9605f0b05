package crypto

import (
	stdcrypto "crypto"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// KeyKind is the kind of key GenerateKey makes.
type KeyKind int

const (
	// Curve25519 is an Ed25519 primary key with a Curve25519 (ECDH)
	// encryption subkey, as gpg --quick-gen-key NAME future-default makes.
	Curve25519 KeyKind = iota
	// RSA4096 and RSA3072 are an RSA primary key with an RSA encryption subkey.
	RSA4096
	RSA3072
)

func (k KeyKind) String() string {
	switch k {
	case Curve25519:
		return "curve25519"
	case RSA4096:
		return "rsa4096"
	case RSA3072:
		return "rsa3072"
	}
	return fmt.Sprintf("KeyKind(%d)", int(k))
}

// GenerateKey makes a v4 OpenPGP key (for the demo, tests and operators
// bootstrapping a signing key) and returns it armored, without Version or
// Comment headers, locked with passphrase when one is given.
func GenerateKey(name, email string, kind KeyKind, passphrase []byte) (armoredPriv, armoredPub, fingerprint string, err error) {
	cfg := &packet.Config{
		DefaultHash:            stdcrypto.SHA256,
		DefaultCipher:          packet.CipherAES256,
		DefaultCompressionAlgo: packet.CompressionNone,
		// Keys made a second in the past, so that a message signed at once
		// is not judged to predate its key by a clock's rounding.
		Time: func() time.Time { return time.Now().Add(-time.Second) },
	}
	switch kind {
	case Curve25519:
		cfg.Algorithm = packet.PubKeyAlgoEdDSA
		cfg.Curve = packet.Curve25519
	case RSA4096:
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 4096
	case RSA3072:
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 3072
	default:
		return "", "", "", fmt.Errorf("crypto: unknown key kind %d", int(kind))
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return "", "", "", fmt.Errorf("crypto: generate key: %w", err)
	}
	key, err := pgp.NewKeyFromEntity(e)
	if err != nil {
		return "", "", "", fmt.Errorf("crypto: generate key: %w", err)
	}
	defer key.ClearPrivateParams()
	armoredPub, err = key.GetArmoredPublicKeyWithCustomHeaders("", "")
	if err != nil {
		return "", "", "", fmt.Errorf("crypto: armor public key: %w", err)
	}
	out := key
	if len(passphrase) > 0 {
		out, err = key.Lock(passphrase)
		if err != nil {
			return "", "", "", fmt.Errorf("crypto: lock key: %w", err)
		}
		defer out.ClearPrivateParams()
	}
	armoredPriv, err = out.ArmorWithCustomHeaders("", "")
	if err != nil {
		return "", "", "", fmt.Errorf("crypto: armor private key: %w", err)
	}
	return armoredPriv, armoredPub, fingerprintOf(e.PrimaryKey), nil
}
