package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// Rotation. A rotate request is generated and delivered as an issue is;
// its record then carries Rotation until its old key (ReplacesKeyID) is
// revoked. The sweep here moves each one on:
//
//   - Rotation.Due, when the old key is revoked at the latest, is fixed
//     when the new key is made (now + rotation.grace, to the minute), so
//     that the encrypted email, the notice and the record say the same.
//   - A day before Due, one reminder goes to the requester and the
//     technical contact (Rotation.RemindedAt, claimed by compare-and-set
//     before the email is queued under an ID of its own).
//   - Once the contact (or staff) confirms, or at Due, a revoke request
//     of the old key is made, approved by the rotation, with an ID derived
//     from the rotation's, so that two instances or a restart make one;
//     a revoke batch is asked for at once.
//   - When that request is revoked, Rotation.OldRevokedAt closes the
//     rotation. A revocation that fails or is cancelled leaves two live
//     keys beyond the grace: support is alerted.
//
// The rotation policy (rotation.max_age) reminds the requester of each
// key older than max_age − remind_before once (InventoryKey.
// RotationRemindedAt, claimed by compare-and-set on the inventory), with
// the line to reply with to ask for its rotation.
//
// Every step is a compare-and-set or idempotent, so the sweep needs no
// lease: instances may sweep at once, and a sweep killed at any point is
// finished by the next.

const (
	// DefaultRotationGrace is rotation.grace's default.
	DefaultRotationGrace = 7 * 24 * time.Hour
	// DefaultRotationRemindBefore is rotation.remind_before's default.
	DefaultRotationRemindBefore = 30 * 24 * time.Hour
	// RotationReminderLead is how long before Due the reminder goes.
	RotationReminderLead = 24 * time.Hour
	// SweepInterval is how often the role sweeps rotations, besides at
	// start and after each batch.
	SweepInterval = time.Minute
	// PolicyInterval is how often the rotation policy's pass over the
	// inventories runs at most.
	PolicyInterval = time.Hour
	// maxPolicyReminders bounds the policy reminders of one pass: turning
	// the policy on over years of keys spreads them over a few hours
	// rather than one flood.
	maxPolicyReminders = 200
	// repairWindow is how far back the first sweep after a start looks
	// for reminders claimed but perhaps not queued (the process died in
	// between): within it the outbox deduplicates the same ID, so queuing
	// it again cannot send it twice.
	repairWindow = time.Hour
)

// sweepState is what sweeps of one Runner share.
type sweepState struct {
	running  sync.Mutex // held by the sweep in progress; another one skips
	mu       sync.Mutex
	policyAt time.Time // the last policy pass
	repaired bool      // the first sweep's repair of reminders is done
	alerted  map[string]bool
}

const day = 24 * time.Hour

// validateRotation checks the rotation settings.
func (o *Options) validateRotation() []error {
	var errs []error
	if o.RotationGrace != 0 && (o.RotationGrace < time.Hour || o.RotationGrace > 365*day) {
		errs = append(errs, fmt.Errorf("rotation.grace: %s is out of range 1h..365d", days(o.RotationGrace)))
	}
	if o.RotationMaxAge < 0 || (o.RotationMaxAge != 0 && (o.RotationMaxAge < day || o.RotationMaxAge > 3650*day)) {
		errs = append(errs, fmt.Errorf("rotation.max_age: %s is out of range 1d..3650d (or unset: no policy)", days(o.RotationMaxAge)))
	}
	if o.RotationRemindBefore < 0 {
		errs = append(errs, fmt.Errorf("rotation.remind_before: %s is negative", days(o.RotationRemindBefore)))
	} else if rb := cmp.Or(o.RotationRemindBefore, DefaultRotationRemindBefore); o.RotationMaxAge > 0 && rb >= o.RotationMaxAge {
		errs = append(errs, fmt.Errorf("rotation.remind_before: %s is not shorter than rotation.max_age (%s)", days(rb), days(o.RotationMaxAge)))
	}
	if g := cmp.Or(o.RotationGrace, DefaultRotationGrace); o.RevokeUndeliveredAfter > 0 && g <= o.RevokeUndeliveredAfter {
		errs = append(errs, fmt.Errorf("rotation.grace: %s is not longer than delivery.revoke_undelivered_after (%s): the new key must be delivered, or revoked, before the old one stops working",
			days(g), days(o.RevokeUndeliveredAfter)))
	}
	return errs
}

