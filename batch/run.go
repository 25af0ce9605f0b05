package batch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// maxOutcomes bounds the outcomes listed in one batch record (a KV value);
// beyond it only the counts grow.
const maxOutcomes = 2000

// maxDetail bounds the detail of one outcome in the record.
const maxDetail = 240

// actor is the batch's name in the audit trail of requests.
const actor = "batch"

// RunNow runs one batch now, for trigger (manual, schedule) as asked by
// by, and returns its record. A batch already running elsewhere makes it
// a refused batch: its record says so, and the error matches queue.ErrLeaseHeld.
func (r *Runner) RunNow(ctx context.Context, trigger, by string) (*keydesk.Batch, error) {
	now := r.clock.Now().UTC()
	b := &keydesk.Batch{ID: r.q.NewBatchID(), Trigger: trigger, By: by, Requested: now}
	create := func(ctx context.Context) (bool, error) { return true, r.q.PutBatch(ctx, b) }
	return b, r.execute(ctx, b, create, create)
}

// runScheduled runs the batch due at at. Its ID derives from at, so that
// of several instances sharing a cluster exactly one creates and runs it.
// While another instance holds the lease (running another batch), the
// scheduled batch is left as requested: whichever instance holds the
// lease next runs it. The instance that finds it taken says nothing.
func (r *Runner) runScheduled(ctx context.Context, at time.Time) (*keydesk.Batch, error) {
	b := &keydesk.Batch{ID: "B-" + at.UTC().Format("20060102-150405") + "-SCHED", Trigger: "schedule", By: "schedule", Requested: at.UTC()}
	create := func(ctx context.Context) (bool, error) {
		err := r.q.PutBatch(ctx, b)
		if errors.Is(err, keydesk.ErrConflict) {
			r.log.Debug("scheduled batch taken by another instance", "batch", b.ID)
			return false, nil
		}
		return err == nil, err
	}
	leave := func(ctx context.Context) (bool, error) {
		b.State, b.Started, b.Ended, b.Error = keydesk.BatchRequested, time.Time{}, time.Time{}, ""
		if _, err := create(ctx); err != nil {
			return false, err
		}
		return false, nil
	}
	return b, r.execute(ctx, b, create, leave)
}

// runRequested takes a batch asked for through the API (state requested)
// and runs it, unless another instance took it first. While another
// instance holds the lease the record stays requested, untouched: the
// lease holder runs it after its batch, and this instance looks again
// later (Run). A lease held elsewhere never fails a batch a person asked for.
func (r *Runner) runRequested(ctx context.Context, b *keydesk.Batch) error {
	if b.State != keydesk.BatchRequested {
		return nil
	}
	update := func(ctx context.Context) (bool, error) {
		err := r.q.PutBatch(ctx, b) // a compare-and-set on the revision read
		if errors.Is(err, keydesk.ErrConflict) {
			return false, nil // another instance took it
		}
		return err == nil, err
	}
	leave := func(context.Context) (bool, error) { return false, nil }
	switch b.Trigger {
	case keydesk.TriggerRevoke:
		return r.executeOn(ctx, b, LeaseRevoke, r.revokeNow, update, leave)
	case keydesk.TriggerInventory:
		return r.executeOn(ctx, b, LeaseInventory, r.inventoryRun, update, leave)
	}
	return r.execute(ctx, b, update, leave)
}

// lifeTrigger reports whether a batch record asks for the key's life
// (revocations, the inventory) rather than for a batch: those run at once,
// beside any batch, never generating a key.
func lifeTrigger(trigger string) bool {
	return trigger == keydesk.TriggerRevoke || trigger == keydesk.TriggerInventory
}

