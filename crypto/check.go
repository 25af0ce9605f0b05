package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/buildmarkets/keydesk"
)

// Problem names why a contact key cannot be used. The values are stable:
// other parts show them and tests match on them.
type Problem string

const (
	ProblemUnreadable          Problem = "unreadable"
	ProblemFingerprintMismatch Problem = "fingerprint-mismatch"
	ProblemExpired             Problem = "expired"
	ProblemRevoked             Problem = "revoked"
	ProblemNoEncryptionKey     Problem = "no-encryption-key"
	ProblemWeak                Problem = "weak"
	ProblemV6                  Problem = "v6" // v5 and v6 keys: GnuPG 2.2 reads neither
)

// KeyProblem is why a key was refused. Detail says it in words an operator
// can act on; it never holds key material beyond fingerprints and dates.
type KeyProblem struct {
	Problem Problem
	Detail  string
	// Expires is when the key stopped being usable, for ProblemExpired.
	Expires time.Time
}

func (e *KeyProblem) Error() string { return e.Detail }

// Is lets errors.Is match a KeyProblem by its Problem alone:
// errors.Is(err, &KeyProblem{Problem: ProblemExpired}).
func (e *KeyProblem) Is(target error) bool {
	t, ok := target.(*KeyProblem)
	return ok && t.Problem == e.Problem && (t.Detail == "" || t.Detail == e.Detail)
}

func problemf(p Problem, format string, args ...any) *KeyProblem {
	return &KeyProblem{Problem: p, Detail: fmt.Sprintf(format, args...)}
}

// DefaultMinRSABits is the smallest RSA (or DSA, ElGamal) modulus accepted
// when Checker.MinRSABits is zero: 3072 bits is 128-bit strength, as is
// Curve25519.
const DefaultMinRSABits = 3072

// MaxKeyBytes bounds a contact key file. Real keys are a few KiB; a key
// carrying thousands of third-party signatures is refused with a hint.
const MaxKeyBytes = 1 << 20

// maxKeysInFile bounds how many keys a contact key file may hold.
const maxKeysInFile = 32

// Checker checks contact keys. The zero value uses DefaultMinRSABits.
type Checker struct {
	// MinRSABits is the smallest RSA, DSA or ElGamal key accepted.
	MinRSABits int
}

// CheckContactKey reports whether the key in armored (armored or binary
// OpenPGP) whose fingerprint is the pinned one can be used to encrypt at
// now, and returns when it stops being usable (zero: never). Errors are
// *KeyProblem; with ProblemExpired, the expiry is returned too.
func (c Checker) CheckContactKey(armored []byte, fingerprint string, now time.Time) (time.Time, error) {
	ck, err := c.contactKey(armored, fingerprint, now)
	if err != nil {
		var kp *KeyProblem
		if errors.As(err, &kp) {
			return kp.Expires, err
		}
		return time.Time{}, err
	}
	return ck.expires, nil
}

// CheckPartnerKey checks p's technical-contact key (the armored key and
// pinned fingerprint loaded from partners.yaml) as it would be used at now.
// Run it before creating a key: a key that cannot be delivered is never
// made. The error names the partner, the key and the problem, and wraps the
// *KeyProblem.
func CheckPartnerKey(p *keydesk.Partner, now time.Time) error {
	if p == nil {
		return errors.New("crypto: no partner")
	}
	_, err := Checker{}.contactKey([]byte(p.TechnicalContact.ArmoredKey), p.TechnicalContact.Fingerprint, now)
	if err != nil {
		return partnerKeyError(p, err)
	}
	return nil
}

func partnerKeyError(p *keydesk.Partner, err error) error {
	key := p.TechnicalContact.KeyFile
	if key == "" {
		key = "the contact key"
	}
	return fmt.Errorf("crypto: partner %s: technical contact %s: %s (pinned %s): %w",
		p.ID, p.TechnicalContact.Email, key, FormatFingerprint(p.TechnicalContact.Fingerprint), err)
}

// contactKey is a checked contact key, ready to encrypt to.
type contactKey struct {
	entity  *openpgp.Entity
	enc     openpgp.Key
	expires time.Time
}

func (c Checker) minBits() int {
	if c.MinRSABits <= 0 {
		return DefaultMinRSABits
	}
	return c.MinRSABits
}