// days writes a duration as keydesk.yaml does: whole days as "7d".
func days(d time.Duration) string {
	if d != 0 && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// rotationDue is when the old key of a rotation whose new key is made at
// now stops working: the grace later, rounded up to the minute, which is
// what the emails show.
func (r *Runner) rotationDue(now time.Time) time.Time {
	t := now.UTC().Add(r.o.RotationGrace)
	if c := t.Truncate(time.Minute); !c.Equal(t) {
		return c.Add(time.Minute)
	}
	return t
}

// rotationOf is x's Rotation, made if it has none.
func rotationOf(x *keydesk.Request) *keydesk.Rotation {
	if x.Rotation == nil {
		x.Rotation = &keydesk.Rotation{}
	}
	return x.Rotation
}

// errAlready aborts a claim that another sweep made first.
var errAlready = errors.New("batch: already done")

// settled reports whether err only says that the record moved on
// (another instance, a person): the next sweep decides again.
func settled(err error) bool {
	return errors.Is(err, keydesk.ErrConflict) || errors.Is(err, errAlready) || errors.Is(err, keydesk.ErrInvalidTransition)
}

// SweepRotations moves every delivered rotation on (Due, the reminder,
// the old key's revocation, its outcome) and, at most once per
// PolicyInterval, sends the rotation policy's reminders. The batch role
// runs it at start, every SweepInterval and after each batch. A sweep
// asked for while one runs in this instance is skipped.
func (r *Runner) SweepRotations(ctx context.Context) error {
	s := r.sweep
	if !s.running.TryLock() {
		return nil
	}
	defer s.running.Unlock()
	now := r.clock.Now().UTC()
	s.mu.Lock()
	repair := !s.repaired
	policy := r.o.RotationMaxAge > 0 && (s.policyAt.IsZero() || now.Sub(s.policyAt) >= PolicyInterval)
	s.mu.Unlock()

	var errs []error
	reqs, err := r.q.List(ctx, queue.Filter{States: []keydesk.State{keydesk.StateDelivered}})
	if err != nil {
		return fmt.Errorf("batch: rotation sweep: %w", err)
	}
	for _, req := range reqs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if req.KindOf() != keydesk.KindRotate || req.ReplacesKeyID == "" || (req.Rotation != nil && !req.Rotation.OldRevokedAt.IsZero()) {
			continue
		}
		if err := r.followRotation(ctx, req, now, repair); err != nil && !settled(err) {
			errs = append(errs, fmt.Errorf("rotation %s: %w", req.ID, err))
		}
	}
	if policy {
		err := r.remindDueKeys(ctx, now, repair)
		if err != nil {
			errs = append(errs, fmt.Errorf("rotation policy: %w", err))
		}
		s.mu.Lock()
		if err == nil {
			s.policyAt = now
		}
		s.mu.Unlock()
	}
	err = errors.Join(errs...)
	if err == nil {
		s.mu.Lock()
		s.repaired = true
		s.mu.Unlock()
	}
	return err
}

// sweepLogged is SweepRotations for the loop: troubles are logged, and
// the next sweep tries again.
func (r *Runner) sweepLogged(ctx context.Context) {
	if err := r.SweepRotations(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("rotation sweep: the next one tries again", "err", err)
	}
}