// execute runs batch b under the batch lease. claim, called once the lease
// is held, writes b in state running (so that a running batch always holds
// the lease, and one found running by a lease holder is stale); it reports
// false if another instance took the batch. If the lease stays held
// elsewhere, refuse decides what becomes of b: it reports whether it wrote
// b as failed (RunNow, whose caller waits for the answer) or left it for
// the lease holder. execute then writes the final record, the audit event
// and the report.
func (r *Runner) execute(ctx context.Context, b *keydesk.Batch, claim, refuse func(ctx context.Context) (bool, error)) error {
	return r.executeOn(ctx, b, LeaseName, r.runLocked, claim, refuse)
}

// executeOn is execute with the lease and the work of the run: a batch
// (runLocked under the batch lease), revocations or the inventory.
func (r *Runner) executeOn(ctx context.Context, b *keydesk.Batch, lease string, work func(context.Context, *run) error, claim, refuse func(ctx context.Context) (bool, error)) error {
	log := r.log.With("batch", b.ID)
	st := newRun(r, b)
	claimed := false
	err := r.runExclusive(ctx, lease, func(ctx context.Context) error {
		b.State, b.Started = keydesk.BatchRunning, r.clock.Now().UTC()
		ok, err := claim(ctx)
		if err != nil || !ok {
			return err
		}
		claimed = true
		log.Info("batch starting", "trigger", b.Trigger, "by", b.By)
		_ = r.audit(ctx, b.ID, "batch-start", fmt.Sprintf("%s batch asked by %s", b.Trigger, b.By))
		return work(ctx, st)
	})
	// The record is written even when the run was cancelled: it must not
	// stay "running".
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if !claimed {
		if !errors.Is(err, queue.ErrLeaseHeld) {
			return err
		}
		b.State, b.Started, b.Ended = keydesk.BatchFailed, time.Time{}, r.clock.Now().UTC()
		b.Error = "refused: another batch is running (" + err.Error() + "); approved requests wait for the next batch"
		if lease != LeaseName {
			b.Error = "refused: another instance holds the " + lease + " lease (" + err.Error() + ")"
		}
		failed, rerr := refuse(wctx)
		switch {
		case rerr != nil:
			log.Error("batch record not saved", "err", rerr)
		case failed:
			_ = r.audit(wctx, b.ID, "batch-refused", b.Error)
			log.Warn("batch refused", "err", err)
		default:
			log.Info("batch waits: another instance holds the batch lease and runs it, or this one does later", "err", err)
		}
		return err
	}
	st.mu.Lock()
	b.Ended = r.clock.Now().UTC()
	b.Counts = st.counts
	b.Outcomes = st.outcomes
	switch {
	case err != nil:
		b.State = keydesk.BatchFailed
		b.Error = err.Error()
	default:
		b.State = keydesk.BatchDone
		if st.stopped {
			b.Error = "stopped before the end: requests not reached stay approved for the next batch"
		}
	}
	st.mu.Unlock()
	if perr := r.q.PutBatch(wctx, b); perr != nil {
		log.Error("batch record not saved", "err", perr)
	}
	summary := summarize(b)
	_ = r.audit(wctx, b.ID, "batch-"+string(b.State), summary)
	if r.duration != nil {
		r.duration.Observe(b.Ended.Sub(b.Started).Seconds())
	}
	if rerr := r.sendReport(wctx, b); rerr != nil {
		log.Error("batch report not queued", "err", rerr)
	}
	if err != nil {
		log.Warn("batch did not run to the end", "err", err, "summary", summary)
	} else {
		log.Info("batch done", "summary", summary, "seconds", b.Ended.Sub(b.Started).Seconds())
	}
	return err
}

// runExclusive runs fn under the batch lease. While another holder has
// it, it tries again for up to LeaseWait: a lease left by an instance that
// died expires within its TTL, so a batch asked for just after a restart
// still runs. A lease still held after that refuses the batch.
func (r *Runner) runExclusive(ctx context.Context, lease string, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(r.o.LeaseWait)
	for {
		err := r.q.RunExclusive(ctx, lease, r.o.Holder, r.o.LeaseTTL, fn)
		if !errors.Is(err, queue.ErrLeaseHeld) || !time.Now().Before(deadline) {
			return err
		}
		// The lease lives in the server's clock, not the injected one.
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(time.Second, r.o.LeaseTTL/4, time.Until(deadline)+time.Millisecond)):
		}
	}
}

