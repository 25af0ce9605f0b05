package batch

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// maxReportLines bounds the per-request lines of a report email.
const maxReportLines = 200

// ReportCount is one line of a report's counts.
type ReportCount struct {
	Outcome string
	N       int
}

// ReportData is what the batch-report template gets.
type ReportData struct {
	Batch    *keydesk.Batch
	Duration time.Duration
	Counts   []ReportCount
	// Attention lists the requests that need a person: failed, blocked,
	// errors, and those left for the next batch.
	Attention []keydesk.BatchOutcome
	// More is how many such lines were left out.
	More int
	// Generated and Revoked count keys made and keys revoked.
	Generated, Revoked int
	// PendingReview is how many requests wait for review; Approved how many
	// wait for a batch.
	PendingReview, Approved int
	NextRun                 time.Time
}

// Report builds the report data of a finished batch.
func (r *Runner) Report(ctx context.Context, b *keydesk.Batch) ReportData {
	d := ReportData{Batch: b, NextRun: r.NextRun(r.clock.Now())}
	if !b.Ended.IsZero() && !b.Started.IsZero() {
		d.Duration = b.Ended.Sub(b.Started).Round(time.Second)
	}
	for _, k := range slices.Sorted(maps.Keys(b.Counts)) {
		d.Counts = append(d.Counts, ReportCount{k, b.Counts[k]})
	}
	d.Generated, d.Revoked = b.Counts[OutcomeGenerated], b.Counts[OutcomeRevoked]
	for _, o := range b.Outcomes {
		switch o.Outcome {
		case OutcomeGenerated, OutcomeRevoked, OutcomeReconciled, OutcomeSkipped, OutcomeLeft:
			continue
		}
		if len(d.Attention) >= maxReportLines {
			d.More++
			continue
		}
		d.Attention = append(d.Attention, o)
	}
	if reqs, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StatePendingReview, keydesk.StateApproved}}); err == nil {
		for _, q := range reqs {
			if q.State == keydesk.StatePendingReview {
				d.PendingReview++
			} else {
				d.Approved++
			}
		}
	}
	return d
}

// sendReport queues the report of b to support. A scheduled batch that
// did nothing, with nothing waiting for review or a batch, sends none.
func (r *Runner) sendReport(ctx context.Context, b *keydesk.Batch) error {
	if r.o.SupportAddress == "" || lifeTrigger(b.Trigger) {
		// A revocation or an inventory run is no batch: what needs a
		// person there is alerted on its own.
		return nil
	}
	d := r.Report(ctx, b)
	if b.Trigger == "schedule" && len(b.Counts) == 0 && b.Error == "" && d.PendingReview == 0 && d.Approved == 0 {
		return nil // nothing done and nothing waiting: no mail every few minutes for nothing
	}
	m, err := r.o.Templates.RenderMail("batch-report", d)
	if err != nil {
		return err
	}
	return r.q.Enqueue(ctx, &keydesk.Outgoing{
		ID: b.ID + ".report", Kind: keydesk.KindBatchReport, To: []string{r.o.SupportAddress}, Subject: m.Subject, Text: m.Body,
	})
}