// followRotation takes one delivered rotation as far as it goes now.
// repair: this is the first sweep since the start, which queues again a
// reminder claimed just before (the process may have died in between).
func (r *Runner) followRotation(ctx context.Context, req *keydesk.Request, now time.Time, repair bool) error {
	log := r.log.With("request", req.ID, "partner", req.Partner, "environment", string(req.Environment), "old_key", req.ReplacesKeyID, "new_key", req.KeyID)
	if req.Rotation == nil || req.Rotation.Due.IsZero() {
		// Made before Due was fixed at generation: the grace runs from the
		// delivery (the record's last change, at most a sweep before now).
		due := r.rotationDue(req.UpdatedAt)
		next, err := r.q.Apply(ctx, req.ID, queue.Change{
			Actor: actor, Action: "rotation-due", From: keydesk.StateDelivered, Revision: req.Revision,
			Note: fmt.Sprintf("old key %s is revoked on %s at the latest", req.ReplacesKeyID, due.Format(time.RFC3339)),
			Mutate: func(x *keydesk.Request) error {
				if !rotationOf(x).Due.IsZero() {
					return errAlready
				}
				x.Rotation.Due = due
				return nil
			},
		})
		if err != nil {
			return err
		}
		req = next
	}
	rot := *req.Rotation
	if rot.RevokeRequest != "" {
		return r.followRevocation(ctx, req, log)
	}
	if at, gone := r.oldKeyGone(ctx, req); gone {
		// Revoked by other means (the partner, staff by hand): nothing
		// left to revoke.
		_, err := r.q.Apply(ctx, req.ID, queue.Change{
			Actor: actor, Action: "rotation-done", From: keydesk.StateDelivered, Revision: req.Revision,
			Note:   fmt.Sprintf("old key %s was revoked outside the rotation", req.ReplacesKeyID),
			Mutate: func(x *keydesk.Request) error { rotationOf(x).OldRevokedAt = at; return nil },
		})
		if err == nil {
			log.Info("rotation done: the old key was revoked outside it")
		}
		return err
	}
	switch {
	case !rot.ConfirmedAt.IsZero() || !now.Before(rot.Due):
		return r.revokeOld(ctx, req, now, log)
	case rot.RemindedAt.IsZero() && !now.Before(rot.Due.Add(-RotationReminderLead)):
		return r.remindRotation(ctx, req, now, log)
	case repair && !rot.RemindedAt.IsZero() && now.Sub(rot.RemindedAt) < repairWindow:
		return r.sendRotationReminder(ctx, req)
	}
	return nil
}

// oldKeyGone reports whether the inventory shows the rotation's old key
// revoked, and since when.
func (r *Runner) oldKeyGone(ctx context.Context, req *keydesk.Request) (time.Time, bool) {
	inv, err := r.q.Inventory(ctx, req.Partner, req.Environment)
	if err != nil {
		return time.Time{}, false // none yet, or unreadable: the revocation decides
	}
	k := inv.Key(req.ReplacesKeyID)
	if k == nil || k.Live() {
		return time.Time{}, false
	}
	return k.RevokedAt, true
}

// RevokeSourceKey is the source key of the revoke request a rotation
// makes for its old key: the rotation's ID, so that it is made once.
func RevokeSourceKey(rotationID string) string { return "rotate-revoke:" + rotationID }

