package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
)

// The crypto wiring. Contact keys in partners.yaml are checked by the
// crypto package in two strengths:
//
//   - Loading the registry (serve, SIGHUP reloads, parse, check) refuses a
//     key file that is not the pinned key (swapped, replaced, unreadable):
//     that is a configuration error, refused loudly. A pinned key that is
//     merely unusable now (expired, revoked, sign-only, too weak, v6) does
//     not stop keydesk from starting or partners.yaml from reloading: the
//     partner stays registered, intake answers its requests with
//     contact-key-unusable and the batch blocks them, each naming the
//     problem. Otherwise one partner's key expiring would take keydesk down
//     at its next restart and freeze every other partner change.
//   - `keydesk check` runs the full check on top and lists every unusable
//     key as a problem.
//
// `keydesk check` (for the batch role) also proves the signing key unlocks.

// registryKeyChecker refuses only the problems that mean the key file is
// not the pinned key.
type registryKeyChecker struct{ crypto.Checker }

func (c registryKeyChecker) CheckContactKey(armored []byte, fingerprint string, now time.Time) (time.Time, error) {
	exp, err := c.Checker.CheckContactKey(armored, fingerprint, now)
	var kp *crypto.KeyProblem
	if errors.As(err, &kp) && kp.Problem != crypto.ProblemFingerprintMismatch && kp.Problem != crypto.ProblemUnreadable {
		return exp, nil
	}
	return exp, err
}

// checkContactKeys is check's full pass: every partner's key must be
// usable now. Problems of the file itself are reported by the registry
// load already, so a registry that does not load adds nothing here.
func checkContactKeys(cfg *config.Config) error {
	return checkContactKeysAt(cfg, time.Now())
}

func checkContactKeysAt(cfg *config.Config, now time.Time) error {
	path := cfg.Path(cfg.PartnersFile)
	reg, err := config.LoadPartners(path, registryKeyChecker{}, now)
	if err != nil {
		return nil
	}
	var errs []error
	for i, p := range reg.Partners {
		tc := p.TechnicalContact
		if _, err := (crypto.Checker{}).CheckContactKey([]byte(tc.ArmoredKey), tc.Fingerprint, now); err != nil {
			errs = append(errs, fmt.Errorf("%s: partners[%d].technical_contact.fingerprint: key in %s (partner %s): %v",
				filepath.Base(path), i, tc.KeyFile, p.ID, err))
		}
	}
	return errors.Join(errs...)
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
	fpr := s.Fingerprint()
	s.Close()
	if fpr == config.ExampleSigningKeyFingerprint {
		return config.Warnf("%s: signing_key.file: %s is the EXAMPLE key published with keydesk (%s): anyone can sign as you with it; generate your own (docs/operations.md, \"Rotating keydesk's signing key\")",
			f, cfg.SigningKey.File, fpr)
	}
	return nil
}
