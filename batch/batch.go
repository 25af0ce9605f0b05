// Package batch turns approved key requests into keys: on a schedule or on
// demand, it creates each key through the Buildmarkets API, has it sealed
// to the partner's pinned contact key and puts the ciphertext in the
// outbox, and it cleans up after crashes and failed deliveries.
//
// Invariants:
//   - One batch at a time across every instance (a lease in the locks
//     bucket); a batch asked for while another runs is recorded as refused.
//   - A contact key is checked before a key is created: a key that cannot
//     be delivered is never made.
//   - The record moves approved → generating, carrying a fresh Attempt,
//     before the API is called, and generating → generated only after the
//     delivery is in the outbox. A crash in between leaves generating; the
//     next start (and every batch) reconciles it: the keys the API made for
//     that attempt are listed and revoked, since their secret is lost, and
//     the request goes back to approved for a new key. So no request ever
//     holds two live keys.
//   - Requests with the same partner, environment and label are handled one
//     after the other, so that reconciling one never takes another's key.
//   - The secret exists only in memory between the API's answer and the
//     Sealer; it is wiped after, and never logged, stored or reported.
//   - Keys whose delivery failed, or that were not delivered in time, are
//     revoked and the requester is told.
//   - A rotation makes its new key as an issue does; its old key is never
//     an orphan of the attempt, and is revoked (through a revoke request
//     the rotation makes once) when the contact confirms or its grace
//     ends: never two live keys beyond the grace without support being
//     told (rotate.go).
//   - A key is the triple (partner, environment, key ID) everywhere: the
//     API numbers keys per account and environment.
//   - Every batch lists each account's keys into the key inventory before
//     its attempts, and makes no key in an account it could not list; a
//     key the inventory knew before an attempt began is never that
//     attempt's orphan, nor is a key of other scopes; when several keys
//     could be the orphan, none is revoked and a person decides.
//   - An approved revoke request runs at once, under its own lease (never
//     behind a batch): approved → revoking → DELETE → revoked, each step
//     repeatable, so that a crash is finished by the next sweep.
package batch

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// LeaseName is the lease held while a batch runs.
const LeaseName = "batch"

// Outcomes of a request in a batch, as counted in the batch record, the
// report and keydesk_batch_outcomes_total.
const (
	OutcomeGenerated  = "generated"  // key created, delivery queued
	OutcomeRetry      = "retry"      // temporary API trouble: stays approved for the next batch
	OutcomeBlocked    = "blocked"    // the contact key cannot receive a key
	OutcomeFailed     = "failed"     // credentials refused, or the API refused the request
	OutcomeSkipped    = "skipped"    // its partner's credentials were refused earlier in this batch
	OutcomeReconciled = "reconciled" // an interrupted attempt cleaned up: orphan keys revoked
	OutcomeRevoked    = "revoked"    // an undelivered key revoked
	OutcomeConflict   = "conflict"   // the record changed under the batch (cancelled, say)
	OutcomeError      = "error"      // the batch could not finish this request; see the detail
	OutcomeLeft       = "left"       // not reached: the batch stopped first
)

// Options configure a Runner.
type Options struct {
	// Queue stores requests, batch records, the audit trail and the outbox.
	Queue *queue.Conn
	// Partners returns the partner registry in force.
	Partners func() *keydesk.Registry
	// Accounts gives the API per partner and environment.
	Accounts Accounts
	// Classify says what kind an API error is.
	Classify Classifier
	// Sealer checks contact keys and encrypts deliveries.
	Sealer Sealer
	// Templates render the batch report, alerts and revocation notices.
	Templates *templates.Set

	// Schedule is batch.schedule; empty means batches run only on demand.
	Schedule string
	// Concurrency is how many requests are in hand at once (batch.concurrency). Default 8.
	Concurrency int
	// SupportAddress receives batch reports and alerts (smtp.support_address).
	// Empty: none are sent.
	SupportAddress string
	// RevokeUndeliveredAfter: a generated key not delivered within this
	// long is revoked (delivery.revoke_undelivered_after). 0: never.
	RevokeUndeliveredAfter time.Duration

	// RotationGrace is how long the old key of a rotation keeps working
	// after the new one is made, unless the technical contact confirms
	// sooner (rotation.grace). Default 7 days.
	RotationGrace time.Duration
	// RotationMaxAge is the rotation policy (rotation.max_age): the
	// requester of a key older than RotationMaxAge − RotationRemindBefore
	// is reminded once. 0: no policy.
	RotationMaxAge time.Duration
	// RotationRemindBefore is how long before RotationMaxAge the reminder
	// goes (rotation.remind_before). Default 30 days.
	RotationRemindBefore time.Duration

	// Holder names this instance in the lease and the audit trail.
	Holder string
	// LeaseTTL of the batch lease; renewed at a third of it. Default 30s.
	LeaseTTL time.Duration
	// LeaseWait is how long a batch waits for the lease held by another
	// instance (or one that died) before it is refused. Default LeaseTTL
	// plus a second; negative: refuse at once.
	LeaseWait time.Duration
	// MaxTries bounds the API tries per request in one batch. Default 3.
	MaxTries int
	// Backoff is the first wait between tries, doubled each time, at most
	// MaxBackoff; a Retry-After from the API counts if longer. Default 2s, 30s.
	Backoff, MaxBackoff time.Duration
	// ClockSkew is how far the API's clock may be behind ours when keys
	// are matched to an attempt. Default 2m.
	ClockSkew time.Duration
	// RequestTimeout bounds the handling of one request, API calls and
	// retries included. Default 5m.
	RequestTimeout time.Duration
	// MaxRequests bounds the requests one batch takes on; the rest wait
	// for the next batch. Default 10000.
	MaxRequests int
	// InventoryInterval is how often every account's keys are listed
	// beside the batches (batch.inventory_interval). Default 1h.
	InventoryInterval time.Duration
	// SweepInterval is how often approved and interrupted revocations
	// are looked for, beside the revoke records that ask for them at
	// once. Default 1m.
	SweepInterval time.Duration

	// Clock is the time source of the schedule and back-offs. Default the wall clock.
	Clock Clock
	// Logger; default discards.
	Logger *slog.Logger
	// Metrics, if set, receives keydesk_batch_* series.
	Metrics *metrics.Registry
	// Failpoint, if set, is called at each step of a request's handling
	// with the step's name (after-generating, after-create, after-seal,
	// after-enqueue, after-generated; after-revoking and after-revoke for
	// a revocation). Crash tests use it to kill the process there.
	Failpoint func(step string)
}