// revokeOld makes the revoke request of the rotation's old key (once:
// its ID derives from the rotation's), records it on the rotation and
// asks for a revoke batch.
func (r *Runner) revokeOld(ctx context.Context, req *keydesk.Request, now time.Time, log *slog.Logger) error {
	rot := req.Rotation
	why := fmt.Sprintf("the grace ended on %s", rot.Due.UTC().Format(time.RFC3339))
	if !rot.ConfirmedAt.IsZero() {
		why = fmt.Sprintf("%s confirmed the new key on %s", cmp.Or(rot.ConfirmedBy, "the technical contact"), rot.ConfirmedAt.UTC().Format(time.RFC3339))
	}
	date := req.SourceDate
	if date.IsZero() {
		date = req.CreatedAt
	}
	child, created, err := r.q.Create(ctx, &keydesk.Request{
		Kind: keydesk.KindRevoke, State: keydesk.StateApproved,
		Partner: req.Partner, Environment: req.Environment, KeyID: req.ReplacesKeyID, Label: req.Label,
		RevokeOf: req.ID, Reason: "rotated: replaced by " + req.KeyID,
		Requester: req.Requester, SourceMessageID: req.SourceMessageID, Subject: req.Subject, MailRef: req.MailRef,
		SourceKey: RevokeSourceKey(req.ID), SourceDate: date,
	}, actor)
	if err != nil {
		return fmt.Errorf("revoke request of %s: %w", req.ReplacesKeyID, err)
	}
	if created {
		_ = r.audit(ctx, child.ID, "rotation-revoke", fmt.Sprintf("approved by rotation %s: %s; revoke %s, replaced by %s", req.ID, why, req.ReplacesKeyID, req.KeyID))
	}
	_, err = r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "rotation-revoke", From: keydesk.StateDelivered, Revision: req.Revision,
		Note: fmt.Sprintf("old key %s to be revoked by %s: %s", req.ReplacesKeyID, child.ID, why),
		Mutate: func(x *keydesk.Request) error {
			if rotationOf(x).RevokeRequest != "" {
				return errAlready
			}
			x.Rotation.RevokeRequest = child.ID
			return nil
		},
	})
	if err != nil {
		return err
	}
	log.Info("rotation: the old key is to be revoked", "revoke_request", child.ID, "why", why)
	// A lost batch request only delays the revocation to the revocation
	// runner's next sweep.
	b := &keydesk.Batch{ID: r.q.NewBatchID(), Trigger: keydesk.TriggerRevoke, By: "rotation", State: keydesk.BatchRequested, Requested: now}
	if err := r.q.PutBatch(ctx, b); err != nil {
		log.Warn("revoke batch not asked for: the revocation runner's sweep takes the request", "err", err)
	}
	return nil
}

// followRevocation closes the rotation once its revoke request is
// revoked, and alerts support when it failed or was stopped.
func (r *Runner) followRevocation(ctx context.Context, req *keydesk.Request, log *slog.Logger) error {
	id := req.Rotation.RevokeRequest
	child, err := r.q.Get(ctx, id)
	if err != nil {
		if errors.Is(err, keydesk.ErrNotFound) {
			r.alertRotation(ctx, req, nil, "missing")
		}
		return err
	}
	switch child.State {
	case keydesk.StateRevoked:
		at := child.RevokedAt
		if at.IsZero() {
			at = child.UpdatedAt
		}
		_, err := r.q.Apply(ctx, req.ID, queue.Change{
			Actor: actor, Action: "rotation-done", From: keydesk.StateDelivered, Revision: req.Revision,
			Note: fmt.Sprintf("old key %s revoked by %s", req.ReplacesKeyID, id),
			Mutate: func(x *keydesk.Request) error {
				if !rotationOf(x).OldRevokedAt.IsZero() {
					return errAlready
				}
				x.Rotation.OldRevokedAt = at
				return nil
			},
		})
		if err == nil {
			log.Info("rotation done: the old key is revoked", "revoke_request", id)
		}
		return err
	case keydesk.StateFailed, keydesk.StateCancelled, keydesk.StateRejected:
		r.alertRotation(ctx, req, child, string(child.State))
	}
	return nil
}

