package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// reconciled is what reconcileOne did.
type reconciled struct {
	note string
	// next is the record back in approved; nil if it changed meanwhile,
	// or if it was blocked.
	next *keydesk.Request
	// blocked: several keys could be the attempt's; none was revoked and
	// the request waits for a person.
	blocked bool
}

// sameScopes reports whether a and b hold the same scopes, in any order.
func sameScopes(a, b []keydesk.Scope) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// orphans lists the keys of keys that may be the orphan of req's
// interrupted attempt, which started at start: of req's partner account
// and environment (the list is of that account), with its label and its
// scopes, created in the attempt's window (since start less the clock
// skew; a key without a creation time cannot be placed and counts, since
// two live keys are worse than one lost), held by no request, not revoked
// by this run, and not known to the inventory before start — a key known
// before the attempt began is someone else's, the partner's own above all.
func (r *Runner) orphans(st *run, req *keydesk.Request, keys []keydesk.Key, inv *keydesk.Inventory, start time.Time) []keydesk.Key {
	since := start.Add(-r.o.ClockSkew)
	var out []keydesk.Key
	for _, k := range keys {
		ref := keydesk.KeyRef{Partner: req.Partner, Environment: req.Environment, ID: k.ID}
		if st.known(ref) || strings.TrimSpace(k.Label) != strings.TrimSpace(req.Label) || !sameScopes(k.Scopes, req.Scopes) {
			continue
		}
		if !k.CreatedAt.IsZero() && k.CreatedAt.Before(since) {
			continue
		}
		if ik := inv.Key(k.ID); ik != nil && (!ik.Live() || (!ik.FirstSeen.IsZero() && ik.FirstSeen.Before(start))) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// reconcileOne finishes an interrupted attempt of req (generating): it
// lists the partner's keys and looks for the attempt's orphan (orphans).
// One: it is revoked, since its secret is lost, and the request goes back
// to approved with no attempt. None: back to approved. Several: keydesk
// cannot tell which is the attempt's, so it revokes none, blocks the
// request with the candidates named and alerts support. Requests sharing
// partner, environment and label are never in flight together, and keys
// of earlier attempts were revoked when those attempts were reconciled.
func (r *Runner) reconcileOne(ctx context.Context, st *run, api API, req *keydesk.Request) (reconciled, error) {
	keys, err := api.ListKeys(ctx)
	if err != nil {
		return reconciled{}, fmt.Errorf("list keys: %w", err)
	}
	inv, err := r.inventoryOf(ctx, req.Partner, req.Environment)
	if err != nil {
		return reconciled{}, fmt.Errorf("read the key inventory: %w", err)
	}
	start := req.UpdatedAt // an attempt is always written with the state; without one, the last change
	if req.Attempt != nil {
		start = req.Attempt.StartedAt
	}
	cands := r.orphans(st, req, keys, inv, start)
	if len(cands) > 1 {
		return r.ambiguous(ctx, st, req, cands)
	}
	var revoked []string
	for _, k := range cands {
		ref := keydesk.KeyRef{Partner: req.Partner, Environment: req.Environment, ID: k.ID}
		if err := r.revokeKey(ctx, api, k.ID); err != nil {
			return reconciled{}, fmt.Errorf("revoke orphan %s: %w", ref, err)
		}
		st.revoke(ref)
		r.recordRevoked(ctx, ref, r.clock.Now().UTC(), keydesk.InventoryKey{Label: k.Label, Scopes: k.Scopes, APIKey: k.APIKey,
			CreatedAt: k.CreatedAt, RequestID: req.ID, MadeBy: keydesk.MadeByKeydesk})
		revoked = append(revoked, k.ID)
	}
	note := "reconciled: no key had been created"
	if len(revoked) > 0 {
		note = "reconciled: orphan " + strings.Join(revoked, ", ") + " revoked"
	}
	next, err := r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "reconcile", From: keydesk.StateGenerating, To: keydesk.StateApproved, Revision: req.Revision, Note: note,
		Mutate: func(x *keydesk.Request) error {
			x.Attempt = nil
			x.Problem = ""
			return nil
		},
	})
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			return reconciled{note: note}, nil
		}
		return reconciled{}, err
	}
	r.log.Info("attempt reconciled", "batch", st.b.ID, "request", req.ID, "revoked", strings.Join(revoked, ","))
	return reconciled{note: note, next: next}, nil
}

