package batch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// LeaseRevoke is the lease held while revocations run: one instance
// revokes at a time, so that a request is revoked, noticed and recorded
// once. It is not the batch lease: a revocation never waits for a batch.
const LeaseRevoke = "revoke"

// LeaseInventory is the lease held while the inventory schedule lists
// every account, so that several instances do not all list them.
const LeaseInventory = "inventory"

// revokeRequestedIfFree revokes what was asked for, within a batch,
// unless another runner holds the revoke lease: that one is revoking
// now, and its sweep takes whatever this batch would have.
func (r *Runner) revokeRequestedIfFree(ctx context.Context, st *run) error {
	err := r.q.RunExclusive(ctx, LeaseRevoke, r.o.Holder, r.o.LeaseTTL, func(ctx context.Context) error {
		return r.revokeRequested(ctx, st)
	})
	if errors.Is(err, queue.ErrLeaseHeld) {
		r.log.Debug("revocations left to the runner that holds the revoke lease", "batch", st.b.ID, "err", err)
		return nil
	}
	return err
}

// revokeNow is a revoke run asked for by a record: the rotations first,
// so that a rotation just confirmed has its old key's revoke request,
// then every revocation.
func (r *Runner) revokeNow(ctx context.Context, st *run) error {
	if err := r.SweepRotations(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("rotation sweep before a revoke run", "batch", st.b.ID, "err", err)
	}
	return r.revokeRequested(ctx, st)
}

// revokeRequested revokes the key of every approved revoke request, and
// finishes those left revoking by a crash. The revoke lease is held.
func (r *Runner) revokeRequested(ctx context.Context, st *run) error {
	r.closeStale(ctx, st, keydesk.TriggerRevoke)
	reqs, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StateApproved, keydesk.StateRevoking}})
	if err != nil {
		return err
	}
	n := 0
	for _, req := range reqs {
		if req.KindOf() != keydesk.KindRevoke {
			continue
		}
		if ctx.Err() != nil || n >= r.o.MaxRequests {
			st.mu.Lock()
			st.stopped = ctx.Err() != nil
			st.counts[OutcomeLeft]++
			st.mu.Unlock()
			continue
		}
		n++
		r.revokeOne(ctx, st, req)
	}
	return nil
}

// SweepRevocations revokes, under the revoke lease, what approved revoke
// requests ask for and what a crash left revoking. The batch role runs it
// at start and every minute, so that a missed trigger or a crash never
// leaves a revocation behind. It does nothing while another instance
// holds the lease (that one is revoking). It reports how many requests
// it handled.
func (r *Runner) SweepRevocations(ctx context.Context) (int, error) {
	st := newRun(r, &keydesk.Batch{ID: "sweep-" + r.o.Holder})
	err := r.q.RunExclusive(ctx, LeaseRevoke, r.o.Holder, r.o.LeaseTTL, func(ctx context.Context) error {
		return r.revokeRequested(ctx, st)
	})
	if errors.Is(err, queue.ErrLeaseHeld) {
		return 0, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.outcomes) > 0 {
		var parts []string
		for _, o := range st.outcomes {
			parts = append(parts, o.RequestID+": "+o.Outcome)
		}
		r.log.Info("revocation sweep", "handled", strings.Join(parts, ", "))
	}
	return len(st.outcomes), err
}

// revokeOne takes one revoke request (approved, or revoking after a
// crash) as far as it goes: approved → revoking (an attempt recorded),
// DELETE with the partner's credentials for that environment (the client
// retries 429, 5xx and a dropped connection with the same key; a key the
// API no longer knows is already revoked), then the inventory, the
// request that made the key, the audit, the notice, and revoking →
// revoked last. Every step before the last repeats harmlessly, so a crash
// anywhere is finished by the next sweep.
func (r *Runner) revokeOne(ctx context.Context, st *run, req *keydesk.Request) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.RequestTimeout)
	defer cancel()
	v := &revocation{r: r, ctx: rctx, st: st, req: req, cur: req, ref: req.KeyRef(),
		out: keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner, KeyID: req.KeyID}}
	p, api, ok := v.account()
	if !ok || !v.begin() || !v.call(p, api) {
		return
	}
	r.o.Failpoint("after-revoke")
	v.finish(p)
}

// revocation is one revoke request on its way through revokeOne.
type revocation struct {
	r   *Runner
	ctx context.Context
	st  *run
	req *keydesk.Request
	cur *keydesk.Request // the record as last written
	ref keydesk.KeyRef
	out keydesk.BatchOutcome
}