// Runner runs batches.
type Runner struct {
	o        Options
	q        *queue.Conn
	log      *slog.Logger
	clock    Clock
	duration *metrics.Histogram
	outcomes *metrics.Counter
	sweep    *sweepState
}

// Validate reports every setting of the batch section outside what
// keydesk supports, joined, each as "batch.<key>: what" (the key as
// keydesk.yaml spells it, for `keydesk check` and serve to name the
// file): a schedule that parses, a concurrency and a lease in range.
// Zero values are the defaults New applies.
func (o *Options) Validate() error {
	var errs []error
	if o.Schedule != "" {
		if _, err := ParseSchedule(o.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("batch.schedule: %w", err))
		}
	}
	if o.Concurrency < 0 || o.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("batch.concurrency: %d is out of range 1..256", o.Concurrency))
	}
	if o.LeaseTTL != 0 && (o.LeaseTTL < time.Second || o.LeaseTTL > time.Hour) {
		errs = append(errs, fmt.Errorf("batch.lease_ttl: %s is out of range 1s..1h", o.LeaseTTL))
	}
	errs = append(errs, o.validateRotation()...)
	if o.InventoryInterval != 0 && (o.InventoryInterval < time.Minute || o.InventoryInterval > 7*24*time.Hour) {
		errs = append(errs, fmt.Errorf("batch.inventory_interval: %s is out of range 1m..7d", o.InventoryInterval))
	}
	return errors.Join(errs...)
}

// missingParts reports the parts a Runner needs and o lacks.
func (o *Options) missingParts() error {
	var errs []error
	if o.Queue == nil {
		errs = append(errs, errors.New("batch: no queue"))
	}
	if o.Partners == nil {
		errs = append(errs, errors.New("batch: no partner registry"))
	}
	if o.Accounts == nil {
		errs = append(errs, errors.New("batch: no API accounts"))
	}
	if o.Classify == nil {
		errs = append(errs, errors.New("batch: no API error classifier"))
	}
	if o.Sealer == nil {
		errs = append(errs, errors.New("batch: no sealer"))
	}
	if o.Templates == nil {
		errs = append(errs, errors.New("batch: no templates"))
	}
	return errors.Join(errs...)
}

// New checks o and returns a Runner.
func New(o Options) (*Runner, error) {
	if err := errors.Join(o.missingParts(), o.Validate()); err != nil {
		return nil, err
	}
	o.Concurrency = cmp.Or(o.Concurrency, 8)
	o.LeaseTTL = cmp.Or(o.LeaseTTL, 30*time.Second)
	o.LeaseWait = cmp.Or(o.LeaseWait, o.LeaseTTL+time.Second)
	o.LeaseWait = max(o.LeaseWait, 0)
	o.MaxTries = cmp.Or(o.MaxTries, 3)
	o.Backoff = cmp.Or(o.Backoff, 2*time.Second)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, 30*time.Second)
	o.ClockSkew = cmp.Or(o.ClockSkew, 2*time.Minute)
	o.RequestTimeout = cmp.Or(o.RequestTimeout, 5*time.Minute)
	o.MaxRequests = cmp.Or(o.MaxRequests, 10000)
	o.InventoryInterval = cmp.Or(o.InventoryInterval, time.Hour)
	o.SweepInterval = cmp.Or(o.SweepInterval, time.Minute)
	if o.InventoryInterval < 0 || o.SweepInterval < 0 {
		return nil, errors.New("batch: negative inventory or sweep interval")
	}
	o.Holder = cmp.Or(o.Holder, "keydesk")
	o.RotationGrace = cmp.Or(o.RotationGrace, DefaultRotationGrace)
	o.RotationRemindBefore = cmp.Or(o.RotationRemindBefore, DefaultRotationRemindBefore)
	if o.Clock == nil {
		o.Clock = RealClock
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Failpoint == nil {
		o.Failpoint = func(string) {}
	}
	r := &Runner{o: o, q: o.Queue, log: o.Logger, clock: o.Clock, sweep: &sweepState{}}
	if o.Metrics != nil {
		r.duration = o.Metrics.Histogram("keydesk_batch_duration_seconds", "Wall time of each batch run.",
			[]float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600})
		r.outcomes = o.Metrics.Counter("keydesk_batch_outcomes_total", "What batches did with requests, by outcome.", "outcome")
	}
	return r, nil
}

// NextRun is when the next scheduled batch runs after now; zero without a schedule.
func (r *Runner) NextRun(now time.Time) time.Time {
	if r.o.Schedule == "" {
		return time.Time{}
	}
	t, _ := NextRun(r.o.Schedule, now)
	return t
}

func newAttemptID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
