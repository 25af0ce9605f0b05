package keydesk

import (
	"fmt"
	"slices"
	"strings"
)

// Scope is one of the twelve permission scopes of the Buildmarkets API.
type Scope string

const (
	ScopeAccountsRead   Scope = "accounts:read"
	ScopeAccountsWrite  Scope = "accounts:write"
	ScopeFundingRead    Scope = "funding:read"
	ScopeFundingWrite   Scope = "funding:write"
	ScopeTradingRead    Scope = "trading:read"
	ScopeTradingWrite   Scope = "trading:write"
	ScopeMarketdataRead Scope = "marketdata:read"
	ScopeDocumentsRead  Scope = "documents:read"
	ScopeDocumentsWrite Scope = "documents:write"
	ScopeWebhooksRead   Scope = "webhooks:read"
	ScopeWebhooksWrite  Scope = "webhooks:write"
	ScopeKeysManage     Scope = "keys:manage"
)

// Scopes lists the twelve scopes in the order of the API page.
var Scopes = []Scope{
	ScopeAccountsRead, ScopeAccountsWrite,
	ScopeFundingRead, ScopeFundingWrite,
	ScopeTradingRead, ScopeTradingWrite,
	ScopeMarketdataRead,
	ScopeDocumentsRead, ScopeDocumentsWrite,
	ScopeWebhooksRead, ScopeWebhooksWrite,
	ScopeKeysManage,
}

var scopeGrants = map[Scope]string{
	ScopeAccountsRead:   "read account details, balances, positions",
	ScopeAccountsWrite:  "create, update and close accounts",
	ScopeFundingRead:    "read ACH relationships and funding activity",
	ScopeFundingWrite:   "create ACH relationships, initiate deposits and withdrawals",
	ScopeTradingRead:    "read orders and executions",
	ScopeTradingWrite:   "place, modify and cancel orders",
	ScopeMarketdataRead: "market data endpoints",
	ScopeDocumentsRead:  "list and retrieve documents",
	ScopeDocumentsWrite: "upload and email documents",
	ScopeWebhooksRead:   "list webhook configurations",
	ScopeWebhooksWrite:  "create, update and delete webhooks",
	ScopeKeysManage:     "generate and revoke API keys",
}

// Grants says what the scope allows, in the API page's words.
func (s Scope) Grants() string { return scopeGrants[s] }

// Valid reports whether s is one of the twelve scopes.
func (s Scope) Valid() bool { _, ok := scopeGrants[s]; return ok }

func (s Scope) String() string { return string(s) }

// UnknownScopeError reports a word that is not a scope, with the nearest
// valid scope when one is close enough to be a typo.
type UnknownScopeError struct {
	Input      string
	Suggestion Scope // empty when nothing is close
}

func (e *UnknownScopeError) Error() string {
	if e.Suggestion != "" {
		return fmt.Sprintf("%q is not a scope: did you mean %s?", e.Input, e.Suggestion)
	}
	return fmt.Sprintf("%q is not a scope: the scopes are %s", e.Input, joinScopes(Scopes))
}

func joinScopes(ss []Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// ParseScope reads one scope. Case and surrounding space or punctuation are
// forgiven; spelling is not: a typo is an error that suggests the nearest
// scope, so the partner confirms what they meant.
func ParseScope(s string) (Scope, error) {
	norm := strings.ToLower(strings.Trim(strings.TrimSpace(s), "\"'`*_.,;"))
	norm = strings.ReplaceAll(norm, " ", "")
	if sc := Scope(norm); sc.Valid() {
		return sc, nil
	}
	return "", &UnknownScopeError{Input: s, Suggestion: nearestScope(norm)}
}

// ParseScopes parses each word and returns the scopes sorted in the API
// page's order without duplicates, and every error joined.
func ParseScopes(words []string) ([]Scope, []error) {
	var out []Scope
	var errs []error
	for _, w := range words {
		sc, err := ParseScope(w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	SortScopes(out)
	return out, errs
}

// SortScopes sorts scopes in the order of the API page.
func SortScopes(ss []Scope) {
	slices.SortFunc(ss, func(a, b Scope) int {
		return slices.Index(Scopes, a) - slices.Index(Scopes, b)
	})
}

// nearestScope returns the scope at the smallest edit distance from s, if
// that distance is small enough to be a typo; a resource named right with
// a wrong verb ("trade:write") is matched on the resource's stem too.
func nearestScope(s string) Scope {
	if s == "" {
		return ""
	}
	// A bare resource ("marketdata", "keys") suggests its least-privileged scope.
	if !strings.Contains(s, ":") {
		for _, sc := range Scopes {
			if res, _, _ := strings.Cut(string(sc), ":"); res == s || res == s+"s" {
				return sc
			}
		}
	}
	names := make([]string, len(Scopes))
	for i, sc := range Scopes {
		names[i] = string(sc)
	}
	return Scope(Nearest(s, names))
}

// Nearest returns the word of words at the smallest edit distance from s
// (the first of equals), if that distance is small enough to be a typo: a
// third of s, at least two edits. Otherwise it returns "". It is the one
// "did you mean" of keydesk, for scopes and config keys alike.
func Nearest(s string, words []string) string {
	if s == "" {
		return ""
	}
	best, bestD := "", 1<<30
	for _, w := range words {
		if d := editDistance(s, w); d < bestD {
			best, bestD = w, d
		}
	}
	if bestD <= max(2, len(s)/3) {
		return best
	}
	return ""
}

// editDistance is the Damerau–Levenshtein (optimal string alignment)
// distance, so that a swap of two letters ("raed") counts as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range rb {
		d[0][j+1] = j + 1
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