func (c Checker) contactKey(data []byte, pinned string, now time.Time) (*contactKey, error) {
	pinned = keydesk.NormalizeFingerprint(pinned)
	if pinned == "" {
		return nil, problemf(ProblemFingerprintMismatch, "no fingerprint is pinned: pin the key's full fingerprint, verified with the contact out of band")
	}
	el, err := readKeys(data)
	if err != nil {
		return nil, err
	}
	var e *openpgp.Entity
	var got []string
	for _, cand := range el {
		fp := fingerprintOf(cand.PrimaryKey)
		if fp == pinned {
			e = cand
			break
		}
		for _, sk := range cand.Subkeys {
			if fingerprintOf(sk.PublicKey) == pinned {
				return nil, problemf(ProblemFingerprintMismatch,
					"the pinned fingerprint is a subkey's: pin the primary key's fingerprint %s", FormatFingerprint(fp))
			}
		}
		got = append(got, FormatFingerprint(fp))
	}
	if e == nil {
		return nil, problemf(ProblemFingerprintMismatch,
			"does not match the pinned fingerprint (got %s): if the contact changed keys, verify the new fingerprint with them out of band and pin it",
			strings.Join(got, ", "))
	}
	if v := e.PrimaryKey.Version; v != 4 {
		return nil, problemf(ProblemV6, "is a version %d key, which GnuPG 2.2 and many mail clients cannot use: ask the contact for a v4 key (Curve25519 or RSA-3072+)", v)
	}
	selfSig, ident := e.PrimarySelfSignature()
	if selfSig == nil {
		return nil, problemf(ProblemUnreadable, "has no valid self-signature")
	}
	if e.Revoked(now) || (ident != nil && ident.Revoked(now)) {
		return nil, problemf(ProblemRevoked, "is revoked%s: ask the contact for their new key", revocationReason(e.Revocations))
	}
	if e.PrimaryKey.CreationTime.After(now) {
		return nil, problemf(ProblemUnreadable, "was created in the future (%s): check the contact's clock and key", e.PrimaryKey.CreationTime.UTC().Format(time.RFC3339))
	}
	if exp, ok := keyExpiry(e.PrimaryKey, selfSig); ok && !now.Before(exp) {
		kp := problemf(ProblemExpired, "expired on %s: ask the contact to extend its expiry (gpg --quick-set-expire) and send the updated key", exp.UTC().Format("2006-01-02"))
		kp.Expires = exp
		return nil, kp
	}
	if selfSig.SigExpired(now) {
		return nil, problemf(ProblemExpired, "its self-signature expired: ask the contact to refresh the key and send it again")
	}
	if err := c.strongEnough(e.PrimaryKey, "primary key"); err != nil {
		return nil, err
	}
	enc, ok := e.EncryptionKey(now)
	if !ok {
		return nil, whyNoEncryptionKey(e, now)
	}
	if err := c.strongEnough(enc.PublicKey, "encryption key"); err != nil {
		return nil, err
	}
	primaryExp, _ := keyExpiry(e.PrimaryKey, selfSig)
	encExp, _ := keyExpiry(enc.PublicKey, enc.SelfSignature)
	ck := &contactKey{entity: e, enc: enc, expires: earliest(primaryExp, encExp)}
	return ck, nil
}

// parsed memoizes readKeys by the SHA-256 of the key file: parsing checks
// every self-signature, which is most of a delivery's CPU time, and the
// result depends on the bytes alone. Validity at a given time (expiry,
// revocation) is judged afresh on every use. Entities are only read after
// parsing, so sharing them between goroutines is safe.
var parsed = struct {
	sync.Mutex
	m map[[32]byte]openpgp.EntityList
}{m: map[[32]byte]openpgp.EntityList{}}

// maxParsed bounds the memo; it is cleared when full (partners are few).
const maxParsed = 256

func readKeys(data []byte) (openpgp.EntityList, error) {
	if len(data) > MaxKeyBytes {
		return parseKeys(data) // refused by size, before any hashing
	}
	sum := sha256.Sum256(data)
	parsed.Lock()
	el, ok := parsed.m[sum]
	parsed.Unlock()
	if ok {
		return el, nil
	}
	el, err := parseKeys(data)
	if err != nil {
		return nil, err
	}
	parsed.Lock()
	if len(parsed.m) >= maxParsed {
		clear(parsed.m)
	}
	parsed.m[sum] = el
	parsed.Unlock()
	return el, nil
}

// parseKeys parses an armored or binary key file, bounded in size and count.
// Key files come from partners: a parser panic on a hostile file is turned
// into a refusal rather than a crash at start.
func parseKeys(data []byte) (el openpgp.EntityList, err error) {
	defer func() {
		if r := recover(); r != nil {
			el, err = nil, problemf(ProblemUnreadable, "is not a readable OpenPGP key (the parser failed: %v)", r)
		}
	}()
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, problemf(ProblemUnreadable, "the key file is empty: export the contact's public key with gpg --armor --export FINGERPRINT")
	}
	if len(data) > MaxKeyBytes {
		return nil, problemf(ProblemUnreadable, "the key file is larger than %d KiB: export it with gpg --armor --export-options export-minimal --export FINGERPRINT", MaxKeyBytes>>10)
	}
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, problemf(ProblemUnreadable, "is not an OpenPGP public key (%v): export it with gpg --armor --export FINGERPRINT", err)
	}
	if len(el) == 0 {
		return nil, problemf(ProblemUnreadable, "holds no key")
	}
	if len(el) > maxKeysInFile {
		return nil, problemf(ProblemUnreadable, "holds %d keys: export only the contact's key", len(el))
	}
	return el, nil
}

