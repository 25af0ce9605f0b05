package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
	"github.com/emersion/go-message"
)

// MaxEntityBytes bounds a PGP/MIME entity DecryptAndVerify reads.
const MaxEntityBytes = 8 << 20

// ErrNotPGPMIME is returned for an entity that is not RFC 3156
// multipart/encrypted with exactly its two parts.
var ErrNotPGPMIME = errors.New("crypto: not a PGP/MIME encrypted entity")

// DecryptAndVerify opens a PGP/MIME entity as its recipient would: it
// decrypts it with armoredPriv (unlocked with passphrase), requires a valid
// signature by signerPub, and returns the inner MIME entity. The demo uses
// it to prove a delivery can be read; it is not on keydesk's sending path.
func DecryptAndVerify(entity []byte, armoredPriv string, passphrase []byte, signerPub string) ([]byte, error) {
	armored, err := EncryptedPart(entity)
	if err != nil {
		return nil, err
	}
	priv, err := pgp.NewKeyFromArmored(armoredPriv)
	if err != nil {
		return nil, fmt.Errorf("crypto: decryption key: %w", err)
	}
	if locked, _ := priv.IsLocked(); locked {
		unlocked, err := priv.Unlock(passphrase)
		if err != nil {
			return nil, errors.New("crypto: decryption key: the passphrase does not unlock it")
		}
		priv = unlocked
	}
	defer priv.ClearPrivateParams()
	privRing, err := pgp.NewKeyRing(priv)
	if err != nil {
		return nil, fmt.Errorf("crypto: decryption key: %w", err)
	}
	pub, err := pgp.NewKeyFromArmored(signerPub)
	if err != nil {
		return nil, fmt.Errorf("crypto: signer key: %w", err)
	}
	pubRing, err := pgp.NewKeyRing(pub)
	if err != nil {
		return nil, fmt.Errorf("crypto: signer key: %w", err)
	}
	msg, err := pgp.NewPGPMessageFromArmored(armored)
	if err != nil {
		return nil, fmt.Errorf("crypto: encrypted part: %w", err)
	}
	plain, err := privRing.Decrypt(msg, pubRing, time.Now().Unix())
	if err != nil {
		if plain != nil {
			clear(plain.Data)
		}
		return nil, fmt.Errorf("crypto: decrypt and verify: %w", err)
	}
	return plain.Data, nil
}

// EncryptedPart checks that entity is RFC 3156 multipart/encrypted and
// returns its armored OpenPGP message.
func EncryptedPart(entity []byte) (string, error) {
	if len(entity) > MaxEntityBytes {
		return "", fmt.Errorf("%w: larger than %d bytes", ErrNotPGPMIME, MaxEntityBytes)
	}
	e, err := message.Read(bytes.NewReader(entity))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotPGPMIME, err)
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/encrypted" || !strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
		return "", fmt.Errorf("%w: Content-Type is %q", ErrNotPGPMIME, e.Header.Get("Content-Type"))
	}
	mr := e.MultipartReader()
	var parts [][]byte
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotPGPMIME, err)
		}
		if len(parts) == 2 {
			return "", fmt.Errorf("%w: more than two parts", ErrNotPGPMIME)
		}
		b, err := io.ReadAll(io.LimitReader(p.Body, MaxEntityBytes))
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotPGPMIME, err)
		}
		t, _, _ := p.Header.ContentType()
		parts = append(parts, b)
		types = append(types, t)
	}
	if len(parts) != 2 || types[0] != "application/pgp-encrypted" || types[1] != "application/octet-stream" {
		return "", fmt.Errorf("%w: parts are %v, want application/pgp-encrypted and application/octet-stream", ErrNotPGPMIME, types)
	}
	if !strings.Contains(string(parts[0]), "Version: 1") {
		return "", fmt.Errorf("%w: the control part does not say Version: 1", ErrNotPGPMIME)
	}
	return string(parts[1]), nil
}
