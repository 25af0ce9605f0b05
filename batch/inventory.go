package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

// maxInventoryKeys bounds the keys one inventory record holds (a KV value
// has a size limit): beyond it the revoked keys revoked longest ago go
// first. Live keys are never dropped.
const maxInventoryKeys = 2000

// maxProblem bounds the listing problem kept in an inventory record.
const maxProblem = 500

// hasCredentials reports whether partners.yaml gives the batch role p's
// manager key in env.
func hasCredentials(p *keydesk.Partner, env keydesk.Environment) bool {
	pe, ok := p.Environments[env]
	return ok && pe.APIKey != "" && !pe.APISecret.IsZero()
}

// madeBy maps every key a request made (issue and rotate requests with a
// key) to that request.
func madeBy(reqs []*keydesk.Request) map[keydesk.KeyRef]string {
	out := map[keydesk.KeyRef]string{}
	for _, req := range reqs {
		if req.KindOf() == keydesk.KindRevoke {
			continue // it names a key to revoke, it made none
		}
		if ref := req.KeyRef(); !ref.IsZero() {
			out[ref] = req.ID
		}
	}
	return out
}

// RefreshInventory lists the keys of every partner account the batch
// role has credentials for, in every environment, and writes each
// account's inventory. A listing that fails is recorded as the
// inventory's problem (its keys stay as they were) and returned, joined.
func (r *Runner) RefreshInventory(ctx context.Context) error {
	st := newRun(r, &keydesk.Batch{ID: "inventory-" + r.o.Holder})
	return r.refreshInventories(ctx, st)
}

// refreshInventories is RefreshInventory within a run, whose API clients
// it shares. Pairs whose credentials the run found refused are left.
func (r *Runner) refreshInventories(ctx context.Context, st *run) error {
	reqs, err := r.q.List(ctx, queue.Filter{})
	if err != nil {
		return fmt.Errorf("batch: inventory: %w", err)
	}
	made := madeBy(reqs)
	var errs []error
	for _, p := range r.o.Partners().Partners {
		for _, env := range keydesk.Environments {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !hasCredentials(p, env) {
				continue
			}
			if _, skip := st.skipped(p.ID, env); skip {
				continue
			}
			api, err := st.account(p, env)
			if err == nil {
				err = r.refreshOne(ctx, api, p.ID, env, made)
				// Refused credentials fail the account's requests on their
				// own, with an alert; anything else keeps them waiting.
				if kind, _ := r.o.Classify(err); err != nil && kind != Refused {
					st.mu.Lock()
					st.unlisted[pairKey(p.ID, env)] = err.Error()
					st.mu.Unlock()
				}
			} else {
				r.inventoryProblem(ctx, p.ID, env, err)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", p.ID, env, err))
			}
		}
	}
	return errors.Join(errs...)
}

// refreshOne lists one account's keys and merges them into its inventory.
func (r *Runner) refreshOne(ctx context.Context, api API, partner string, env keydesk.Environment, made map[keydesk.KeyRef]string) error {
	start := r.clock.Now().UTC()
	keys, lerr := api.ListKeys(ctx)
	// A key in the answer was known from when the answer came, not from
	// when it was asked for: a key created while the list was in flight
	// must not count as known before an attempt that made it.
	seen := r.clock.Now().UTC()
	if lerr != nil {
		r.inventoryProblem(ctx, partner, env, lerr)
		return lerr
	}
	_, err := r.q.UpdateInventory(ctx, partner, env, func(inv *keydesk.Inventory) error {
		mergeListing(inv, keys, start, seen, made)
		inv.ListedAt, inv.Problem = seen, ""
		return nil
	})
	if err != nil {
		r.log.Warn("inventory not written", "partner", partner, "environment", env, "err", err)
		return err
	}
	return nil
}

// inventoryProblem records why an account's keys could not be listed;
// the keys of the last listing stay.
func (r *Runner) inventoryProblem(ctx context.Context, partner string, env keydesk.Environment, cause error) {
	problem := cause.Error()
	if len(problem) > maxProblem {
		problem = problem[:maxProblem] + "…"
	}
	r.log.Warn("keys not listed", "partner", partner, "environment", env, "err", cause)
	_, err := r.q.UpdateInventory(ctx, partner, env, func(inv *keydesk.Inventory) error {
		inv.Problem = fmt.Sprintf("%s: the keys could not be listed: %s", r.clock.Now().UTC().Format(time.RFC3339), problem)
		return nil
	})
	if err != nil {
		r.log.Warn("inventory problem not written", "partner", partner, "environment", env, "err", err)
	}
}