// keyExpiry returns when pk expires according to its binding signature.
func keyExpiry(pk *packet.PublicKey, sig *packet.Signature) (time.Time, bool) {
	if sig == nil || sig.KeyLifetimeSecs == nil || *sig.KeyLifetimeSecs == 0 {
		return time.Time{}, false
	}
	return pk.CreationTime.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second), true
}

// whyNoEncryptionKey explains why EncryptionKey found nothing: the subtle
// cases (the primary is valid but every encryption subkey has expired or
// been revoked) get their own problem, not "no encryption key".
func whyNoEncryptionKey(e *openpgp.Entity, now time.Time) error {
	var expired, revoked []string
	var last time.Time
	for _, sk := range e.Subkeys {
		if sk.Sig == nil || !sk.Sig.FlagsValid || !sk.Sig.FlagEncryptCommunications || !sk.PublicKey.PubKeyAlgo.CanEncrypt() {
			continue
		}
		id := sk.PublicKey.KeyIdString()
		switch {
		case sk.Revoked(now):
			revoked = append(revoked, id)
		case sk.PublicKey.KeyExpired(sk.Sig, now) || sk.Sig.SigExpired(now):
			exp, _ := keyExpiry(sk.PublicKey, sk.Sig)
			expired = append(expired, fmt.Sprintf("%s on %s", id, exp.UTC().Format("2006-01-02")))
			if exp.After(last) {
				last = exp
			}
		}
	}
	switch {
	case len(expired) > 0:
		kp := problemf(ProblemExpired, "its encryption subkey expired (%s): ask the contact to extend it (gpg --quick-set-expire FINGERPRINT 1y '*') and send the updated key", strings.Join(expired, ", "))
		kp.Expires = last
		return kp
	case len(revoked) > 0:
		return problemf(ProblemRevoked, "its encryption subkey %s is revoked and it has no other: ask the contact to add a new encryption subkey", strings.Join(revoked, ", "))
	}
	return problemf(ProblemNoEncryptionKey, "can only sign: it has no encryption subkey; ask the contact for a key that can encrypt (gpg --quick-add-key FINGERPRINT cv25519 encr)")
}

func revocationReason(sigs []*packet.Signature) string {
	for _, s := range sigs {
		if s.RevocationReasonText != "" {
			return fmt.Sprintf(" (%q)", s.RevocationReasonText)
		}
	}
	return ""
}

// strongCurves are the curves of 128-bit strength or better.
var strongCurves = map[packet.Curve]bool{
	packet.Curve25519: true, packet.Curve448: true,
	packet.CurveNistP256: true, packet.CurveNistP384: true, packet.CurveNistP521: true,
	packet.CurveBrainpoolP256: true, packet.CurveBrainpoolP384: true, packet.CurveBrainpoolP512: true,
}

func (c Checker) strongEnough(pk *packet.PublicKey, what string) error {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly,
		packet.PubKeyAlgoDSA, packet.PubKeyAlgoElGamal:
		bits, err := pk.BitLength()
		if err != nil {
			return problemf(ProblemUnreadable, "its %s is malformed: %v", what, err)
		}
		if int(bits) < c.minBits() {
			return problemf(ProblemWeak, "its %s is %s-%d, below the %d bits required: ask the contact for a Curve25519 or RSA-%d+ key",
				what, algoName(pk.PubKeyAlgo), bits, c.minBits(), c.minBits())
		}
		return nil
	case packet.PubKeyAlgoECDH, packet.PubKeyAlgoECDSA, packet.PubKeyAlgoEdDSA,
		packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448:
		curve, err := pk.Curve()
		if err != nil {
			return problemf(ProblemUnreadable, "its %s uses an unknown curve: %v", what, err)
		}
		if !strongCurves[curve] {
			return problemf(ProblemWeak, "its %s uses curve %s, which is not accepted: ask the contact for a Curve25519 or P-256+ key", what, curve)
		}
		return nil
	}
	return problemf(ProblemWeak, "its %s uses public-key algorithm %d, which keydesk does not accept: ask the contact for a Curve25519 or RSA-%d+ key", what, pk.PubKeyAlgo, c.minBits())
}

func algoName(a packet.PublicKeyAlgorithm) string {
	switch a {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		return "RSA"
	case packet.PubKeyAlgoDSA:
		return "DSA"
	case packet.PubKeyAlgoElGamal:
		return "ElGamal"
	}
	return fmt.Sprintf("algorithm-%d", a)
}

func fingerprintOf(pk *packet.PublicKey) string {
	return strings.ToUpper(hex.EncodeToString(pk.Fingerprint))
}

// FormatFingerprint groups a fingerprint in blocks of four, as gpg prints
// it, so that people can compare it with what a contact reads out.
func FormatFingerprint(fp string) string {
	fp = keydesk.NormalizeFingerprint(fp)
	var b strings.Builder
	for i := 0; i < len(fp); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fp[i:min(i+4, len(fp))])
	}
	return b.String()
}