// ambiguous blocks req (generating) when several keys could be its
// attempt's orphan: revoking the wrong one would cut off a working
// integration, so a person decides. Support is alerted.
func (r *Runner) ambiguous(ctx context.Context, st *run, req *keydesk.Request, cands []keydesk.Key) (reconciled, error) {
	var ids []string
	for _, k := range cands {
		ids = append(ids, k.ID)
	}
	list := strings.Join(ids, ", ")
	problem := fmt.Sprintf("interrupted attempt: %d keys of %s %s could be its orphan (%s: label %q, same scopes, made since the attempt began); none was revoked. Revoke the one that is not in use (a revoke request), then retry this request",
		len(ids), req.Partner, req.Environment, list, req.Label)
	_, err := r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "reconcile", From: keydesk.StateGenerating, To: keydesk.StateBlocked, Revision: req.Revision, Note: problem,
		Mutate: func(x *keydesk.Request) error {
			x.Attempt = nil
			x.Problem = problem
			return nil
		},
	})
	if err != nil {
		if errors.Is(err, keydesk.ErrConflict) {
			return reconciled{note: "the record changed during reconciliation"}, nil
		}
		return reconciled{}, err
	}
	r.log.Warn("interrupted attempt ambiguous: request blocked", "batch", st.b.ID, "request", req.ID, "candidates", list)
	if r.o.SupportAddress != "" {
		attempt := "none"
		if req.Attempt != nil {
			attempt = req.Attempt.ID
		}
		out, err := r.o.Templates.AlertMail(req.ID+".alert.ambiguous."+attempt, r.o.SupportAddress, templates.Alert{
			Title: fmt.Sprintf("Request %s blocked: which key is its orphan?", req.ID),
			Text: fmt.Sprintf("An attempt to create the key of request %s (%s, %s, label %q) was interrupted. Several keys of that account match it: %s. keydesk revoked none of them, since one may be the partner's own.",
				req.ID, req.Partner, req.Environment, req.Label, list),
			Action: "find out from the partner which of these keys they use, revoke the other (a revoke request for that key), then retry the request.",
		})
		if err == nil {
			out.Partner, out.RequestID = req.Partner, req.ID
			err = r.q.Enqueue(ctx, out)
		}
		if err != nil {
			r.log.Error("alert not queued", "request", req.ID, "err", err)
		}
	}
	return reconciled{note: problem, blocked: true}, nil
}

// reconcileAll reconciles every request left generating by a crash (no
// other batch can be in flight: the lease is held), and marks batch
// records left running by a stopped instance as failed.
func (r *Runner) reconcileAll(ctx context.Context, st *run) error {
	reqs, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StateGenerating}})
	if err != nil {
		return err
	}
	for _, req := range reqs {
		if ctx.Err() != nil {
			return nil
		}
		out := keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner, Outcome: OutcomeReconciled}
		p, ok := r.o.Partners().Partner(req.Partner)
		if !ok {
			out.Outcome, out.Detail = OutcomeError, fmt.Sprintf("interrupted attempt, but partner %q is not in partners.yaml: check its keys by hand", req.Partner)
			st.add(out)
			continue
		}
		api, err := st.account(p, req.Environment)
		if err == nil {
			var rec reconciled
			rec, err = r.reconcileOne(ctx, st, api, req)
			out.Detail = rec.note
			if rec.blocked {
				out.Outcome = OutcomeBlocked
			}
		}
		if err != nil {
			out.Outcome, out.Detail = OutcomeError, fmt.Sprintf("interrupted attempt not reconciled: %v; the next batch tries again", err)
		}
		st.add(out)
	}
	batches, err := r.q.ListBatches(ctx)
	if err != nil {
		return err
	}
	for _, b := range batches {
		// A revocation or inventory run holds its own lease: it may run
		// now, beside this batch. Those left by a dead instance are
		// closed by the next run of their kind (closeStale).
		if b.State != keydesk.BatchRunning || b.ID == st.b.ID || lifeTrigger(b.Trigger) {
			continue
		}
		b.State = keydesk.BatchFailed
		b.Ended = r.clock.Now().UTC()
		b.Error = "interrupted: the instance running it stopped; batch " + st.b.ID + " reconciled its requests"
		if err := r.q.PutBatch(ctx, b); err != nil && !errors.Is(err, keydesk.ErrConflict) {
			return err
		}
		_ = r.audit(ctx, b.ID, "batch-failed", b.Error)
	}
	return nil
}