func (v *revocation) done(outcome, detail string) {
	v.out.Outcome, v.out.Detail = outcome, detail
	v.st.add(v.out)
}

// fail moves the request to state to, with problem.
func (v *revocation) fail(to keydesk.State, problem string) {
	_, err := v.r.q.Apply(v.ctx, v.cur.ID, queue.Change{
		Actor: actor, Action: "revoke", From: v.cur.State, To: to, Revision: v.cur.Revision, Note: problem,
		Mutate: func(x *keydesk.Request) error { x.Problem = problem; return nil },
	})
	switch {
	case errors.Is(err, keydesk.ErrConflict):
		v.done(OutcomeConflict, "the record changed during the revocation: "+err.Error())
	case err != nil:
		v.done(OutcomeError, fmt.Sprintf("%s; and the record could not be updated (%v)", problem, err))
	default:
		v.done(OutcomeFailed, problem)
	}
}

// account finds the partner and the API account the key is in; false
// when the revocation cannot go on (its outcome is recorded).
func (v *revocation) account() (*keydesk.Partner, API, bool) {
	req, r := v.req, v.r
	p, ok := r.o.Partners().Partner(req.Partner)
	if !ok {
		v.fail(keydesk.StateFailed, fmt.Sprintf("partner %q is not in partners.yaml: add it back and retry, or revoke %s in the Buildmarkets console", req.Partner, req.KeyID))
		return nil, nil, false
	}
	if v.ref.IsZero() || !req.Environment.Valid() || len(v.ref.ID) > maxKeyID {
		v.fail(keydesk.StateFailed, "the revoke request names no key (an environment and a key ID): correct it and approve it again")
		return nil, nil, false
	}
	if why, skip := v.st.skipped(p.ID, req.Environment); skip {
		v.done(OutcomeSkipped, why)
		return nil, nil, false
	}
	api, err := v.st.account(p, req.Environment)
	if err != nil {
		problem := fmt.Sprintf("no usable API credentials for %s %s: %v", p.ID, req.Environment, err)
		if errors.Is(err, ErrNoCredentials) {
			problem = err.Error() + ": give the batch role its api_key and api_secret in partners.yaml, reload with SIGHUP, then retry the request"
		}
		r.refused(v.ctx, v.st, p, req.Environment, problem)
		v.fail(keydesk.StateFailed, problem)
		return nil, nil, false
	}
	return p, api, true
}

// begin moves an approved request to revoking, with an attempt; a request
// found revoking (a crash) goes on as it is.
func (v *revocation) begin() bool {
	if v.cur.State != keydesk.StateApproved {
		return true
	}
	att := &keydesk.Attempt{ID: newAttemptID(), StartedAt: v.r.clock.Now().UTC()}
	cur, err := v.r.q.Apply(v.ctx, v.req.ID, queue.Change{
		Actor: actor, Action: "revoke", From: keydesk.StateApproved, To: keydesk.StateRevoking, Revision: v.req.Revision,
		Note: fmt.Sprintf("%s: revoking %s (attempt %s)", v.st.b.ID, v.ref, att.ID),
		Mutate: func(x *keydesk.Request) error {
			x.Attempt, x.Problem = att, ""
			return nil
		},
	})
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			v.done(OutcomeConflict, "the record changed before the revocation: "+err.Error())
		} else {
			v.done(OutcomeError, err.Error())
		}
		return false
	}
	v.cur = cur
	v.r.o.Failpoint("after-revoking")
	return true
}

// call revokes the key at the API; false when it did not (the outcome is
// recorded: failed, or still revoking for the next sweep).
func (v *revocation) call(p *keydesk.Partner, api API) bool {
	req, ref := v.req, v.ref
	err := v.r.revokeKey(v.ctx, api, ref.ID)
	if err == nil {
		return true
	}
	kind, _ := v.r.o.Classify(err)
	switch kind {
	case Refused:
		problem := fmt.Sprintf("the Buildmarkets API refused %s's %s credentials while revoking %s: %v; fix them in partners.yaml, reload with SIGHUP, then retry the request", p.ID, req.Environment, ref.ID, err)
		v.r.refused(v.ctx, v.st, p, req.Environment, problem)
		v.fail(keydesk.StateFailed, problem)
	case Permanent:
		v.fail(keydesk.StateFailed, fmt.Sprintf("the Buildmarkets API refused to revoke %s: %v; revoke it in the Buildmarkets console, or correct the request and retry", ref, err))
	default:
		// Still revoking: the next sweep (within a minute) tries again
		// with the same key.
		v.done(OutcomeRetry, fmt.Sprintf("revoking %s failed for now (%v): stays revoking, tried again within a minute", ref, err))
	}
	return false
}

