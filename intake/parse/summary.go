package parse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/buildmarkets/keydesk"
)

// Summary is the stable JSON shape of a result: one line per email of
// `keydesk parse --json`, and the corpus's golden files. Fields are never
// renamed; empty lists are [] rather than null.
type Summary struct {
	File      string           `json:"file"`
	MessageID string           `json:"message_id"`
	Sender    string           `json:"sender"`
	Partner   string           `json:"partner"`
	Verdict   Verdict          `json:"verdict"`
	Requests  []SummaryRequest `json:"requests"`
	Reasons   []SummaryReason  `json:"reasons"`
	Warnings  []string         `json:"warnings"`
	// KeyAsks are the keys the email asks to revoke or rotate, as named;
	// absent when it asks none.
	KeyAsks []SummaryKeyAsk `json:"key_asks,omitempty"`
}

// SummaryKeyAsk is one key ask of a Summary.
type SummaryKeyAsk struct {
	Kind        keydesk.RequestKind `json:"kind"`
	KeyID       string              `json:"key_id,omitempty"`
	APIKey      string              `json:"api_key,omitempty"`
	Label       string              `json:"label,omitempty"`
	Bare        bool                `json:"bare,omitempty"`
	All         bool                `json:"all,omitempty"`
	Environment keydesk.Environment `json:"environment,omitempty"`
	Request     string              `json:"request"`
}

// SummaryReason is one reason of a Summary; suggestion is always present.
type SummaryReason struct {
	Code       keydesk.ReasonCode `json:"code"`
	Message    string             `json:"message"`
	Suggestion string             `json:"suggestion"`
}

// SummaryRequest is one request of a Summary.
type SummaryRequest struct {
	ID          string              `json:"id"`
	Environment keydesk.Environment `json:"environment"`
	Scopes      []keydesk.Scope     `json:"scopes"`
	Label       string              `json:"label"`
	State       keydesk.State       `json:"state"`
	Flags       []keydesk.Flag      `json:"flags"`
	// Kind, KeyID and ReplacesKeyID: the key a revoke or rotate request
	// names, as the email names it; absent for a new key.
	Kind          keydesk.RequestKind `json:"kind,omitempty"`
	KeyID         string              `json:"key_id,omitempty"`
	ReplacesKeyID string              `json:"replaces_key_id,omitempty"`
}

// Summary returns the stable summary of r, naming the file it was read from.
func (r *Result) Summary(file string) Summary {
	// The sender is an address as received: shown inert, as all else is.
	s := Summary{File: file, MessageID: r.MessageID, Sender: keydesk.SafeLine(r.From, 0), Verdict: r.Verdict,
		Requests: []SummaryRequest{}, Reasons: []SummaryReason{}, Warnings: []string{}}
	if r.Partner != nil {
		s.Partner = r.Partner.ID
	}
	for _, q := range r.Requests {
		sr := SummaryRequest{ID: q.ID, Environment: q.Environment, Scopes: q.Scopes, Label: q.Label, State: q.State, Flags: q.Flags,
			Kind: q.Kind, KeyID: q.KeyID, ReplacesKeyID: q.ReplacesKeyID}
		if sr.Scopes == nil {
			sr.Scopes = []keydesk.Scope{}
		}
		if sr.Flags == nil {
			sr.Flags = []keydesk.Flag{}
		}
		s.Requests = append(s.Requests, sr)
	}
	for _, rs := range r.Reasons {
		s.Reasons = append(s.Reasons, SummaryReason(rs))
	}
	s.Warnings = append(s.Warnings, r.Warnings...)
	for _, a := range r.KeyAsks {
		sa := SummaryKeyAsk{Kind: a.Kind, KeyID: a.KeyID, APIKey: a.APIKey, Label: a.Label, Bare: a.Bare, All: a.All, Environment: a.Environment}
		if a.Index < len(r.Requests) {
			sa.Request = r.Requests[a.Index].ID
		}
		s.KeyAsks = append(s.KeyAsks, sa)
	}
	return s
}

// ExampleRegistry is the registry `keydesk parse` uses without --config,
// and the one the corpus under testdata/ is written against: Acme Capital
// (every acme.example address and its holding's CTO; sandbox auto-approves)
// and Globex Markets (two addresses; sandbox only).
func ExampleRegistry() *keydesk.Registry {
	return &keydesk.Registry{Partners: []*keydesk.Partner{
		{ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example", "cto@acme-holdings.example"},
			TechnicalContact: keydesk.TechnicalContact{Email: "sec@acme.example"},
			AllowedScopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingRead, keydesk.ScopeTradingWrite,
				keydesk.ScopeMarketdataRead, keydesk.ScopeKeysManage},
			Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
				keydesk.Sandbox:    {APIKey: "bm_key_example_sandbox", AutoApprove: true},
				keydesk.Production: {APIKey: "bm_key_example_production"},
			}},
		{ID: "globex", Name: "Globex Markets", Requesters: []string{"ops@globex.example", "dev@globex.example"},
			TechnicalContact: keydesk.TechnicalContact{Email: "pgp@globex.example"},
			Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
				keydesk.Sandbox: {APIKey: "bm_key_example_globex"},
			}},
	}}
}

// ExampleTenantID is the Microsoft 365 tenant of ExampleOptions.
const ExampleTenantID = "5d2e7f4a-91c3-4b8e-a6d0-3f1b9c8e2a47"

// ExampleOptions are the options `keydesk parse` uses without --config:
// the example registry, mx.buildmarkets.ai as the trusted authserv-id,
// Microsoft 365 tenant ExampleTenantID, DMARC required, buildmarkets.ai
// internal, and the given clock.
func ExampleOptions(now time.Time) Options {
	return Options{
		Registry:           ExampleRegistry(),
		TrustedAuthservIDs: []string{"mx.buildmarkets.ai"},
		RequireDMARC:       true,
		InternalDomains:    []string{"buildmarkets.ai"},
		// The example mailbox is also on a Microsoft 365 tenant, so that
		// the corpus shows Exchange Online's stamp read (m365-*.eml).
		Microsoft365TenantID: ExampleTenantID,
		Now:                  func() time.Time { return now },
	}
}

// JSONLine is the summary as `keydesk parse --json` prints it: one line of
// JSON, HTML characters unescaped, ending in a newline.
func (s Summary) JSONLine() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("parse: encode summary: %w", err)
	}
	return b.Bytes(), nil
}