// Reconcile cleans up after a crash without generating: interrupted
// attempts are reconciled and stale batch records closed. The batch role
// runs it when it starts; it does nothing while another instance holds
// the batch lease (that one reconciles in its batch).
func (r *Runner) Reconcile(ctx context.Context) error {
	st := newRun(r, &keydesk.Batch{ID: "startup-" + r.o.Holder})
	err := r.q.RunExclusive(ctx, LeaseName, r.o.Holder, r.o.LeaseTTL, func(ctx context.Context) error {
		if err := r.loadRecorded(ctx, st); err != nil {
			return err
		}
		return r.reconcileAll(ctx, st)
	})
	if errors.Is(err, queue.ErrLeaseHeld) {
		r.log.Info("startup reconciliation skipped: a batch is running elsewhere", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if n := len(st.outcomes); n > 0 {
		var parts []string
		for _, o := range st.outcomes {
			parts = append(parts, o.RequestID+": "+o.Detail)
		}
		_ = r.audit(ctx, "startup", "reconcile", strings.Join(parts, "; "))
	}
	return nil
}

// revokeUndelivered revokes keys whose delivery failed, and those of
// generated requests not delivered within RevokeUndeliveredAfter, and
// tells each requester.
func (r *Runner) revokeUndelivered(ctx context.Context, st *run) error {
	failed, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StateDeliveryFailed}})
	if err != nil {
		return err
	}
	if r.o.RevokeUndeliveredAfter > 0 {
		gen, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StateGenerated}})
		if err != nil {
			return err
		}
		now := r.clock.Now()
		for _, req := range gen {
			since := req.UpdatedAt
			if req.Attempt != nil {
				since = req.Attempt.StartedAt
			}
			if now.Sub(since) < r.o.RevokeUndeliveredAfter {
				continue
			}
			problem := fmt.Sprintf("not delivered within %s", r.o.RevokeUndeliveredAfter)
			next, err := r.q.Apply(ctx, req.ID, queue.Change{
				Actor: actor, Action: "undelivered", From: keydesk.StateGenerated, To: keydesk.StateDeliveryFailed, Revision: req.Revision, Note: problem,
				Mutate: func(x *keydesk.Request) error { x.Problem = problem; return nil },
			})
			if err != nil {
				if !errors.Is(err, keydesk.ErrConflict) {
					st.add(keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner, Outcome: OutcomeError, Detail: err.Error()})
				}
				continue // delivered meanwhile, most likely
			}
			failed = append(failed, next)
		}
	}
	for _, req := range failed {
		if ctx.Err() != nil {
			return nil
		}
		r.revokeFailed(ctx, st, req)
	}
	return nil
}

