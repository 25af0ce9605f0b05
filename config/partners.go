package config

import (
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/buildmarkets/keydesk"
)

// PartnersFile is partners.yaml.
type PartnersFile struct {
	Partners []PartnerConfig `yaml:"partners"`
}

// PartnerConfig is one partner as written in partners.yaml.
type PartnerConfig struct {
	// ID is short and stable (acme); it names the partner in records.
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Requesters may ask for keys: exact addresses or *@domain.
	Requesters []string `yaml:"requesters"`
	// TechnicalContact receives the keys, encrypted to the pinned key.
	TechnicalContact ContactConfig `yaml:"technical_contact"`
	// AllowedScopes: scopes outside it are flagged for review. Empty: all twelve.
	AllowedScopes []string `yaml:"allowed_scopes"`
	// Environments holds the partner's policy and keys:manage credentials
	// per environment. The credentials are needed by the batch role only.
	Environments map[string]PartnerEnvConfig `yaml:"environments"`
}

// ContactConfig is a technical contact.
type ContactConfig struct {
	Email      string `yaml:"email"`
	PGPKeyFile string `yaml:"pgp_key_file"`
	// Fingerprint is the full OpenPGP fingerprint, verified out of band.
	Fingerprint string `yaml:"fingerprint"`
}

// PartnerEnvConfig is one environment's credentials and policy. APIKey and
// APISecret may be empty everywhere but on the batch role (CheckCredentials).
type PartnerEnvConfig struct {
	APIKey      string         `yaml:"api_key"`
	APISecret   keydesk.Secret `yaml:"api_secret"`
	AutoApprove bool           `yaml:"auto_approve"`
}

// ContactKeyChecker inspects a contact's armored public key: that its
// fingerprint is the pinned one and that it can be used to encrypt now. It
// returns the key's expiry (zero if none). The crypto package implements it;
// config takes it as an interface so that it stays free of OpenPGP code.
type ContactKeyChecker interface {
	CheckContactKey(armored []byte, fingerprint string, now time.Time) (expires time.Time, err error)
}

var partnerIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)
var fingerprintRE = regexp.MustCompile(`^[0-9A-F]{40}$|^[0-9A-F]{64}$`)

// LoadPartners reads and validates partners.yaml. With a checker, every
// contact key is loaded and checked against its pinned fingerprint. The
// error lists every problem, each naming the file and the key.
func LoadPartners(path string, checker ContactKeyChecker, now time.Time) (*keydesk.Registry, error) {
	return loadPartners(path, checker, now, os.Getenv)
}

func loadPartners(path string, checker ContactKeyChecker, now time.Time, getenv func(string) string) (*keydesk.Registry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read partners: %w", err)
	}
	l := &partnersLoader{
		file: filepath.Base(path), dir: filepath.Dir(path), checker: checker, now: now,
		ids: map[string]bool{}, owners: map[string]string{},
	}
	var pf PartnersFile
	decoded, err := decode(l.file, l.dir, data, &pf, getenv, isCredential)
	if !decoded {
		return nil, err
	}
	// The values are checked even when some keys were wrong, so that every
	// problem is listed at once.
	l.errs = []error{err}
	if len(pf.Partners) == 0 {
		l.bad("partners", "no partner is registered")
	}
	reg := &keydesk.Registry{}
	for i, pc := range pf.Partners {
		reg.Partners = append(reg.Partners, l.partner(fmt.Sprintf("partners[%d]", i), pc))
	}
	if err := errors.Join(l.errs...); err != nil {
		return nil, err
	}
	return reg, nil
}

// partnersLoader checks the partners of one partners.yaml, collecting every
// problem, each naming the file and the key.
type partnersLoader struct {
	file, dir string
	checker   ContactKeyChecker
	now       time.Time
	errs      []error
	ids       map[string]bool   // partner IDs seen
	owners    map[string]string // requester (address key or *@domain) -> partner ID
}

func (l *partnersLoader) bad(key, format string, args ...any) {
	l.errs = append(l.errs, fmt.Errorf("%s: %s: %s", l.file, key, fmt.Sprintf(format, args...)))
}