func summarize(b *keydesk.Batch) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(b.Counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, b.Counts[k]))
	}
	s := strings.Join(parts, " ")
	if s == "" {
		s = "nothing to do"
	}
	if b.Error != "" {
		s += "; " + b.Error
	}
	return s
}

func (r *Runner) audit(ctx context.Context, ref, action, change string) error {
	err := r.q.Record(ctx, "batch", keydesk.Event{Ref: ref, At: r.clock.Now().UTC(), Actor: r.o.Holder, Action: action, Change: change})
	if err != nil {
		r.log.Warn("audit event not recorded", "batch", ref, "action", action, "err", err)
	}
	return err
}

// run is the state of one batch run, shared by its workers.
type run struct {
	r *Runner
	b *keydesk.Batch

	mu       sync.Mutex
	counts   map[string]int
	outcomes []keydesk.BatchOutcome
	stopped  bool
	// skip holds partner/environment pairs whose credentials were refused.
	skip map[string]string
	// apis caches one API per partner/environment.
	apis map[string]API
	// recorded holds every key that a request record names: such a key is
	// never an orphan. Keys are whole triples: the API numbers them per
	// partner account and environment, so an ID alone matches keys of
	// other accounts.
	recorded map[keydesk.KeyRef]bool
	// revoked holds the keys this run revoked, which an API may go on listing.
	revoked map[keydesk.KeyRef]bool
	// unlisted holds the partner/environment pairs whose keys this run
	// could not list: no key is made there, since a key the partner made
	// meanwhile would be unknown to a reconciliation.
	unlisted map[string]string
}

func newRun(r *Runner, b *keydesk.Batch) *run {
	return &run{r: r, b: b, counts: map[string]int{}, skip: map[string]string{}, apis: map[string]API{}, recorded: map[keydesk.KeyRef]bool{}, revoked: map[keydesk.KeyRef]bool{}, unlisted: map[string]string{}}
}

func (st *run) add(o keydesk.BatchOutcome) {
	if len(o.Detail) > maxDetail {
		cut := maxDetail
		for cut > 0 && !utf8.RuneStart(o.Detail[cut]) {
			cut--
		}
		o.Detail = o.Detail[:cut] + "…"
	}
	st.mu.Lock()
	st.counts[o.Outcome]++
	if len(st.outcomes) < maxOutcomes {
		st.outcomes = append(st.outcomes, o)
	}
	st.mu.Unlock()
	if st.r.outcomes != nil {
		st.r.outcomes.Inc(o.Outcome)
	}
	lv := st.r.log.Info
	switch o.Outcome {
	case OutcomeFailed, OutcomeError, OutcomeBlocked:
		lv = st.r.log.Warn
	}
	lv("request handled", "batch", st.b.ID, "request", o.RequestID, "partner", o.Partner, "outcome", o.Outcome, "key", o.KeyID, "detail", o.Detail)
}

func pairKey(p string, env keydesk.Environment) string { return p + "/" + string(env) }

// skipped reports why the pair is skipped in this batch, if it is.
func (st *run) skipped(partner string, env keydesk.Environment) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	why, ok := st.skip[pairKey(partner, env)]
	return why, ok
}

// refuse marks the pair skipped; it reports whether this call did it, so
// that one alert goes out per pair.
func (st *run) refuse(partner string, env keydesk.Environment, why string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	k := pairKey(partner, env)
	if _, ok := st.skip[k]; ok {
		return false
	}
	st.skip[k] = why
	return true
}

// ErrNoCredentials is account's error when partners.yaml gives the batch
// role no keys:manage credentials for a partner's environment: the request
// fails with a problem that says so, rather than reaching the API.
var ErrNoCredentials = errors.New("no keys:manage credentials configured")

