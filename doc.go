// Package keydesk holds the domain of keydesk, the service that fulfils
// Buildmarkets API key requests that partners send by email: requests and
// their states, environments, scopes, labels, partners and secrets.
//
// It imports no storage, mail, HTTP or crypto package: every other package
// of the module may import it, and it imports none of them. The invariants it
// keeps: a Request only moves along the transitions of the state table; a
// Scope is one of the twelve the API publishes; a Label can never break a
// header or a template; a Secret never prints itself.
package keydesk