// alertRotation tells support that a rotation's old key is still live
// past its grace because its revocation is state (failed, cancelled, …).
// Once per process and state; the outbox and delivery keep it to one
// email across processes.
func (r *Runner) alertRotation(ctx context.Context, req *keydesk.Request, child *keydesk.Request, state string) {
	if r.o.SupportAddress == "" {
		r.log.Error("rotation: the old key stays live and smtp.support_address is not set", "request", req.ID, "old_key", req.ReplacesKeyID, "revocation", state)
		return
	}
	id := "rotation." + req.ID + ".revoke-" + state
	s := r.sweep
	s.mu.Lock()
	if s.alerted == nil {
		s.alerted = map[string]bool{}
	}
	seen := s.alerted[id]
	s.alerted[id] = true
	s.mu.Unlock()
	if seen {
		return
	}
	old := keydesk.KeyRef{Partner: req.Partner, Environment: req.Environment, ID: req.ReplacesKeyID}
	text := fmt.Sprintf("Rotation %s replaced %s with %s, but the revocation of the old key", req.ID, old, req.KeyID)
	action := fmt.Sprintf("fix the cause (often the partner's keys:manage credentials in partners.yaml), then retry %s from the review page; or revoke %s by hand and close the rotation.", req.Rotation.RevokeRequest, old)
	if child == nil {
		text += fmt.Sprintf(" (%s) is missing from the queue.", req.Rotation.RevokeRequest)
		action = fmt.Sprintf("revoke %s from the review page (keys) or by hand.", old)
	} else {
		text += fmt.Sprintf(" (%s) is %s", child.ID, child.State)
		if child.Problem != "" {
			text += ": " + child.Problem
		}
		text += "."
	}
	text += " Both keys work: the old one is live beyond its grace."
	out, err := r.o.Templates.AlertMail(id, r.o.SupportAddress, templates.Alert{
		Title: fmt.Sprintf("Old key %s of a rotation is still live", old), Text: text, Action: action,
	})
	if err == nil {
		out.RequestID, out.Partner = req.ID, req.Partner
		err = r.q.Enqueue(ctx, out)
	}
	if err != nil {
		s.mu.Lock()
		delete(s.alerted, id)
		s.mu.Unlock()
		r.log.Error("rotation alert not queued", "request", req.ID, "err", err)
	}
}

// remindRotation claims the rotation's one reminder on the record, then
// queues it; if it cannot be queued the claim is given back.
func (r *Runner) remindRotation(ctx context.Context, req *keydesk.Request, now time.Time, log *slog.Logger) error {
	next, err := r.q.Apply(ctx, req.ID, queue.Change{
		Actor: actor, Action: "rotation-reminder", From: keydesk.StateDelivered, Revision: req.Revision,
		Note: fmt.Sprintf("reminder: old key %s is revoked on %s", req.ReplacesKeyID, req.Rotation.Due.UTC().Format(time.RFC3339)),
		Mutate: func(x *keydesk.Request) error {
			if !rotationOf(x).RemindedAt.IsZero() {
				return errAlready
			}
			x.Rotation.RemindedAt = now
			return nil
		},
	})
	if err != nil {
		return err
	}
	if err := r.sendRotationReminder(ctx, next); err != nil {
		_, uerr := r.q.Apply(ctx, req.ID, queue.Change{
			Actor: actor, Action: "rotation-reminder", From: keydesk.StateDelivered, Revision: next.Revision,
			Note:   "reminder not queued: the next sweep tries again",
			Mutate: func(x *keydesk.Request) error { rotationOf(x).RemindedAt = time.Time{}; return nil },
		})
		return errors.Join(err, uerr)
	}
	log.Info("rotation reminder queued", "due", req.Rotation.Due)
	return nil
}

// RotationReminder is what the rotation-reminder template gets.
type RotationReminder struct {
	RequestID, PartnerName, Environment, Label string
	NewKeyID, OldKeyID                         string
	// Contact is the technical contact's address, masked.
	Contact string
	// Due is when the old key is revoked.
	Due time.Time
}

// rotationReminderID is the outbox ID of a rotation's reminder: one per
// rotation.
func rotationReminderID(requestID string) string { return requestID + ".rotation-reminder" }

// sendRotationReminder queues the reminder to the requester and the
// technical contact.
func (r *Runner) sendRotationReminder(ctx context.Context, req *keydesk.Request) error {
	p, _ := r.o.Partners().Partner(req.Partner)
	d := RotationReminder{RequestID: req.ID, PartnerName: req.Partner, Environment: string(req.Environment), Label: req.Label,
		NewKeyID: req.KeyID, OldKeyID: req.ReplacesKeyID, Due: req.Rotation.Due}
	var to []string
	if _, ok := keydesk.AddressKey(req.Requester); ok {
		to = append(to, req.Requester)
	}
	if p != nil {
		d.PartnerName = cmp.Or(p.Name, p.ID)
		if c := p.TechnicalContact.Email; c != "" {
			d.Contact = keydesk.MaskAddress(c)
			if !containsAddress(to, c) {
				to = append(to, c)
			}
		}
	}
	if len(to) == 0 {
		r.log.Warn("rotation reminder: nobody to send it to", "request", req.ID)
		return nil
	}
	m, err := r.o.Templates.RenderPartnerMail(string(keydesk.KindRotationReminder), d)
	if err != nil {
		return err
	}
	return r.q.Enqueue(ctx, &keydesk.Outgoing{
		ID: rotationReminderID(req.ID), Kind: keydesk.KindRotationReminder, RequestID: req.ID, Partner: req.Partner,
		To: to, Subject: m.Subject, Text: m.Body, InReplyTo: req.SourceMessageID,
	})
}

