package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/buildmarkets/keydesk"
)

// maxInventoryTries bounds the compare-and-set loop of UpdateInventory:
// only the batch role writes inventories, so a conflict is rare.
const maxInventoryTries = 8

func inventoryKey(partner string, env keydesk.Environment) string {
	return partner + "." + string(env)
}

// Inventory returns the key inventory of partner in env, as the batch role
// last wrote it; keydesk.ErrNotFound when it has never listed them.
func (c *Conn) Inventory(ctx context.Context, partner string, env keydesk.Environment) (*keydesk.Inventory, error) {
	if !env.Valid() || partner == "" {
		return nil, fmt.Errorf("queue: inventory %q/%q: %w", partner, env, keydesk.ErrNotFound)
	}
	inv, rev, err := c.keys.retrying().Get(ctx, inventoryKey(partner, env))
	if err != nil {
		return nil, err
	}
	inv.Revision = rev
	return inv, nil
}

// Inventories returns every inventory, of every partner and environment.
// A record that cannot be decoded is skipped and reported in err, joined,
// after the ones that can.
func (c *Conn) Inventories(ctx context.Context) ([]*keydesk.Inventory, error) {
	entries, err := c.keys.retrying().Scan(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("queue: inventories: %w", err)
	}
	var out []*keydesk.Inventory
	var errs []error
	for _, e := range entries {
		if e.Err != nil {
			errs = append(errs, e.Err)
			continue
		}
		e.Value.Revision = e.Revision
		out = append(out, e.Value)
	}
	return out, errors.Join(errs...)
}

// UpdateInventory applies fn to the inventory of partner in env (an empty
// one when none is stored yet) and stores the result with compare-and-set,
// calling fn again on the fresh record after a conflict.
func (c *Conn) UpdateInventory(ctx context.Context, partner string, env keydesk.Environment, fn func(inv *keydesk.Inventory) error) (*keydesk.Inventory, error) {
	key := inventoryKey(partner, env)
	for range maxInventoryTries {
		inv, rev, err := c.keys.retrying().Get(ctx, key)
		switch {
		case errors.Is(err, keydesk.ErrNotFound):
			inv, rev = &keydesk.Inventory{Partner: partner, Environment: env}, 0
		case err != nil:
			return nil, err
		}
		if err := fn(inv); err != nil {
			return nil, err
		}
		inv.Partner, inv.Environment = partner, env
		if rev == 0 {
			rev, err = c.keys.retrying().Create(ctx, key, inv)
		} else {
			rev, err = c.keys.retrying().Update(ctx, key, inv, rev)
		}
		if errors.Is(err, keydesk.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("queue: inventory %s: %w", key, err)
		}
		inv.Revision = rev
		return inv, nil
	}
	return nil, fmt.Errorf("queue: inventory %s: %w", key, keydesk.ErrConflict)
}