// mergeListing brings inv up to date with the keys the API listed: the
// list was asked for at start and answered at seen. A key new to the
// inventory is first seen at seen; a key keydesk knew from before start
// that the list lacks was revoked outside keydesk, noticed at seen. A key
// first seen after start may be missing from the list only because it was
// made after the API read it: it is left as it is. A revoked key stays
// revoked, whatever a stale list says.
func mergeListing(inv *keydesk.Inventory, keys []keydesk.Key, start, seen time.Time, made map[keydesk.KeyRef]string) {
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k.ID == "" || listed[k.ID] {
			continue
		}
		listed[k.ID] = true
		ik := inv.Key(k.ID)
		if ik == nil {
			inv.Keys = append(inv.Keys, keydesk.InventoryKey{
				KeyRef:    keydesk.KeyRef{Partner: inv.Partner, Environment: inv.Environment, ID: k.ID},
				FirstSeen: seen,
			})
			ik = &inv.Keys[len(inv.Keys)-1]
		}
		ik.Label, ik.Scopes, ik.APIKey = k.Label, slices.Clone(k.Scopes), k.APIKey
		if !k.CreatedAt.IsZero() {
			ik.CreatedAt = k.CreatedAt.UTC()
		}
	}
	for i := range inv.Keys {
		ik := &inv.Keys[i]
		ik.Partner, ik.Environment = inv.Partner, inv.Environment
		if id, ok := made[ik.KeyRef]; ok {
			ik.RequestID, ik.MadeBy = id, keydesk.MadeByKeydesk
		}
		if ik.MadeBy == "" {
			ik.MadeBy = keydesk.MadeByPartner
		}
		if !listed[ik.ID] && ik.Live() && ik.FirstSeen.Before(start) {
			ik.RevokedAt = seen
		}
	}
	pruneInventory(inv)
}

// pruneInventory keeps inv within maxInventoryKeys, dropping the keys
// revoked longest ago first, and sorts it by key ID.
func pruneInventory(inv *keydesk.Inventory) {
	if over := len(inv.Keys) - maxInventoryKeys; over > 0 {
		var revoked []int
		for i, k := range inv.Keys {
			if !k.Live() {
				revoked = append(revoked, i)
			}
		}
		slices.SortFunc(revoked, func(a, b int) int { return inv.Keys[a].RevokedAt.Compare(inv.Keys[b].RevokedAt) })
		drop := map[int]bool{}
		for _, i := range revoked[:min(over, len(revoked))] {
			drop[i] = true
		}
		kept := inv.Keys[:0]
		for i, k := range inv.Keys {
			if !drop[i] {
				kept = append(kept, k)
			}
		}
		inv.Keys = kept
	}
	slices.SortFunc(inv.Keys, func(a, b keydesk.InventoryKey) int {
		if c := len(a.ID) - len(b.ID); c != 0 {
			return c // key-999 before key-1000
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// recordCreated puts a key keydesk just made into its account's
// inventory, first seen now: from this moment on, it is known.
func (r *Runner) recordCreated(ctx context.Context, ref keydesk.KeyRef, k keydesk.Key, requestID string) {
	now := r.clock.Now().UTC()
	_, err := r.q.UpdateInventory(ctx, ref.Partner, ref.Environment, func(inv *keydesk.Inventory) error {
		ik := inv.Key(ref.ID)
		if ik == nil {
			inv.Keys = append(inv.Keys, keydesk.InventoryKey{KeyRef: ref, FirstSeen: now})
			ik = &inv.Keys[len(inv.Keys)-1]
		}
		ik.Label, ik.Scopes, ik.APIKey = k.Label, slices.Clone(k.Scopes), k.APIKey
		if !k.CreatedAt.IsZero() {
			ik.CreatedAt = k.CreatedAt.UTC()
		}
		ik.RequestID, ik.MadeBy = requestID, keydesk.MadeByKeydesk
		pruneInventory(inv)
		return nil
	})
	if err != nil {
		// The next listing adds it, first seen later: never earlier.
		r.log.Warn("new key not written to the inventory", "key", ref.String(), "request", requestID, "err", err)
	}
}

// recordRevoked marks a key keydesk revoked in its account's inventory.
// A key the inventory never listed is added as what is known of it
// (from), so that the inventory shows the revocation. requestID, when
// set, is the request that made the key (an orphan's).
func (r *Runner) recordRevoked(ctx context.Context, ref keydesk.KeyRef, at time.Time, from keydesk.InventoryKey) {
	_, err := r.q.UpdateInventory(ctx, ref.Partner, ref.Environment, func(inv *keydesk.Inventory) error {
		ik := inv.Key(ref.ID)
		if ik == nil {
			k := from
			k.KeyRef = ref
			k.Scopes = slices.Clone(from.Scopes)
			if k.FirstSeen.IsZero() {
				k.FirstSeen = at
			}
			if k.MadeBy == "" {
				k.MadeBy = keydesk.MadeByPartner
			}
			inv.Keys = append(inv.Keys, k)
			ik = &inv.Keys[len(inv.Keys)-1]
		}
		if ik.RevokedAt.IsZero() {
			ik.RevokedAt = at
		}
		if from.RequestID != "" && ik.RequestID == "" {
			ik.RequestID, ik.MadeBy = from.RequestID, keydesk.MadeByKeydesk
		}
		pruneInventory(inv)
		return nil
	})
	if err != nil {
		r.log.Warn("revocation not written to the inventory", "key", ref.String(), "err", err)
	}
}

// inventoryOf returns the account's inventory, or an empty one when it
// was never listed.
func (r *Runner) inventoryOf(ctx context.Context, partner string, env keydesk.Environment) (*keydesk.Inventory, error) {
	inv, err := r.q.Inventory(ctx, partner, env)
	if errors.Is(err, keydesk.ErrNotFound) {
		return &keydesk.Inventory{Partner: partner, Environment: env}, nil
	}
	return inv, err
}
