package queue

import "strings"

// KeyToken makes s usable as one token of a KV key: letters, digits and
// '-', '_' and '=' stay, anything else becomes '_' (and "" becomes "_").
// Collisions are harmless for the names it is meant for, such as the
// mailbox names a deployment uses.
func KeyToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if keyTokenRune(r) {
			return r
		}
		return '_'
	}, s)
}

// keyTokenRune reports whether r may stand in a KeyToken.
func keyTokenRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '='
}