// partner checks the partner at key and returns it as the domain holds it.
func (l *partnersLoader) partner(key string, pc PartnerConfig) *keydesk.Partner {
	p := &keydesk.Partner{ID: pc.ID, Name: pc.Name, Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{}}
	if !partnerIDRE.MatchString(pc.ID) {
		l.bad(key+".id", "%q must be 1-40 lower-case letters, digits, - or _", pc.ID)
	} else if l.ids[pc.ID] {
		l.bad(key+".id", "%q is used twice", pc.ID)
	}
	l.ids[pc.ID] = true
	if pc.Name == "" {
		p.Name = pc.ID
	}
	l.requesters(key, pc, p)
	l.contact(key+".technical_contact", pc.TechnicalContact, p)
	for j, s := range pc.AllowedScopes {
		sc, err := keydesk.ParseScope(s)
		if err != nil {
			l.bad(fmt.Sprintf("%s.allowed_scopes[%d]", key, j), "%v", err)
			continue
		}
		p.AllowedScopes = append(p.AllowedScopes, sc)
	}
	keydesk.SortScopes(p.AllowedScopes)
	l.environments(key, pc, p)
	return p
}

// requesters checks the partner's requesters: each an address or *@domain
// that names no other partner.
func (l *partnersLoader) requesters(key string, pc PartnerConfig, p *keydesk.Partner) {
	if len(pc.Requesters) == 0 {
		l.bad(key+".requesters", "list at least one address or *@domain")
	}
	for j, r := range pc.Requesters {
		// ASCII letters only are lower-cased: senders are matched
		// without Unicode case folding (see keydesk.MatchAddress).
		r = keydesk.ASCIILower(strings.TrimSpace(r))
		rk := fmt.Sprintf("%s.requesters[%d]", key, j)
		addr := r
		if d, ok := strings.CutPrefix(r, "*@"); ok {
			addr = "x@" + d
			if !strings.Contains(d, ".") {
				l.bad(rk, "%q: the domain must be a full domain name", r)
			}
		}
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || strings.Count(addr, "@") != 1 {
			l.bad(rk, "%q is neither an address nor *@domain", r)
			continue
		}
		owner, ok := keydesk.AddressKey(addr)
		if !ok {
			l.bad(rk, "%q: the domain is not a valid internationalised domain name: write it in lower case, or as its xn-- form", r)
			continue
		}
		if strings.HasPrefix(r, "*@") {
			owner = "*" + owner[1:]
		}
		if other, dup := l.owners[owner]; dup && other != pc.ID {
			l.bad(rk, "%q is also a requester of partner %s: a sender must name one partner", r, other)
		}
		l.owners[owner] = pc.ID
		p.Requesters = append(p.Requesters, r)
	}
}

// contact checks the technical contact at ck and reads its key; with a
// checker, the key is checked against the pinned fingerprint.
func (l *partnersLoader) contact(ck string, tc ContactConfig, p *keydesk.Partner) {
	if a, err := mail.ParseAddress(tc.Email); err != nil || a.Address != tc.Email {
		l.bad(ck+".email", "%q is not an email address", tc.Email)
	}
	fp := keydesk.NormalizeFingerprint(tc.Fingerprint)
	if !fingerprintRE.MatchString(fp) {
		l.bad(ck+".fingerprint", "%q is not a full fingerprint (40 hex digits): pin the whole fingerprint, verified with the contact out of band", tc.Fingerprint)
	}
	p.TechnicalContact = keydesk.TechnicalContact{Email: tc.Email, KeyFile: tc.PGPKeyFile, Fingerprint: fp}
	if tc.PGPKeyFile == "" {
		l.bad(ck+".pgp_key_file", "is required: the contact's armored public key")
		return
	}
	kp := tc.PGPKeyFile
	if !filepath.IsAbs(kp) {
		kp = filepath.Join(l.dir, kp)
	}
	armored, err := os.ReadFile(kp)
	switch {
	case err != nil:
		l.bad(ck+".pgp_key_file", "%v", err)
	case l.checker != nil && fingerprintRE.MatchString(fp):
		exp, err := l.checker.CheckContactKey(armored, fp, l.now)
		if err != nil {
			l.bad(ck+".fingerprint", "key in %s: %v", tc.PGPKeyFile, err)
		}
		p.TechnicalContact.KeyExpires = exp
		p.TechnicalContact.ArmoredKey = string(armored)
	default:
		p.TechnicalContact.ArmoredKey = string(armored)
	}
}

