package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
)

// The crypto wiring: contact keys in partners.yaml are checked by the
// crypto package (pinned fingerprint, can encrypt, not expired or revoked,
// strong enough), and `keydesk check` proves the signing key unlocks.
func init() {
	contactKeyChecker = func() config.ContactKeyChecker { return crypto.Checker{} }
	extraChecks = append(extraChecks, checkSigningKey)
}

// checkSigningKey loads signing_key.file with its passphrase, as the batch
// role will, so that a wrong passphrase or an expired key shows at check
// time rather than at the first delivery.
func checkSigningKey(cfg *config.Config) error {
	return checkSigningKeyAt(cfg, time.Now())
}

func checkSigningKeyAt(cfg *config.Config, now time.Time) error {
	f := filepath.Base(cfg.File)
	if f == "." || f == "" {
		f = "keydesk.yaml"
	}
	if cfg.SigningKey.File == "" {
		return fmt.Errorf("%s: signing_key.file: is required: keydesk's armored OpenPGP private key, which signs every key delivery", f)
	}
	data, err := os.ReadFile(cfg.Path(cfg.SigningKey.File))
	if err != nil {
		return fmt.Errorf("%s: signing_key.file: %v", f, err)
	}
	defer clear(data)
	s, err := crypto.NewSigner(data, cfg.SigningKey.Passphrase.RevealBytes(), now)
	if err != nil {
		return fmt.Errorf("%s: signing_key.file: key in %s: %v", f, cfg.SigningKey.File, err)
	}
	s.Close()
	return nil
}
