package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/buildmarkets/keydesk"
)

// ExampleSigningKeyFingerprint is the fingerprint of the signing key
// published in deploy/examples/keys (keydesk-signing.EXAMPLE.asc): its
// private half and passphrase are public, so mail signed with it proves
// nothing.
const ExampleSigningKeyFingerprint = "2635A50210293C7C27A49ECE8950DAFEFABC7EE3"

// exampleDigests are the hex SHA-256 digests of the secrets published in
// deploy/examples, with where each is published. Only digests are kept:
// the binary carries no example secret, and a configured secret is
// compared by its digest. A staff token's digest is what users.yaml holds
// as token_sha256, so the same table finds the example users; their
// password_hash lines (not secrets, but published) are here as digests of
// the whole PHC string, and the TLS private keys as digests of their files. TestExampleDigests holds the table to the files.
var exampleDigests = map[string]string{
	"2edcad3db66e30d8e128185ea85ba3e74bfe102308401c369e34c6d60b44880b": "the example IMAP password of deploy/examples/secrets/imap-password",
	"44bc91b2ab07b57c3828a245087a5bcbb0b2cf2448b1de090fcb4d02383f3af4": "the example SMTP password of deploy/examples/secrets/smtp-password",
	"a8c608754e6f50d8bddf8421f7e37f61ca16035479675ae9c30f56268e78081c": "the example signing key passphrase of deploy/examples/secrets/signing-passphrase",
	"6ff6550e5cfa558e9a8a1aee35367df0e05023e0095c1eaaf2934e9e27f03686": "the example API secret of deploy/examples/partner-credentials/acme-sandbox-secret",
	"5a057c225ef0879378751c182461c116bb3874a7a35f2be017825a80dff71732": "the example API secret of deploy/examples/partner-credentials/acme-production-secret",
	"e89cb0f7550419d22f2e8fdbde728e039800aa4df28890ce66d1b101c31ee6f3": "the example API secret of deploy/examples/partner-credentials/globex-sandbox-secret",
	"989fcfd404ca5785e101e70bd9b3ae5e690c9de0f54ee523eceb6820f2fcbc0d": "the example token of alice in deploy/examples/users.yaml",
	"cc76159ad518357746563b848bdf7182f9ff0927fb4c0d38a0b96ffed797259a": "the example token of bob in deploy/examples/users.yaml",
	"2a8cb4a1f08f0d99e2bd015d6891f56dfe46f2ddf36c6ceb4a9e5da99be564e8": "the example token of carol in deploy/examples/users.yaml",
	"88646edd6a2dc1b1a8e31d6da3cd22a2ae20db496be2b75f9c8dd3c2356eda01": "the example password of alice in deploy/examples/users.yaml",
	"d2919f21f418f5ae2d73deedbe05d41901033b141f10a73e3a6ffe0a8b7fd69f": "the example password of bob in deploy/examples/users.yaml",
	"a0d6a5d0451141eb9ee6506b2e2f3df5e9f65151ad2978c2894df36ed24982de": "the example password of carol in deploy/examples/users.yaml",
	"cfc636ee2679728eb9096620c2e62e9861aab494633f5e3f1905ec9e8fe3c76a": "the example TLS key deploy/examples/tls/admin-key.pem",
	"fc92fbb12f34a955d4753397b54109ef9155b01a94267bc435530463aebe84b6": "the example TLS key deploy/examples/tls/batch-key.pem",
	"544bcb8720b54a72f9e3681bbb0ff575dc7a0483d5daf25db5ae1a701b4e8061": "the example TLS key deploy/examples/tls/delivery-key.pem",
	"e9d6d45cbf40649ba7c9cb3e0b776d4f518a1530cf471e75ec5dbc34806ecd41": "the example TLS key deploy/examples/tls/intake-key.pem",
	"739bc2db2ab780e1521d3a62c89e761a85e391e726b4310684ff70bc994b0f03": "the example TLS key deploy/examples/tls/review-key.pem",
	"1575d5595940ff32a427e13498ee1867ee23f47e538d00289a043e138db84c24": "the example TLS key deploy/examples/tls/server-key.pem",
}