// revokeFailed revokes the key of req (delivery_failed), queues the notice
// to the requester, then records the request revoked. A crash in between
// repeats harmlessly: revoking twice is a no-op and the notice's outbox ID
// is stable.
func (r *Runner) revokeFailed(ctx context.Context, st *run, req *keydesk.Request) {
	out := keydesk.BatchOutcome{RequestID: req.ID, Partner: req.Partner, Outcome: OutcomeRevoked, KeyID: req.KeyID}
	revokedAt := r.clock.Now().UTC()
	fail := func(detail string) {
		out.Outcome, out.Detail = OutcomeError, detail
		st.add(out)
	}
	p, ok := r.o.Partners().Partner(req.Partner)
	if req.KeyID != "" {
		if !ok {
			fail(fmt.Sprintf("delivery failed, but partner %q is not in partners.yaml: revoke %s by hand", req.Partner, req.KeyID))
			return
		}
		if why, skip := st.skipped(p.ID, req.Environment); skip {
			fail(fmt.Sprintf("%s not revoked yet: %s", req.KeyID, why))
			return
		}
		api, err := st.account(p, req.Environment)
		if err == nil {
			err = r.revokeKey(ctx, api, req.KeyID)
		}
		if err != nil {
			if kind, _ := r.o.Classify(err); kind == Refused {
				r.refused(ctx, st, p, req.Environment, fmt.Sprintf("revoking %s: %v", req.KeyID, err))
			}
			fail(fmt.Sprintf("revoking %s failed: %v; the next batch tries again", req.KeyID, err))
			return
		}
		r.recordRevoked(ctx, req.KeyRef(), revokedAt, keydesk.InventoryKey{Label: req.Label, Scopes: req.Scopes, APIKey: req.APIKey,
			RequestID: req.ID, MadeBy: keydesk.MadeByKeydesk})
	}
	reason := req.Problem
	if reason == "" {
		reason = "the encrypted email could not be delivered"
	}
	if err := r.notifyRevoked(ctx, req, p, reason); err != nil {
		r.log.Error("revocation notice not queued", "request", req.ID, "err", err)
	}
	note := "key revoked: " + reason
	if req.KeyID != "" {
		note = req.KeyID + " revoked: " + reason
	}
	_, err := r.q.Apply(ctx, req.ID, queue.Change{Actor: actor, Action: "revoke", From: keydesk.StateDeliveryFailed, To: keydesk.StateRevoked, Revision: req.Revision, Note: note,
		Mutate: func(x *keydesk.Request) error { x.RevokedAt = revokedAt; return nil }})
	if err != nil && !errors.Is(err, keydesk.ErrConflict) {
		fail(fmt.Sprintf("%s revoked, but the record was not updated (%v): the next batch finishes it", req.KeyID, err))
		return
	}
	out.Detail = note
	st.add(out)
}

// notifyRevoked tells the requester that the key was revoked and why.
func (r *Runner) notifyRevoked(ctx context.Context, req *keydesk.Request, p *keydesk.Partner, reason string) error {
	if req.Requester == "" {
		return nil
	}
	partnerName := req.Partner
	contact := ""
	if p != nil {
		partnerName = p.Name
		// The requester is told which contact, masked as the delivery
		// notice names it; the SMTP reply in the reason often quotes
		// the address too.
		if email := p.TechnicalContact.Email; email != "" {
			contact = keydesk.MaskAddress(email)
			reason = regexp.MustCompile(`(?i)`+regexp.QuoteMeta(email)).ReplaceAllLiteralString(reason, contact)
		}
	}
	m, err := r.o.Templates.RenderPartnerMail("revocation-notice", map[string]any{
		"RequestID": req.ID, "Partner": partnerName, "Environment": string(req.Environment), "Label": req.Label,
		"KeyID": req.KeyID, "APIKey": req.APIKey, "Reason": reason, "Contact": contact,
	})
	if err != nil {
		return err
	}
	return r.q.Enqueue(ctx, &keydesk.Outgoing{
		ID: req.ID + ".revocation." + cmp.Or(req.KeyID, "none"), Kind: keydesk.KindRevocationNotice, RequestID: req.ID, Partner: req.Partner,
		To: []string{req.Requester}, Subject: m.Subject, Text: m.Body, InReplyTo: req.SourceMessageID,
	})
}
