package queue_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

// TestInventory: one record per partner and environment, so that acme's
// sandbox key-001 and its production key-001 are two keys; concurrent
// updates are all kept.
func TestInventory(t *testing.T) {
	q := queuetest.Open(t)
	ctx := context.Background()
	if _, err := q.Inventory(ctx, "acme", keydesk.Sandbox); !errors.Is(err, keydesk.ErrNotFound) {
		t.Fatalf("inventory never listed: %v, want ErrNotFound", err)
	}
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	for _, env := range keydesk.Environments {
		_, err := q.UpdateInventory(ctx, "acme", env, func(inv *keydesk.Inventory) error {
			inv.ListedAt = t0
			inv.Keys = append(inv.Keys, keydesk.InventoryKey{KeyRef: keydesk.KeyRef{Partner: "acme", Environment: env, ID: "key-001"},
				Label: string(env) + "-backend", MadeBy: keydesk.MadeByPartner, FirstSeen: t0})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := q.UpdateInventory(ctx, "acme", keydesk.Production, func(inv *keydesk.Inventory) error {
				inv.Keys = append(inv.Keys, keydesk.InventoryKey{KeyRef: keydesk.KeyRef{Partner: "acme", Environment: keydesk.Production, ID: "key-1" + string(rune('0'+i))}})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	sb, err := q.Inventory(ctx, "acme", keydesk.Sandbox)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := q.Inventory(ctx, "acme", keydesk.Production)
	if err != nil {
		t.Fatal(err)
	}
	if k := sb.Key("key-001"); k == nil || k.Label != "sandbox-backend" || k.Environment != keydesk.Sandbox {
		t.Errorf("sandbox key-001 = %+v", k)
	}
	if k := prod.Key("key-001"); k == nil || k.Label != "production-backend" {
		t.Errorf("production key-001 = %+v", k)
	}
	if len(prod.Keys) != 9 {
		t.Errorf("production has %d keys after 8 concurrent additions to 1, want 9", len(prod.Keys))
	}
	all, err := q.Inventories(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("Inventories = %d, %v; want 2", len(all), err)
	}
}