// ExampleSecret reports whether s is a secret published in
// deploy/examples, and which.
func ExampleSecret(s keydesk.Secret) (string, bool) {
	if s.IsZero() {
		return "", false
	}
	sum := sha256.Sum256(s.RevealBytes()) // the secret's own buffer: read, never cleared here
	return ExampleDigest(hex.EncodeToString(sum[:]))
}

// ExampleDigest reports whether the hex SHA-256 digest is one of a
// published example secret (a users.yaml token_sha256 is such a digest).
func ExampleDigest(digest string) (string, bool) {
	what, ok := exampleDigests[strings.ToLower(digest)]
	return what, ok
}

// ExampleText reports whether a published, non-secret value (a users.yaml
// password_hash) is the example's.
func ExampleText(s string) (string, bool) {
	sum := sha256.Sum256([]byte(s))
	return ExampleDigest(hex.EncodeToString(sum[:]))
}

// exampleFile reports whether the file at path (a TLS private key) is one
// published in deploy/examples. A file that cannot be read is not: its
// problem is reported where the file is checked.
func exampleFile(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(b)
	clear(b)
	return ExampleDigest(hex.EncodeToString(sum[:]))
}

// Warning is a problem that does not stop keydesk from running, but that
// an operator must see: `keydesk check` prints it as a WARNING line and
// fails on it only with --strict.
type Warning struct{ Err error }

func (w *Warning) Error() string { return w.Err.Error() }
func (w *Warning) Unwrap() error { return w.Err }

// Warnf makes a Warning of a "file: key: what" line.
func Warnf(format string, args ...any) error {
	return &Warning{Err: fmt.Errorf(format, args...)}
}

// ExampleSecrets returns a Warning for every secret of c and reg (either
// may be nil) that is one published in deploy/examples: anyone can read
// it, so it protects nothing.
func ExampleSecrets(c *Config, partnersPath string, reg *keydesk.Registry) error {
	var errs []error
	if c != nil {
		f := c.fileName()
		for _, s := range []struct {
			key string
			v   keydesk.Secret
		}{
			{"imap.password", c.IMAP.Password},
			{"smtp.password", c.SMTP.Password},
			{"signing_key.passphrase", c.SigningKey.Passphrase},
		} {
			if what, ok := ExampleSecret(s.v); ok {
				errs = append(errs, Warnf("%s: %s: is %s, published with keydesk: set your own", f, s.key, what))
			}
		}
		for _, k := range []struct{ key, file string }{{"nats.tls_key", c.NATS.TLSKey}, {"review.tls_key", c.Review.TLSKey}} {
			if what, ok := exampleFile(c.Path(k.file)); ok {
				errs = append(errs, Warnf("%s: %s: %s is %s, published with keydesk: anyone can hold this certificate; make your own (deploy/nats/mkcerts)", f, k.key, k.file, what))
			}
		}
	}
	if reg != nil {
		f := filepath.Base(partnersPath)
		for i, p := range reg.Partners {
			for _, e := range keydesk.Environments {
				if what, ok := ExampleSecret(p.Environments[e].APISecret); ok {
					errs = append(errs, Warnf("%s: partners[%d].environments.%s.api_secret: is %s, published with keydesk: set the partner's real keys:manage secret", f, i, e, what))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// InFile names the config file in each problem of err (a package's
// Options.Validate, whose lines say "key: what"), so that a role's
// settings are reported as the loader reports its own: "keydesk.yaml:
// key: what". A joined error stays one line per problem.
func (c *Config) InFile(err error) error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s: %w", c.fileName(), err)
	}
	var errs []error
	for _, e := range j.Unwrap() {
		errs = append(errs, c.InFile(e))
	}
	return errors.Join(errs...)
}

// fileName is the config file's base name, for problem lines.
func (c *Config) fileName() string {
	f := filepath.Base(c.File)
	if f == "." || f == "" {
		f = "keydesk.yaml"
	}
	return f
}