func (st *run) account(p *keydesk.Partner, env keydesk.Environment) (API, error) {
	// Checked here, whatever Accounts does with empty credentials.
	if pe, ok := p.Environments[env]; !ok || pe.APIKey == "" || pe.APISecret.IsZero() {
		return nil, fmt.Errorf("%w for %s %s", ErrNoCredentials, p.ID, env)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	k := pairKey(p.ID, env)
	if a, ok := st.apis[k]; ok {
		return a, nil
	}
	a, err := st.r.o.Accounts.Account(p, env)
	if err != nil {
		return nil, err
	}
	st.apis[k] = a
	return a, nil
}

func (st *run) record(k keydesk.KeyRef) {
	if k.IsZero() {
		return
	}
	st.mu.Lock()
	st.recorded[k] = true
	st.mu.Unlock()
}

func (st *run) revoke(k keydesk.KeyRef) {
	st.mu.Lock()
	st.revoked[k] = true
	st.mu.Unlock()
}

// known reports whether k is held by a request or was revoked by this run:
// either way it is no orphan to revoke.
func (st *run) known(k keydesk.KeyRef) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.recorded[k] || st.revoked[k]
}

// runLocked is a batch under the lease: list the keys of every account
// (so that every key that exists before this batch's attempts is known),
// reconcile, revoke what was asked for and what was not delivered,
// generate, then sweep rotations.
func (r *Runner) runLocked(ctx context.Context, st *run) error {
	if err := r.loadRecorded(ctx, st); err != nil {
		return err
	}
	if err := r.refreshInventories(ctx, st); err != nil {
		r.log.Warn("inventory incomplete", "batch", st.b.ID, "err", err)
	}
	if err := r.reconcileAll(ctx, st); err != nil {
		return err
	}
	if err := r.revokeRequestedIfFree(ctx, st); err != nil {
		return err
	}
	if err := r.revokeUndelivered(ctx, st); err != nil {
		return err
	}
	if err := r.generate(ctx, st); err != nil {
		return err
	}
	// Keys just made and rotations confirmed since the last sweep move
	// on now, not a minute later. The sweep's troubles are its own: they
	// do not fail the batch.
	if err := r.SweepRotations(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("rotation sweep after the batch", "batch", st.b.ID, "err", err)
	}
	return nil
}

// loadRecorded fills the set of keys that requests hold.
func (r *Runner) loadRecorded(ctx context.Context, st *run) error {
	all, err := r.q.List(ctx, queue.Filter{})
	if err != nil {
		return err
	}
	for _, req := range all {
		st.record(req.KeyRef())
		// The key a rotation replaces shares the new key's label and may
		// be young: it is never an orphan of the rotation's attempt.
		if req.ReplacesKeyID != "" {
			st.record(keydesk.KeyRef{Partner: req.Partner, Environment: req.Environment, ID: req.ReplacesKeyID})
		}
	}
	return nil
}

// generate creates keys for the approved requests.
func (r *Runner) generate(ctx context.Context, st *run) error {
	all, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StateApproved}})
	if err != nil {
		return err
	}
	// Issues and rotations make keys; an approved revocation makes none
	// (it is revoked, not generated).
	reqs := slices.DeleteFunc(all, func(req *keydesk.Request) bool { return req.KindOf() == keydesk.KindRevoke })
	if len(reqs) > r.o.MaxRequests {
		r.log.Warn("more approved requests than one batch takes: the rest wait for the next batch",
			"batch", st.b.ID, "approved", len(reqs), "max", r.o.MaxRequests)
		st.mu.Lock()
		st.counts[OutcomeLeft] += len(reqs) - r.o.MaxRequests
		st.mu.Unlock()
		reqs = reqs[:r.o.MaxRequests]
	}
	// Requests that share a partner, environment and label form a group
	// handled in order by one worker: reconciling one of them must never
	// see another's key in the making.
	var order []string
	groups := map[string][]*keydesk.Request{}
	for _, req := range reqs {
		k := pairKey(req.Partner, req.Environment) + "/" + req.Label
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], req)
	}
	work := make(chan []*keydesk.Request)
	var wg sync.WaitGroup
	for range min(r.o.Concurrency, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range work {
				for _, req := range g {
					if ctx.Err() != nil {
						st.mu.Lock()
						st.stopped = true
						st.mu.Unlock()
						st.add(keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner, Outcome: OutcomeLeft, Detail: "the batch stopped first"})
						continue
					}
					r.handle(ctx, st, req)
				}
			}
		}()
	}
	for _, k := range order {
		work <- groups[k]
	}
	close(work)
	wg.Wait()
	return nil
}

