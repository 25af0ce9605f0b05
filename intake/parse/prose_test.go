package parse

import (
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// TestProseSuggestion parses emails that ask for a key in sentences, with
// no field line: each names the fields in prose, which keydesk proposes to
// a person (flag from-prose, a Proposal on the request) and never takes as
// the request's fields; and emails whose prose must propose nothing.
func TestProseSuggestion(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // the suggestion as the review shows it; "" for none
	}{
		{"english, the issue's words", "Hi,\n\ncould you set us up with a production key with trading:read and marketdata:read, label it acme-md?\n\nThanks, Jane\n",
			"production · trading:read, marketdata:read · acme-md"},
		{"english, labelled as, quoted", "We need a sandbox key for accounts:read please, labelled as \"Nightly Reports\".\n",
			"sandbox · accounts:read · Nightly Reports"},
		{"english, called", "Please create a prod key (scopes trading:read, trading:write) called order-router.\n",
			"production · trading:read, trading:write · order-router"},
		{"english, named, over two lines", "Can we get a sandbox key\nwith accounts:read and funding:read named treasury-sync?\n",
			"sandbox · accounts:read, funding:read · treasury-sync"},
		{"english, test key", "We'd like a test key with marketdata:read, call it md-dev.\n",
			"sandbox · marketdata:read · md-dev"},
		{"english, a negated environment", "We do not need production yet, only a sandbox key with accounts:read, label it acme-sbx.\n",
			"sandbox · accounts:read · acme-sbx"},
		{"english, a negated scope", "A sandbox key with accounts:read but not trading:write please, label it ro-key.\n",
			"sandbox · accounts:read · ro-key"},
		{"german", "Hallo,\n\nbitte einen Schlüssel für die Produktionsumgebung mit trading:read und marketdata:read, Bezeichnung acme-md.\n\nGrüße\n",
			"production · trading:read, marketdata:read · acme-md"},
		{"german, nicht", "Wir brauchen nicht Produktion, sondern Sandbox mit accounts:read, Bezeichnung soll acme-test sein.\n",
			"sandbox · accounts:read · acme-test"},
		{"french", "Bonjour,\n\npourriez-vous créer une clé de production avec trading:read et marketdata:read, libellé acme-md ?\n",
			"production · trading:read, marketdata:read · acme-md"},
		{"spanish", "Hola, necesitamos una clave de producción con trading:read y marketdata:read, etiqueta acme-md.\n",
			"production · trading:read, marketdata:read · acme-md"},
		{"italian", "Buongiorno, ci serve una chiave di produzione con trading:read, etichetta acme-md.\n",
			"production · trading:read · acme-md"},
		{"portuguese", "Olá, precisamos de uma chave de produção com marketdata:read, rótulo acme-md.\n",
			"production · marketdata:read · acme-md"},
		{"dutch", "Graag een sandbox sleutel met accounts:read, genaamd acme-dev.\n",
			"sandbox · accounts:read · acme-dev"},

		{"a label with an environment word in it", "A sandbox key with accounts:read, label it acme-prod-mirror.\n",
			"sandbox · accounts:read · acme-prod-mirror"},
		{"negated over a wrapped line", "We do not need\nproduction keys with trading:read, label it acme-md.\n", ""}, {"swedish", "Hej, vi behöver en nyckel för produktion med trading:read, etikett acme-md.\n",
			"production · trading:read · acme-md"},
		{"polish", "Dzień dobry, prosimy o klucz produkcyjny z trading:read, nazwa acme-md.\n",
			"production · trading:read · acme-md"},

		{"negated: we do not need production", "We do not need production, thanks. trading:read would be nice one day, label it later-key.\n", ""},
		{"negated: german kein", "Wir brauchen keinen Produktionsschlüssel mit trading:read, Bezeichnung acme-md.\n", ""},
		{"both environments", "A sandbox and a production key with trading:read, label it acme-md.\n", ""},
		{"no label", "Please create a production key with trading:read and marketdata:read.\n", ""},
		{"no valid scope", "A production key with trading:delete, label it acme-md.\n", ""},
		{"no environment", "A key with trading:read, label it acme-md.\n", ""},
		{"a name that is not a label", "My name is Jane. We'd like production access with trading:read.\n", ""},
		{"the prose is quoted history", "Thanks, that is all.\n\nOn Thu, 26 Nov 2026 at 10:00, Jane <jane@acme.example> wrote:\n> a production key with trading:read and marketdata:read, label it acme-md\n", ""},
		{"keydesk's own words pasted back", "Hello,\n\nWe received your request for Buildmarkets API keys.\nThis is what we understood: a production key with trading:read, label it acme-md\n\n-- \nBuildmarkets API key desk\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, email("", tt.body), testOptions())
			if r.Verdict != Review || len(r.Requests) != 1 {
				t.Fatalf("verdict %s, %d requests: want review, one request", r.Verdict, len(r.Requests))
			}
			q := r.Requests[0]
			if q.State != keydesk.StatePendingReview || !q.HasFlag(keydesk.FlagNeedsReview) {
				t.Errorf("state %s flags %v: want pending_review, needs-review", q.State, q.Flags)
			}
			if q.Environment != "" || len(q.Scopes) != 0 || q.Label != "" {
				t.Errorf("the request's own fields were set: %s %v %q", q.Environment, q.Scopes, q.Label)
			}
			if tt.want == "" {
				if q.Proposal != nil || q.HasFlag(keydesk.FlagFromProse) {
					t.Errorf("suggested %+v (flags %v), want nothing", q.Proposal, q.Flags)
				}
				return
			}
			if q.Proposal == nil || !q.HasFlag(keydesk.FlagFromProse) {
				t.Fatalf("no suggestion (flags %v, warnings %v), want %s", q.Flags, r.Warnings, tt.want)
			}
			p := q.Proposal
			got := string(p.Environment) + " · " + keydesk.JoinScopes(p.Scopes) + " · " + p.Label
			if got != tt.want {
				t.Errorf("suggested %s, want %s", got, tt.want)
			}
			if p.From != "jane@acme.example" || p.MessageID != "t1@acme.example" || p.ID == "" {
				t.Errorf("proposal %+v: want it from Jane, with the email's Message-ID and an ID", p)
			}
			shown := false
			for _, w := range q.Warnings {
				shown = shown || strings.HasPrefix(w, "suggested: "+tt.want)
			}
			if !shown {
				t.Errorf("warnings %v do not show %q", q.Warnings, "suggested: "+tt.want)
			}
			// Read again, the same email proposes the same thing.
			again := mustParse(t, email("", tt.body), testOptions())
			if again.Requests[0].Proposal.ID != p.ID {
				t.Errorf("proposal ID %s then %s: want it stable", p.ID, again.Requests[0].Proposal.ID)
			}
		})
	}
}

// TestProseNeverOverFields: an email with field lines is read from them;
// its prose suggests nothing, and an accepted request stays as the lines say.
func TestProseNeverOverFields(t *testing.T) {
	r := mustParse(t, email("", "Please also consider a production key with trading:read, label it other.\n\n"+request), testOptions())
	if r.Verdict != Accept || r.Requests[0].Proposal != nil || r.Requests[0].HasFlag(keydesk.FlagFromProse) {
		t.Fatalf("verdict %s, proposal %+v, flags %v", r.Verdict, r.Requests[0].Proposal, r.Requests[0].Flags)
	}
}
