package keydesk

import (
	"strings"

	"golang.org/x/net/idna"
)

// Addresses and domains from email are compared without Unicode case
// folding: folding makes "buildmarKets.ai" (U+212A KELVIN SIGN),
// "buildmarketſ.ai" (U+017F LONG S) and "acme-holdİngs.example" (U+0130)
// equal to the ASCII names they imitate, while DNS and DMARC treat them as
// other domains. Domains are compared as IDNA A-labels, local parts byte by
// byte after lower-casing ASCII letters only.

// ASCIILower lower-cases the ASCII letters of s and leaves every other
// byte as it is.
func ASCIILower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// DomainKey returns domain d in the form domains are compared in: ASCII
// letters lower-cased, every label that is not ASCII as its IDNA A-label
// ("bücher.example" is "xn--bcher-kva.example"). It reports false for an
// empty domain and for one that is not a valid IDNA name, such as one
// holding a character IDNA would map to another (U+212A, U+017F, U+0130, an
// upper-case letter outside ASCII): such a domain matches none.
func DomainKey(d string) (string, bool) {
	d = ASCIILower(strings.TrimSpace(d))
	if d == "" {
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			a, err := idna.Registration.ToASCII(d)
			if err != nil {
				return "", false
			}
			return a, true
		}
	}
	return d, true
}

// SameDomain reports whether a and b name the same domain (see DomainKey).
func SameDomain(a, b string) bool {
	ka, ok := DomainKey(a)
	if !ok {
		return false
	}
	kb, ok := DomainKey(b)
	return ok && ka == kb
}

// AddressKey returns addr in the form addresses are compared in: the local
// part with ASCII letters lower-cased, "@", and the DomainKey of the
// domain. It reports false for what is not one address with a valid domain.
func AddressKey(addr string) (string, bool) {
	addr = strings.TrimSpace(addr)
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.Count(addr, "@") != 1 {
		return "", false
	}
	d, ok := DomainKey(addr[at+1:])
	if !ok {
		return "", false
	}
	return ASCIILower(addr[:at]) + "@" + d, true
}

// MaskAddress shows an address as its first letter and domain,
// sec@acme.example → s***@acme.example: how an email to a requester names
// a technical contact, whose full address it never shows.
func MaskAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	r := []rune(addr[:at])
	return string(r[0]) + "***" + addr[at:]
}