// handle takes one approved request as far as it can go in this batch.
// The work in hand finishes on its own deadline even when ctx (the role
// stopping) ends: a create the API has answered is seen through.
func (r *Runner) handle(ctx context.Context, st *run, req *keydesk.Request) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.RequestTimeout)
	defer cancel()
	out := keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner}
	done := func(outcome, detail string) {
		out.Outcome, out.Detail = outcome, detail
		st.add(out)
	}
	p, ok := r.o.Partners().Partner(req.Partner)
	if !ok {
		problem := fmt.Sprintf("partner %q is not in partners.yaml: add it back, or cancel the request", req.Partner)
		r.settle(rctx, req, keydesk.StateBlocked, problem, done, OutcomeBlocked)
		return
	}
	if !req.Environment.Valid() || req.Label == "" || len(req.Scopes) == 0 {
		problem := "the request lacks an environment, a label or scopes: correct it and approve it again"
		r.settle(rctx, req, keydesk.StateFailed, problem, done, OutcomeFailed)
		return
	}
	if req.KindOf() == keydesk.KindRotate && req.ReplacesKeyID == "" {
		// A new key that replaces nothing would leave two live keys.
		problem := "the rotation names no key to replace: pick the key (replaces_key_id) and approve it again"
		r.settle(rctx, req, keydesk.StateFailed, problem, done, OutcomeFailed)
		return
	}
	if why, ok := st.skipped(p.ID, req.Environment); ok {
		done(OutcomeSkipped, why)
		return
	}
	st.mu.Lock()
	why, unlisted := st.unlisted[pairKey(p.ID, req.Environment)]
	st.mu.Unlock()
	if unlisted {
		done(OutcomeRetry, "the account's keys could not be listed ("+why+"); stays approved for the next batch")
		return
	}
	api, err := st.account(p, req.Environment)
	if err != nil {
		problem := fmt.Sprintf("no usable API credentials for %s %s: %v", p.ID, req.Environment, err)
		if errors.Is(err, ErrNoCredentials) {
			problem = err.Error() + ": give the batch role its api_key and api_secret in partners.yaml, reload with SIGHUP, then retry the request"
		}
		r.refused(rctx, st, p, req.Environment, problem)
		r.settle(rctx, req, keydesk.StateFailed, problem, done, OutcomeFailed)
		return
	}
	// Rule 3: a key that cannot be delivered is never made.
	if err := r.o.Sealer.CheckContact(p, r.clock.Now()); err != nil {
		problem := fmt.Sprintf("the technical contact's key (%s) cannot receive a key: %v; update the pinned key in partners.yaml, then retry", p.TechnicalContact.Email, err)
		r.settle(rctx, req, keydesk.StateBlocked, problem, done, OutcomeBlocked)
		return
	}
	r.attempts(ctx, rctx, st, p, api, req, &out, done)
}