// environments checks the partner's environments.
func (l *partnersLoader) environments(key string, pc PartnerConfig, p *keydesk.Partner) {
	if len(pc.Environments) == 0 {
		l.bad(key+".environments", "configure sandbox and/or production credentials")
	}
	for name, ec := range pc.Environments {
		ek := key + ".environments." + name
		env, err := keydesk.ParseEnvironment(name)
		if err != nil || string(env) != name {
			l.bad(ek, "%q is not an environment: use sandbox or production", name)
			continue
		}
		// api_key and api_secret may be left out: only the batch role
		// uses them, and it checks for them (CheckCredentials), so the
		// other roles can run without the partners' credentials.
		p.Environments[env] = keydesk.PartnerEnvironment{APIKey: ec.APIKey, APISecret: ec.APISecret, AutoApprove: ec.AutoApprove}
	}
}

// credentialRE matches the keys of a partner environment's credentials.
var credentialRE = regexp.MustCompile(`^partners\[\d+\]\.environments\.[^.]+\.api_(key|secret)(_file)?$`)

// isCredential says which keys may name an unset variable: only the batch
// role needs the partners' credentials, and CheckCredentials names the
// variable when it lacks one.
func isCredential(path string) bool { return credentialRE.MatchString(path) }

// CheckCredentials lists every partner environment of reg, loaded from
// path by LoadPartners, that lacks its keys:manage api_key or api_secret,
// each problem naming the file, the key and, when the value was to come
// from an environment variable that is not set, the variable. Only the
// batch role calls the Buildmarkets API, so only it (and `keydesk check`
// for it) requires them.
func CheckCredentials(path string, reg *keydesk.Registry) error {
	return checkCredentials(path, reg, os.Getenv)
}

func checkCredentials(path string, reg *keydesk.Registry, getenv func(string) string) error {
	if reg == nil {
		return nil
	}
	f := filepath.Base(path)
	var raw map[string]string // read only when something is missing
	why := func(key string) string {
		if raw == nil {
			raw = rawCredentials(path)
		}
		var unset []string
		for _, k := range []string{key, key + "_file"} {
			unset = append(unset, unsetVars(raw[k], getenv)...)
		}
		if len(unset) == 0 {
			return ""
		}
		return ": " + strings.Join(unset, ", ") + " is not set"
	}
	var errs []error
	for i, p := range reg.Partners {
		for _, env := range keydesk.Environments {
			pe, ok := p.Environments[env]
			if !ok {
				continue
			}
			ek := fmt.Sprintf("partners[%d].environments.%s", i, env)
			if pe.APIKey == "" {
				errs = append(errs, fmt.Errorf("%s: %s.api_key: is required by the batch role: the partner's key with keys:manage%s", f, ek, why(ek+".api_key")))
			}
			if pe.APISecret.IsZero() {
				errs = append(errs, fmt.Errorf("%s: %s.api_secret: is required by the batch role (or api_secret_file)%s", f, ek, why(ek+".api_secret")))
			}
		}
	}
	return errors.Join(errs...)
}

// rawCredentials reads the credential keys of partners.yaml as written,
// before expansion, by key path, so that a missing credential's message
// can name the variable it was to come from. A file that no longer parses
// gives none: the message then goes without the name.
func rawCredentials(path string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return out
	}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.ScalarNode:
			if isCredential(path) {
				out[path] = n.Value
			}
		}
	}
	walk(root.Content[0], "")
	return out
}