func containsAddress(list []string, addr string) bool {
	k, ok := keydesk.AddressKey(addr)
	for _, a := range list {
		if ak, aok := keydesk.AddressKey(a); aok && ok && ak == k {
			return true
		}
	}
	return false
}

// RotationDue is what the rotation-due template gets.
type RotationDue struct {
	PartnerName, Environment, Label, KeyID, APIKey string
	Created                                        time.Time
	AgeDays, MaxAgeDays                            int
	// DueAt is when the key reaches rotation.max_age.
	DueAt time.Time
	// ReplyLine is the line that, sent back, asks for the rotation.
	ReplyLine string
	// Contact is the technical contact's address, masked.
	Contact string
	// Grace is how long the old key keeps working once the new one is
	// made, in words ("7 days").
	Grace string
}

// RotationReplyLine is the line a partner sends to ask for the rotation
// of key id (labelled label) in env: what the policy's reminder quotes.
func RotationReplyLine(id, label string, env keydesk.Environment) string {
	if label == "" {
		return fmt.Sprintf("Please rotate %s in %s", id, env)
	}
	return fmt.Sprintf("Please rotate %s (label %s) in %s", id, label, env)
}

// rotationDueID is the outbox ID of the policy's reminder about one key.
func rotationDueID(k keydesk.KeyRef) string {
	return "rotation-due." + k.Partner + "." + string(k.Environment) + "." + k.ID
}

// remindDueKeys sends the rotation policy's reminder about each live key
// older than max_age − remind_before that has had none. A key a rotation
// is already replacing gets none.
func (r *Runner) remindDueKeys(ctx context.Context, now time.Time, repair bool) error {
	invs, ierr := r.q.Inventories(ctx)
	if len(invs) == 0 {
		return ierr
	}
	all, err := r.q.List(ctx, queue.Filter{})
	if err != nil {
		return err
	}
	byID := make(map[string]*keydesk.Request, len(all))
	rotating := map[keydesk.KeyRef]bool{}
	for _, q := range all {
		byID[q.ID] = q
		if q.KindOf() == keydesk.KindRotate && q.ReplacesKeyID != "" && !q.State.Terminal() {
			rotating[keydesk.KeyRef{Partner: q.Partner, Environment: q.Environment, ID: q.ReplacesKeyID}] = true
		}
	}
	reg := r.o.Partners()
	sent := 0
	var errs []error
	for _, inv := range invs {
		p, ok := reg.Partner(inv.Partner)
		if !ok {
			continue
		}
		for _, k := range inv.Keys {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ref := keydesk.KeyRef{Partner: inv.Partner, Environment: inv.Environment, ID: k.ID}
			if !k.RotationRemindedAt.IsZero() {
				if repair && now.Sub(k.RotationRemindedAt) < repairWindow && k.Live() {
					if err := r.sendRotationDue(ctx, p, ref, &k, byID[k.RequestID], now); err != nil {
						errs = append(errs, err)
					}
				}
				continue
			}
			if !k.RotationDue(now, r.o.RotationMaxAge, r.o.RotationRemindBefore) || rotating[ref] {
				continue
			}
			if sent >= maxPolicyReminders {
				r.log.Info("rotation policy: more keys due than one pass reminds; the rest go in the next", "max", maxPolicyReminders)
				return errors.Join(append(errs, ierr)...)
			}
			if err := r.remindDueKey(ctx, p, ref, byID[k.RequestID], now); err != nil {
				if !errors.Is(err, errAlready) {
					errs = append(errs, err)
				}
				continue
			}
			sent++
		}
	}
	return errors.Join(append(errs, ierr)...)
}