// finish records a key the API has revoked: the inventory, the request
// that made it, the audit, the notice, and the request revoked.
func (v *revocation) finish(p *keydesk.Partner) {
	r, req, ref, ctx := v.r, v.req, v.ref, v.ctx
	at := r.clock.Now().UTC()
	// The partner's own words go out in plain text: whatever looks like a
	// secret in them (a pasted leaked secret) does not.
	reason := keydesk.RedactSecrets(strings.TrimSpace(req.Reason))
	r.recordRevoked(ctx, ref, at, keydesk.InventoryKey{})
	made := r.revokeMaker(ctx, ref, at, req)
	inv, _ := r.inventoryOf(ctx, ref.Partner, ref.Environment)
	label, apiKey := "", ""
	if ik := inv.Key(ref.ID); ik != nil {
		label, apiKey = ik.Label, ik.APIKey
	}
	if label == "" && made != nil {
		label, apiKey = made.Label, made.APIKey
	}
	_ = r.q.Record(ctx, "batch", keydesk.Event{Ref: req.ID, At: at, Actor: r.o.Holder, Action: "key-revoked",
		Change: fmt.Sprintf("%s revoked at the API for %s: %s", ref, req.ID, reasonOr(reason))})
	if err := r.notifyKeyRevoked(ctx, v.cur, p, templates.KeyRevoked{
		RequestID: req.ID, Partner: p.Name, Environment: string(req.Environment), KeyID: ref.ID, Label: label, APIKey: apiKey,
		RevokedAt: at, Reason: reason, Rotation: req.RevokeOf != "",
	}); err != nil {
		r.log.Error("key-revoked notice not queued", "request", req.ID, "err", err)
	}
	note := fmt.Sprintf("%s revoked", ref)
	if made != nil {
		note += "; the key of " + made.ID
	}
	_, err := r.q.Apply(ctx, v.cur.ID, queue.Change{
		Actor: actor, Action: "revoked", From: keydesk.StateRevoking, To: keydesk.StateRevoked, Revision: v.cur.Revision, Note: note,
		Mutate: func(x *keydesk.Request) error {
			x.RevokedAt, x.Problem = at, ""
			return nil
		},
	})
	switch {
	case errors.Is(err, keydesk.ErrConflict):
		v.done(OutcomeConflict, note+", but the record changed meanwhile: "+err.Error())
	case err != nil:
		v.done(OutcomeError, fmt.Sprintf("%s, but the record was not updated (%v): the next sweep finishes it", note, err))
	default:
		v.done(OutcomeRevoked, note)
	}
}

