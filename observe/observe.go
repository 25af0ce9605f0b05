// Package observe watches the whole deployment rather than one role:
// requests by state and how long the oldest has waited in each waiting
// state (from the queue, recomputed at most every observeEvery, so a
// scrape never waits on NATS), the technical contacts' key expiry, and an
// alert to support for a contact key that expires within keyExpiryWarning
// — at most once a day per key, whichever instances run; and the AUDIT
// stream's size against its limit, with an alert, at most once a day,
// once it is auditAlertFull full: past the limit the oldest events are
// dropped.
//
// Invariants: a scrape reads only what the last check computed, never
// the queue; an alert's ID names what it reports and the day, so the
// outbox and delivery's sent-once records send it once however many
// instances look; alert texts are templates (mail/alert-*.tmpl).
package observe

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

const (
	// observeEvery is how often the request gauges are recomputed.
	observeEvery = 15 * time.Second
	// keyCheckEvery is how often contact keys are looked at for the alert.
	keyCheckEvery = time.Hour
	// keyExpiryWarning is how far ahead an expiring contact key is alerted.
	keyExpiryWarning = 30 * 24 * time.Hour
	// auditAlertFull is how full the AUDIT stream gets before support is
	// alerted: room for weeks of normal use, time to raise the limit or
	// export the trail before the oldest events are dropped.
	auditAlertFull = 0.8
)

// waitingStates are those a request should not stay in for long; each gets
// an oldest-age gauge.
var waitingStates = []keydesk.State{
	keydesk.StatePendingReview, keydesk.StateApproved, keydesk.StateGenerating,
	keydesk.StateGenerated, keydesk.StateDeliveryFailed, keydesk.StateBlocked, keydesk.StateFailed,
}

// Options are what an Observer watches and where it alerts.
type Options struct {
	// Queue is where requests and the AUDIT stream are read and alerts
	// queued.
	Queue *queue.Conn
	// Partners returns the partner registry in force (it may be reloaded).
	Partners func() *keydesk.Registry
	// SupportAddress receives the alerts (smtp.support_address); empty:
	// alerts are only logged.
	SupportAddress string
	// Templates render the alerts; nil: alerts are only logged (the
	// templates did not load).
	Templates *templates.Set
	// Metrics is where the gauges are declared.
	Metrics *metrics.Registry
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Observer computes the gauges and sends the alerts.
type Observer struct {
	q        *queue.Conn
	partners func() *keydesk.Registry
	support  string
	tpl      *templates.Set
	log      *slog.Logger
	now      func() time.Time

	mu        sync.Mutex
	counts    map[keydesk.State]int
	oldest    map[keydesk.State]time.Time
	refreshed bool
	audit     *queue.AuditUsage // nil until first read
	// alerted remembers the alert IDs sent by this process; across
	// processes the outbox and delivery's sent-once records dedupe them.
	alerted map[string]bool
}

// New declares the gauges on o.Metrics; Run computes them and alerts.
func New(o Options) *Observer {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ob := &Observer{
		q: o.Queue, partners: o.Partners, support: o.SupportAddress, tpl: o.Templates,
		log: o.Log, now: o.Now, alerted: map[string]bool{},
	}
	ob.register(o.Metrics)
	return ob
}

// register declares the gauges; each reads what run computed.
func (o *Observer) register(m *metrics.Registry) {
	m.GaugeFunc("keydesk_requests", "Requests by state (recomputed every 15s).", func() map[string]float64 {
		o.mu.Lock()
		defer o.mu.Unlock()
		if !o.refreshed {
			return nil
		}
		out := map[string]float64{}
		for _, s := range keydesk.States {
			out[string(s)] = float64(o.counts[s])
		}
		return out
	}, "state")
	m.GaugeFunc("keydesk_request_oldest_age_seconds",
		"How long the oldest request in each waiting state has waited: since it arrived for pending_review, since its last change otherwise (0: none waits).",
		func() map[string]float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			if !o.refreshed {
				return nil
			}
			now := o.now()
			out := map[string]float64{}
			for _, s := range waitingStates {
				out[string(s)] = 0
				if t, ok := o.oldest[s]; ok {
					out[string(s)] = max(0, now.Sub(t).Seconds())
				}
			}
			return out
		}, "state")
	auditGauge := func(v func(u *queue.AuditUsage) float64) func() map[string]float64 {
		return func() map[string]float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			if o.audit == nil {
				return nil
			}
			return map[string]float64{"": v(o.audit)}
		}
	}
	m.GaugeFunc("keydesk_audit_bytes", "Bytes the AUDIT stream holds (recomputed every 15s).",
		auditGauge(func(u *queue.AuditUsage) float64 { return float64(u.Bytes) }))
	m.GaugeFunc("keydesk_audit_max_bytes", "The AUDIT stream's size limit (nats.audit_max_bytes): past it the oldest events are dropped.",
		auditGauge(func(u *queue.AuditUsage) float64 { return float64(u.MaxBytes) }))
	m.GaugeFunc("keydesk_contact_key_expiry_timestamp_seconds",
		"When each partner's technical-contact key expires (Unix time); keys that never expire are left out.",
		func() map[string]float64 {
			out := map[string]float64{}
			for _, p := range o.partners().Partners {
				if exp := p.TechnicalContact.KeyExpires; !exp.IsZero() {
					out[p.ID] = float64(exp.Unix())
				}
			}
			return out
		}, "partner")
	m.GaugeFunc("keydesk_contact_keys_expiring", "Technical-contact keys that expire within 30 days or have expired.",
		func() map[string]float64 {
			return map[string]float64{"": float64(len(o.expiring(o.now())))}
		})
}

// Run computes the gauges and checks for alerts until ctx is done.
func (o *Observer) Run(ctx context.Context) {
	o.refresh(ctx)
	o.checkKeys(ctx)
	gauges := time.NewTicker(observeEvery)
	defer gauges.Stop()
	keys := time.NewTicker(keyCheckEvery)
	defer keys.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gauges.C:
			o.refresh(ctx)
		case <-keys.C:
			o.checkKeys(ctx)
		}
	}
}

// refresh recomputes the request gauges from the queue. On an error the
// last values stay, and the log says why.
func (o *Observer) refresh(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reqs, err := o.q.List(lctx, queue.Filter{})
	if err != nil {
		if ctx.Err() == nil { // not shutting down
			o.log.Warn("request gauges not updated", "err", err)
		}
		return
	}
	counts := map[keydesk.State]int{}
	oldest := map[keydesk.State]time.Time{}
	for _, r := range reqs {
		counts[r.State]++
		since := r.UpdatedAt
		if r.State == keydesk.StatePendingReview {
			since = r.CreatedAt
		}
		if t, ok := oldest[r.State]; !ok || since.Before(t) {
			oldest[r.State] = since
		}
	}
	o.mu.Lock()
	o.counts, o.oldest, o.refreshed = counts, oldest, true
	o.mu.Unlock()
	o.checkAudit(ctx)
}