// remindDueKey claims the key's one reminder on its inventory, then
// queues it; if it cannot be queued the claim is given back.
func (r *Runner) remindDueKey(ctx context.Context, p *keydesk.Partner, ref keydesk.KeyRef, made *keydesk.Request, now time.Time) error {
	var claimed keydesk.InventoryKey
	_, err := r.q.UpdateInventory(ctx, ref.Partner, ref.Environment, func(inv *keydesk.Inventory) error {
		k := inv.Key(ref.ID)
		if k == nil || !k.RotationRemindedAt.IsZero() || !k.Live() {
			return errAlready
		}
		k.RotationRemindedAt = now
		claimed = *k
		return nil
	})
	if err != nil {
		return err
	}
	if err := r.sendRotationDue(ctx, p, ref, &claimed, made, now); err != nil {
		_, uerr := r.q.UpdateInventory(ctx, ref.Partner, ref.Environment, func(inv *keydesk.Inventory) error {
			if k := inv.Key(ref.ID); k != nil && k.RotationRemindedAt.Equal(now) {
				k.RotationRemindedAt = time.Time{}
			}
			return nil
		})
		return errors.Join(fmt.Errorf("%s: %w", ref, err), uerr)
	}
	r.log.Info("rotation policy: reminder queued", "key", ref.String(), "age_days", claimed.AgeDays(now))
	return nil
}

// policyRecipient is who the policy reminds of a key: the requester of
// the request that made it; for a key made outside keydesk (or whose
// request is gone), the partner's first requester listed by address in
// partners.yaml; without one, the technical contact. Each can answer with
// the reply line: the first two are requesters, and the contact knows who
// is.
func policyRecipient(p *keydesk.Partner, made *keydesk.Request) string {
	if made != nil {
		if _, ok := keydesk.AddressKey(made.Requester); ok {
			return made.Requester
		}
	}
	for _, pat := range p.Requesters {
		if strings.HasPrefix(strings.TrimSpace(pat), "*@") {
			continue
		}
		if _, ok := keydesk.AddressKey(pat); ok {
			return strings.TrimSpace(pat)
		}
	}
	return p.TechnicalContact.Email
}

// sendRotationDue queues the policy's reminder about key k. It is about
// a key, not a request: it names no request, so that a reply with the
// reply line reaches intake as a new request.
func (r *Runner) sendRotationDue(ctx context.Context, p *keydesk.Partner, ref keydesk.KeyRef, k *keydesk.InventoryKey, made *keydesk.Request, now time.Time) error {
	to := policyRecipient(p, made)
	if to == "" {
		return fmt.Errorf("%s: nobody to remind: the partner has no requester address and no technical contact", ref)
	}
	created := k.CreatedAt
	if created.IsZero() {
		created = k.FirstSeen
	}
	d := RotationDue{
		PartnerName: cmp.Or(p.Name, p.ID), Environment: string(ref.Environment), Label: k.Label, KeyID: k.ID, APIKey: k.APIKey,
		Created: created, AgeDays: k.AgeDays(now), MaxAgeDays: int(r.o.RotationMaxAge / day), DueAt: created.Add(r.o.RotationMaxAge),
		ReplyLine: RotationReplyLine(k.ID, k.Label, ref.Environment), Contact: keydesk.MaskAddress(p.TechnicalContact.Email),
		Grace: graceWords(r.o.RotationGrace),
	}
	m, err := r.o.Templates.RenderPartnerMail(string(keydesk.KindRotationDue), d)
	if err != nil {
		return err
	}
	return r.q.Enqueue(ctx, &keydesk.Outgoing{
		ID: rotationDueID(ref), Kind: keydesk.KindRotationDue, Partner: ref.Partner,
		To: []string{to}, Subject: m.Subject, Text: m.Body,
	})
}

// graceWords writes the grace as a partner reads it: "7 days", "36 hours".
func graceWords(d time.Duration) string {
	switch {
	case d == day:
		return "1 day"
	case d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}