func reasonOr(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// maxKeyID bounds the key ID a revoke request may name: the API's IDs
// are short (key-001).
const maxKeyID = 128

// maxMakerTries bounds the compare-and-set retries on the request that
// made a revoked key.
const maxMakerTries = 4

// revokeMaker records the key ref revoked on the request that made it
// (an issue or rotate request, found by its key, or by the inventory's
// request ID): delivered or delivery_failed → revoked, with RevokedAt.
// On a rotation's revoke request, the rotation records when its old key
// went. It returns the maker, or nil when no request made the key.
func (r *Runner) revokeMaker(ctx context.Context, ref keydesk.KeyRef, at time.Time, by *keydesk.Request) *keydesk.Request {
	if by.RevokeOf != "" {
		r.markRotation(ctx, by.RevokeOf, ref, at)
	}
	reqs, err := r.q.List(ctx, queue.Filter{Partner: ref.Partner, Environment: ref.Environment})
	if err != nil {
		r.log.Warn("the request that made a revoked key not looked up", "key", ref.String(), "err", err)
		return nil
	}
	var maker *keydesk.Request
	for _, q := range reqs {
		if q.KindOf() != keydesk.KindRevoke && q.KeyRef() == ref {
			maker = q
		}
	}
	if maker == nil {
		if inv, err := r.inventoryOf(ctx, ref.Partner, ref.Environment); err == nil {
			if ik := inv.Key(ref.ID); ik != nil && ik.RequestID != "" {
				if q, err := r.q.Get(ctx, ik.RequestID); err == nil && q.KindOf() != keydesk.KindRevoke && q.KeyRef() == ref {
					maker = q
				}
			}
		}
	}
	if maker == nil {
		return nil
	}
	for range maxMakerTries {
		if maker.State != keydesk.StateDelivered && maker.State != keydesk.StateDeliveryFailed {
			if maker.State != keydesk.StateRevoked {
				r.log.Warn("a revoked key's request left as it is", "key", ref.String(), "request", maker.ID, "state", maker.State)
			}
			return maker
		}
		_, err := r.q.Apply(ctx, maker.ID, queue.Change{
			Actor: actor, Action: "revoke", From: maker.State, To: keydesk.StateRevoked, Revision: maker.Revision,
			Note: fmt.Sprintf("%s revoked, as %s asked", ref, by.ID),
			Mutate: func(x *keydesk.Request) error {
				x.RevokedAt = at
				return nil
			},
		})
		if err == nil || !errors.Is(err, keydesk.ErrConflict) {
			if err != nil {
				r.log.Warn("a revoked key's request not updated", "key", ref.String(), "request", maker.ID, "err", err)
			}
			return maker
		}
		next, gerr := r.q.Get(ctx, maker.ID)
		if gerr != nil {
			return maker
		}
		maker = next
	}
	return maker
}

// markRotation records on the rotate request id that its old key ref
// was revoked at at. The request's state is the rotation's own business.
func (r *Runner) markRotation(ctx context.Context, id string, ref keydesk.KeyRef, at time.Time) {
	for range maxMakerTries {
		rot, err := r.q.Get(ctx, id)
		if err != nil || rot.Rotation == nil || !rot.Rotation.OldRevokedAt.IsZero() {
			return
		}
		_, err = r.q.Apply(ctx, id, queue.Change{
			Actor: actor, Action: "rotation-old-revoked", Revision: rot.Revision, Note: fmt.Sprintf("old key %s revoked", ref),
			Mutate: func(x *keydesk.Request) error {
				if x.Rotation != nil {
					x.Rotation.OldRevokedAt = at
				}
				return nil
			},
		})
		if !errors.Is(err, keydesk.ErrConflict) {
			if err != nil {
				r.log.Warn("rotation not updated", "request", id, "err", err)
			}
			return
		}
	}
}

// notifyKeyRevoked queues one email to the revoke request's requester and
// the partner's technical contact. Its ID is stable per request, so a
// revocation finished again after a crash sends it once.
func (r *Runner) notifyKeyRevoked(ctx context.Context, req *keydesk.Request, p *keydesk.Partner, d templates.KeyRevoked) error {
	var to []string
	for _, a := range []string{req.Requester, p.TechnicalContact.Email} {
		a = strings.TrimSpace(a)
		if !strings.Contains(a, "@") {
			continue // a staff name, or none
		}
		dup := false
		for _, b := range to {
			dup = dup || strings.EqualFold(a, b)
		}
		if !dup {
			to = append(to, a)
		}
	}
	if len(to) == 0 {
		return nil
	}
	m, err := r.o.Templates.RenderPartnerMail("key-revoked", d)
	if err != nil {
		return err
	}
	return r.q.Enqueue(ctx, &keydesk.Outgoing{
		ID: req.ID + ".key-revoked", Kind: keydesk.KindKeyRevoked, RequestID: req.ID, Partner: req.Partner,
		To: to, Subject: m.Subject, Text: m.Body, InReplyTo: req.SourceMessageID,
	})
}

// closeStale closes the records of runs of trigger left running by an
// instance that died: the caller holds that kind's lease, so no other
// such run is going on.
func (r *Runner) closeStale(ctx context.Context, st *run, trigger string) {
	batches, err := r.q.ListBatches(ctx)
	if err != nil {
		r.log.Warn("stale run records not looked at", "err", err)
		return
	}
	for _, b := range batches {
		if b.State != keydesk.BatchRunning || b.ID == st.b.ID || b.Trigger != trigger {
			continue
		}
		b.State, b.Ended = keydesk.BatchFailed, r.clock.Now().UTC()
		b.Error = "interrupted: the instance running it stopped; " + st.b.ID + " took over its work"
		if err := r.q.PutBatch(ctx, b); err != nil && !errors.Is(err, keydesk.ErrConflict) {
			r.log.Warn("stale run record not closed", "batch", b.ID, "err", err)
			continue
		}
		_ = r.audit(ctx, b.ID, "batch-failed", b.Error)
	}
}

// inventoryRun is an inventory run under the inventory lease.
func (r *Runner) inventoryRun(ctx context.Context, st *run) error {
	r.closeStale(ctx, st, keydesk.TriggerInventory)
	return r.refreshInventories(ctx, st)
}