// attempts makes req's key, trying again after a temporary failure with
// a growing wait while the batch allows (ctx) and the record (rctx).
func (r *Runner) attempts(ctx, rctx context.Context, st *run, p *keydesk.Partner, api API, req *keydesk.Request, out *keydesk.BatchOutcome, done func(string, string)) {
	cur := req
	for try := 1; ; try++ {
		res := r.attempt(rctx, st, p, api, cur)
		if res.reconciled != "" {
			st.add(keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner, Outcome: OutcomeReconciled, Detail: res.reconciled})
		}
		if res.outcome != "" {
			out.KeyID = res.keyID
			done(res.outcome, res.detail)
			return
		}
		cur = res.next
		wait := min(r.o.Backoff<<(try-1), r.o.MaxBackoff)
		if res.retryAfter > wait {
			wait = res.retryAfter
		}
		if try >= r.o.MaxTries || wait > r.o.MaxBackoff {
			done(OutcomeRetry, fmt.Sprintf("%s; stays approved for the next batch", res.detail))
			return
		}
		select {
		case <-ctx.Done():
			done(OutcomeRetry, fmt.Sprintf("%s; the batch stopped: stays approved", res.detail))
			return
		case <-r.clock.After(wait):
		}
	}
}

// settle moves an approved request to a final state of this batch.
func (r *Runner) settle(ctx context.Context, req *keydesk.Request, to keydesk.State, problem string, done func(string, string), outcome string) {
	_, err := r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "batch", From: keydesk.StateApproved, To: to, Revision: req.Revision, Note: problem,
		Mutate: func(x *keydesk.Request) error { x.Problem = problem; return nil },
	})
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			done(OutcomeConflict, "the record changed during the batch: "+err.Error())
			return
		}
		done(OutcomeError, err.Error())
		return
	}
	done(outcome, problem)
}

// attemptResult is how one attempt ended: with an outcome, or (outcome
// empty) with the request back in approved for another try.
type attemptResult struct {
	outcome, detail string
	keyID           string
	reconciled      string
	next            *keydesk.Request
	retryAfter      time.Duration
}

// attempt is one try at a key: approved → generating → create → seal →
// outbox → generated.
func (r *Runner) attempt(ctx context.Context, st *run, p *keydesk.Partner, api API, req *keydesk.Request) attemptResult {
	gen, att, failed := r.startAttempt(ctx, st, req)
	if failed != nil {
		return *failed
	}
	r.o.Failpoint("after-generating")

	created, err := api.CreateKey(ctx, req.Label, req.Scopes)
	if err != nil {
		return r.createFailed(ctx, st, p, api, gen, err)
	}
	defer created.APISecret.Wipe()
	ref := keydesk.KeyRef{Partner: p.ID, Environment: req.Environment, ID: created.ID}
	r.recordCreated(ctx, ref, created.Key, req.ID)
	r.o.Failpoint("after-create")

	// A rotation's old key stops working at a time fixed now, so that the
	// encrypted email, the notice and the record all say the same.
	var oldStops time.Time
	if req.KindOf() == keydesk.KindRotate {
		oldStops = r.rotationDue(r.clock.Now())
	}
	entity, err := r.o.Sealer.Seal(keydesk.KeyDelivery{
		RequestID: req.ID, PartnerName: p.Name, Environment: req.Environment, Scopes: req.Scopes, Label: req.Label,
		KeyID: created.ID, APIKey: created.APIKey, APISecret: created.APISecret, CreatedAt: created.CreatedAt,
		ReplacesKeyID: req.ReplacesKeyID, OldKeyStops: oldStops,
		// No Subject: the protected (inner) subject comes from the
		// template and names environment and label; the outer one stays generic.
	}, p)
	created.APISecret.Wipe()
	if err != nil {
		problem := fmt.Sprintf("the key could not be encrypted to the technical contact's key: %v", err)
		return r.abandon(ctx, api, gen, ref, keydesk.StateBlocked, problem, OutcomeBlocked)
	}
	r.o.Failpoint("after-seal")

	msg := &keydesk.Outgoing{
		ID: req.ID + ".key." + att.ID, Kind: keydesk.KindKeyDelivery, RequestID: req.ID, Partner: p.ID, AttemptID: att.ID,
		To: []string{p.TechnicalContact.Email}, Subject: deliverySubject(req.ID), Entity: entity,
	}
	if err := r.q.Enqueue(ctx, msg); err != nil {
		problem := fmt.Sprintf("the delivery could not be queued: %v", err)
		res := r.abandon(ctx, api, gen, ref, keydesk.StateApproved, problem, "")
		return res
	}
	r.o.Failpoint("after-enqueue")

	_, err = r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "generated", From: keydesk.StateGenerating, To: keydesk.StateGenerated, Revision: gen.Revision,
		Note: fmt.Sprintf("batch %s: %s created, delivery queued to %s", st.b.ID, created.ID, p.TechnicalContact.Email),
		Mutate: func(x *keydesk.Request) error {
			x.KeyID, x.APIKey, x.Problem = created.ID, created.APIKey, ""
			if !oldStops.IsZero() {
				if x.Rotation == nil {
					x.Rotation = &keydesk.Rotation{}
				}
				x.Rotation.Due = oldStops
			}
			return nil
		},
	})
	if err != nil {
		// The record moved on (another instance reconciled it after our
		// lease was lost) or the store failed: the next reconciliation
		// revokes this key, and delivery drops a delivery of a stale attempt.
		return attemptResult{outcome: OutcomeError, detail: fmt.Sprintf("%s created but not recorded (%v): the next batch revokes it and makes a new one", created.ID, err)}
	}
	st.record(ref)
	r.o.Failpoint("after-generated")
	return attemptResult{outcome: OutcomeGenerated, detail: "delivery queued to " + p.TechnicalContact.Email, keyID: created.ID}
}

