package parse

import (
	"time"

	"github.com/buildmarkets/keydesk"
)

// testNow is the clock of every test: the corpus was written the day before.
var testNow = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

// testRegistry is the partner registry the corpus is written against.
func testRegistry() *keydesk.Registry {
	all := map[keydesk.Environment]keydesk.PartnerEnvironment{
		keydesk.Sandbox:    {APIKey: "bm_key_sandbox", APISecret: keydesk.SecretString("s"), AutoApprove: true},
		keydesk.Production: {APIKey: "bm_key_prod", APISecret: keydesk.SecretString("s")},
	}
	return &keydesk.Registry{Partners: []*keydesk.Partner{
		{ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example", "cto@acme-holdings.example"},
			TechnicalContact: keydesk.TechnicalContact{Email: "sec@acme.example"},
			AllowedScopes:    []keydesk.Scope{"accounts:read", "trading:read", "trading:write", "marketdata:read", "keys:manage"},
			Environments:     all},
		{ID: "globex", Name: "Globex Markets", Requesters: []string{"ops@globex.example", "dev@globex.example"},
			TechnicalContact: keydesk.TechnicalContact{Email: "pgp@globex.example"},
			Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
				keydesk.Sandbox: {APIKey: "bm_key_g", APISecret: keydesk.SecretString("s")},
			}},
	}}
}

func testOptions() Options {
	return Options{
		Registry:           testRegistry(),
		TrustedAuthservIDs: []string{"mx.buildmarkets.ai"},
		RequireDMARC:       true,
		InternalDomains:    []string{"buildmarkets.ai"},
		Now:                func() time.Time { return testNow },
	}
}
