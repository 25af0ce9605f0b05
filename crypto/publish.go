package crypto

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"net/mail"
	"net/url"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// KeyFingerprint returns the primary key's fingerprint of the one public
// key in data (armored or binary), upper-case hex as partners.yaml pins it.
// A file holding a private key or several keys is refused: `keydesk init`
// pins what it reads, so it must be exactly the contact's public key.
func KeyFingerprint(data []byte) (string, error) {
	el, err := parseKeys(data)
	if err != nil {
		return "", err
	}
	if len(el) != 1 {
		return "", problemf(ProblemUnreadable, "holds %d keys: export only the contact's key (gpg --armor --export FINGERPRINT)", len(el))
	}
	if el[0].PrivateKey != nil {
		return "", problemf(ProblemUnreadable, "holds a PRIVATE key: ask the contact for their public key only (gpg --armor --export FINGERPRINT)")
	}
	return fingerprintOf(el[0].PrimaryKey), nil
}

// BinaryPublicKey returns the one public key in data (armored or binary)
// in binary form, as a Web Key Directory serves it.
func BinaryPublicKey(data []byte) ([]byte, error) {
	el, err := parseKeys(data)
	if err != nil {
		return nil, err
	}
	if len(el) != 1 || el[0].PrivateKey != nil {
		return nil, problemf(ProblemUnreadable, "must hold exactly one public key")
	}
	var b bytes.Buffer
	if err := el[0].Serialize(&b); err != nil {
		return nil, fmt.Errorf("crypto: serialize public key: %w", err)
	}
	return b.Bytes(), nil
}

// zbase32 is the z-base-32 alphabet of RFC 6189 (and of WKD).
const zbase32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

// WKDHash is the Web Key Directory name of an address's local part: the
// z-base-32 encoding of the SHA-1 of the local part in lower case
// (draft-koch-openpgp-webkey-service, section 3.1).
func WKDHash(localPart string) string {
	sum := sha1.Sum([]byte(keydesk.ASCIILower(localPart)))
	var b strings.Builder
	var acc uint32
	bits := 0
	for _, c := range sum {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			b.WriteByte(zbase32[(acc>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		b.WriteByte(zbase32[(acc<<(5-bits))&31])
	}
	return b.String()
}

// WKD is where partners' mail clients look up the key of an address in a
// Web Key Directory.
type WKD struct {
	// Hash is the file name of the key under .../hu/.
	Hash string
	// Advanced is the URL of the advanced method (an openpgpkey.
	// subdomain), Direct that of the direct method; clients try the
	// advanced one first.
	Advanced, Direct string
}

// WKDFor returns the Web Key Directory locations of address (a bare
// address or "Name <address>").
func WKDFor(address string) (WKD, error) {
	a, err := mail.ParseAddress(address)
	if err != nil {
		return WKD{}, fmt.Errorf("crypto: %q is not an email address", address)
	}
	at := strings.LastIndexByte(a.Address, '@')
	local, domain := a.Address[:at], keydesk.ASCIILower(a.Address[at+1:])
	h := WKDHash(local)
	q := "?l=" + url.QueryEscape(local)
	return WKD{
		Hash:     h,
		Advanced: "https://openpgpkey." + domain + "/.well-known/openpgpkey/" + domain + "/hu/" + h + q,
		Direct:   "https://" + domain + "/.well-known/openpgpkey/hu/" + h + q,
	}, nil
}