// startAttempt moves req from approved to generating with a new attempt,
// before any key is made: a crash after it is reconciled.
func (r *Runner) startAttempt(ctx context.Context, st *run, req *keydesk.Request) (*keydesk.Request, *keydesk.Attempt, *attemptResult) {
	att := &keydesk.Attempt{ID: newAttemptID(), StartedAt: r.clock.Now().UTC()}
	gen, err := r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "generate", From: keydesk.StateApproved, To: keydesk.StateGenerating, Revision: req.Revision,
		Note: fmt.Sprintf("batch %s: attempt %s", st.b.ID, att.ID),
		Mutate: func(x *keydesk.Request) error {
			x.Attempt = att
			x.Problem = ""
			return nil
		},
	})
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			return nil, nil, &attemptResult{outcome: OutcomeConflict, detail: "the record changed during the batch: " + err.Error()}
		}
		return nil, nil, &attemptResult{outcome: OutcomeError, detail: err.Error()}
	}
	return gen, att, nil
}

func deliverySubject(id string) string { return "Your Buildmarkets API key (" + id + ")" }

// createFailed acts on a failed CreateKey for the request gen (generating).
func (r *Runner) createFailed(ctx context.Context, st *run, p *keydesk.Partner, api API, gen *keydesk.Request, cerr error) attemptResult {
	kind, retryAfter := r.o.Classify(cerr)
	switch kind {
	case Refused:
		problem := fmt.Sprintf("the Buildmarkets API refused %s's %s credentials: %v; fix them in partners.yaml, then retry the request", p.ID, gen.Environment, cerr)
		r.refused(ctx, st, p, gen.Environment, problem)
		return r.leave(ctx, gen, keydesk.StateFailed, problem, OutcomeFailed, "")
	case Permanent, NotFound:
		problem := fmt.Sprintf("the Buildmarkets API refused the request: %v; correct it, then retry", cerr)
		return r.leave(ctx, gen, keydesk.StateFailed, problem, OutcomeFailed, "")
	case Unclear:
		// The API may have made the key: find and revoke it before another try.
		note, err := r.reconcileOne(ctx, st, api, gen)
		if err != nil {
			return attemptResult{outcome: OutcomeError, detail: fmt.Sprintf("the create may have succeeded (%v) and the check failed (%v): the next batch reconciles it", cerr, err)}
		}
		if note.blocked {
			return attemptResult{outcome: OutcomeBlocked, detail: note.note}
		}
		if note.next == nil {
			return attemptResult{outcome: OutcomeConflict, detail: "the record changed during reconciliation"}
		}
		return attemptResult{detail: fmt.Sprintf("unclear API error: %v", cerr), reconciled: note.note, next: note.next, retryAfter: retryAfter}
	default:
		res := r.leave(ctx, gen, keydesk.StateApproved, fmt.Sprintf("temporary API error: %v", cerr), "", "")
		res.retryAfter = retryAfter
		return res
	}
}

