package batch_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/templates"
	"github.com/buildmarkets/keydesk/templates/templatestest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s (run go test -update if the change is meant):\n%s", name, p, got)
	}
}

// TestMailGolden renders the report and the revocation notice from fixed
// data and compares them with the golden files.
func TestMailGolden(t *testing.T) {
	tpl := templates.MustLoadEmbedded()
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	b := &keydesk.Batch{
		ID: "B-20261127-100000-SCHED", Trigger: "schedule", By: "schedule", State: keydesk.BatchDone,
		Requested: start, Started: start, Ended: start.Add(83 * time.Second),
		Counts: map[string]int{"generated": 41, "blocked": 1, "failed": 1, "reconciled": 1, "revoked": 1, "skipped": 2},
		Outcomes: []keydesk.BatchOutcome{
			{RequestID: "KR-20261126-7QX4", Partner: "acme", Outcome: "generated", KeyID: "key-101"},
			{RequestID: "KR-20261126-9RT2", Partner: "globex", Outcome: "blocked", Detail: "the technical contact's key (sec@globex.example) cannot receive a key: expired on 2026-11-01"},
			{RequestID: "KR-20261126-3MPA", Partner: "initech", Outcome: "failed", Detail: "the Buildmarkets API refused initech's production credentials: 401 Unauthorized"},
		},
	}
	tests := []struct {
		name, template string
		data           any
		partner        bool // an email to a partner: wrapped, and its conventions checked
	}{
		{"batch-report", "batch-report", batch.ReportData{
			Batch: b, Duration: 83 * time.Second, Generated: 41, Revoked: 1, PendingReview: 3, Approved: 2,
			Counts:    []batch.ReportCount{{"blocked", 1}, {"failed", 1}, {"generated", 41}, {"reconciled", 1}, {"revoked", 1}, {"skipped", 2}},
			Attention: b.Outcomes[1:], NextRun: start.Add(6 * time.Hour),
		}, false},
		{"batch-report-empty", "batch-report", batch.ReportData{Batch: &keydesk.Batch{ID: "B-20261127-160000-SCHED", Trigger: "schedule", By: "schedule", State: keydesk.BatchDone, Started: start}}, false},
		{"revocation-notice", "revocation-notice", map[string]any{
			"RequestID": "KR-20261126-7QX4", "Partner": "Acme Capital", "Environment": "production", "Label": "prod-trading-engine",
			"KeyID": "key-101", "APIKey": "bm_key_abc123", "Reason": "s***@acme.example: 550 5.1.1 mailbox unavailable", "Contact": "s***@acme.example",
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			render := tpl.RenderMail
			if tc.partner {
				render = tpl.RenderPartnerMail
			}
			m, err := render(tc.template, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, "Subject: "+m.Subject+"\n\n"+m.Body)
			if tc.partner {
				templatestest.Check(t, m.Body)
			}
		})
	}
}
