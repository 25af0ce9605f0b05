package keydesk

import (
	"slices"
	"strings"
	"time"
)

// Partner is a Buildmarkets partner allowed to request keys by email.
type Partner struct {
	ID               string
	Name             string
	Requesters       []string // exact addresses or *@domain
	TechnicalContact TechnicalContact
	AllowedScopes    []Scope // empty: every scope but keys:manage
	Environments     map[Environment]PartnerEnvironment
}

// TechnicalContact is where a partner's keys go, and the only place.
type TechnicalContact struct {
	Email       string
	KeyFile     string
	Fingerprint string // the pinned full fingerprint, upper-case hex
	// Filled when the registry is loaded (by the crypto package through the
	// config loader): the armored key and its expiry, if any.
	ArmoredKey string
	KeyExpires time.Time
}

// PartnerEnvironment holds a partner's manager credentials (a key with
// keys:manage) for one environment, and its approval policy.
type PartnerEnvironment struct {
	APIKey      string
	APISecret   Secret
	AutoApprove bool
}

// Allows reports whether the partner may hold scope s: a scope its
// allowed_scopes lists, or, when it lists none, any scope but
// keys:manage. keys:manage creates and revokes keys, so it is never
// allowed by omission: a partner gets it only by naming it.
func (p *Partner) Allows(s Scope) bool {
	if len(p.AllowedScopes) == 0 {
		return s != ScopeKeysManage
	}
	return slices.Contains(p.AllowedScopes, s)
}

// MatchesRequester reports whether addr is one of the partner's requesters.
func (p *Partner) MatchesRequester(addr string) bool {
	for _, pat := range p.Requesters {
		if MatchAddress(pat, addr) {
			return true
		}
	}
	return false
}

// MatchAddress matches an address against an exact address or *@domain,
// compared as AddressKey and DomainKey say (no Unicode case folding).
// The domain must match whole: *@acme.example matches neither
// x@acme.example.evil.test nor x@evil-acme.example nor x@sub.acme.example.
func MatchAddress(pattern, addr string) bool {
	key, ok := AddressKey(addr)
	if !ok {
		return false
	}
	pattern = strings.TrimSpace(pattern)
	if dom, ok := strings.CutPrefix(pattern, "*@"); ok {
		d, ok := DomainKey(dom)
		return ok && key[strings.LastIndexByte(key, '@')+1:] == d
	}
	pk, ok := AddressKey(pattern)
	return ok && pk == key
}

// AddressDomain returns the domain of an address, ASCII letters
// lower-cased: as received, for showing; compare it with SameDomain.
func AddressDomain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return ASCIILower(addr[at+1:])
}

// Registry is the set of partners, read from partners.yaml.
type Registry struct {
	Partners []*Partner
}

// Partner returns the partner with that ID.
func (r *Registry) Partner(id string) (*Partner, bool) {
	if r == nil {
		return nil, false
	}
	for _, p := range r.Partners {
		if p.ID == id {
			return p, true
		}
	}
	return nil, false
}

// ByRequester returns the partner whose requesters include addr. An exact
// address wins over a domain pattern, so a holding company's CTO listed by
// address on one partner is not claimed by another's *@domain.
func (r *Registry) ByRequester(addr string) (*Partner, bool) {
	if r == nil {
		return nil, false
	}
	for _, p := range r.Partners {
		for _, pat := range p.Requesters {
			if !strings.HasPrefix(pat, "*@") && MatchAddress(pat, addr) {
				return p, true
			}
		}
	}
	for _, p := range r.Partners {
		if p.MatchesRequester(addr) {
			return p, true
		}
	}
	return nil, false
}

// NormalizeFingerprint writes an OpenPGP fingerprint as keydesk compares
// it: spaces and a 0x prefix dropped, upper case. partners.yaml pins it
// so and the key check compares with it, through this one function.
func NormalizeFingerprint(s string) string {
	s = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	return strings.TrimPrefix(s, "0X")
}
