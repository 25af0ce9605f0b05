package keydesk

import (
	"slices"
	"strings"
)

// Widening is how a change to a request grants more than the request did:
// the scopes it adds and a move to production. A change that widens
// access is the one four eyes guards: whoever makes it may not also be
// the one who approves it.
type Widening struct {
	// Scopes are the scopes added, in the API page's order.
	Scopes []Scope
	// Production is set when the change moves the request to production.
	Production bool
}

// WideningOf compares a request before and after a change.
func WideningOf(before, after *Request) Widening {
	var w Widening
	for _, s := range after.Scopes {
		if !slices.Contains(before.Scopes, s) {
			w.Scopes = append(w.Scopes, s)
		}
	}
	SortScopes(w.Scopes)
	w.Production = after.Environment == Production && before.Environment != Production
	return w
}

// Any reports whether the change widens access at all.
func (w Widening) Any() bool { return len(w.Scopes) > 0 || w.Production }

// KeysManage reports whether the change adds keys:manage.
func (w Widening) KeysManage() bool { return slices.Contains(w.Scopes, ScopeKeysManage) }

// String says what the change adds, e.g. "adds trading:write, keys:manage;
// moves to production".
func (w Widening) String() string {
	var parts []string
	if len(w.Scopes) > 0 {
		parts = append(parts, "adds "+joinScopes(w.Scopes))
	}
	if w.Production {
		parts = append(parts, "moves to production")
	}
	return strings.Join(parts, "; ")
}