// leave moves the request gen (generating) to state to. With an empty
// outcome the result asks for another try.
func (r *Runner) leave(ctx context.Context, gen *keydesk.Request, to keydesk.State, problem, outcome, keyID string) attemptResult {
	next, err := r.q.Apply(ctx, gen.ID, queue.Change{
		Actor: actor, Action: "batch", From: keydesk.StateGenerating, To: to, Revision: gen.Revision, Note: problem,
		Mutate: func(x *keydesk.Request) error {
			if to != keydesk.StateGenerating {
				x.Attempt = nil
			}
			x.Problem = problem
			if to == keydesk.StateApproved {
				x.Problem = ""
			}
			return nil
		},
	})
	if err != nil {
		return attemptResult{outcome: OutcomeError, detail: fmt.Sprintf("%s; and the record could not be updated (%v): the next batch reconciles it", problem, err)}
	}
	return attemptResult{outcome: outcome, detail: problem, keyID: keyID, next: next}
}

// abandon revokes a key just made that cannot go out, and moves the
// request on. If the revocation fails the request stays generating, for
// the next reconciliation to finish.
func (r *Runner) abandon(ctx context.Context, api API, gen *keydesk.Request, ref keydesk.KeyRef, to keydesk.State, problem, outcome string) attemptResult {
	if err := r.revokeKey(ctx, api, ref.ID); err != nil {
		return attemptResult{outcome: OutcomeError, detail: fmt.Sprintf("%s; revoking %s failed (%v): the next batch revokes it", problem, ref.ID, err)}
	}
	r.recordRevoked(ctx, ref, r.clock.Now().UTC(), keydesk.InventoryKey{RequestID: gen.ID, MadeBy: keydesk.MadeByKeydesk})
	return r.leave(ctx, gen, to, problem+"; "+ref.ID+" revoked", outcome, "")
}

func (r *Runner) revokeKey(ctx context.Context, api API, id string) error {
	err := api.RevokeKey(ctx, id)
	if err == nil {
		return nil
	}
	if kind, _ := r.o.Classify(err); kind == NotFound {
		return nil // already gone
	}
	return err
}

// refused marks a partner/environment as refused for the rest of the
// batch and alerts support once.
func (r *Runner) refused(ctx context.Context, st *run, p *keydesk.Partner, env keydesk.Environment, problem string) {
	if !st.refuse(p.ID, env, "skipped: "+problem) {
		return
	}
	if r.o.SupportAddress == "" {
		return
	}
	title := fmt.Sprintf("API credentials of %s (%s) refused", p.Name, env)
	if strings.HasPrefix(problem, ErrNoCredentials.Error()) {
		title = fmt.Sprintf("No API credentials for %s (%s)", p.Name, env)
	}
	out, err := r.o.Templates.AlertMail(st.b.ID+".alert.credentials."+p.ID+"."+string(env), r.o.SupportAddress, templates.Alert{
		Title:  title,
		Text:   fmt.Sprintf("Batch %s could not create keys for partner %s in %s.\n\n%s", st.b.ID, p.ID, env, problem),
		Action: fmt.Sprintf("check the manager key of %s %s in partners.yaml (it needs the keys:manage scope), reload with SIGHUP, then retry the failed requests. The other requests of this partner and environment stay approved for the next batch.", p.ID, env),
	})
	if err != nil {
		r.log.Error("alert not rendered", "err", err)
		return
	}
	out.Partner = p.ID
	if err := r.q.Enqueue(ctx, out); err != nil {
		r.log.Error("alert not queued", "err", err)
	}
}
