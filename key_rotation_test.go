package keydesk

import (
	"testing"
	"time"
)

func TestInventoryKeyRotationDue(t *testing.T) {
	day := 24 * time.Hour
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name                 string
		key                  InventoryKey
		maxAge, remindBefore time.Duration
		want                 bool
	}{
		{"no policy", InventoryKey{CreatedAt: now.Add(-1000 * day)}, 0, 30 * day, false},
		{"young", InventoryKey{CreatedAt: now.Add(-100 * day)}, 365 * day, 30 * day, false},
		{"a day before the reminder", InventoryKey{CreatedAt: now.Add(-334 * day)}, 365 * day, 30 * day, false},
		{"at max_age minus remind_before", InventoryKey{CreatedAt: now.Add(-335 * day)}, 365 * day, 30 * day, true},
		{"past max_age", InventoryKey{CreatedAt: now.Add(-400 * day)}, 365 * day, 30 * day, true},
		{"no reminder window", InventoryKey{CreatedAt: now.Add(-364 * day)}, 365 * day, 0, false},
		{"revoked", InventoryKey{CreatedAt: now.Add(-400 * day), RevokedAt: now.Add(-day)}, 365 * day, 30 * day, false},
		{"age from first seen", InventoryKey{FirstSeen: now.Add(-340 * day)}, 365 * day, 30 * day, true},
		{"age unknown", InventoryKey{}, 365 * day, 30 * day, false},
		{"created in the future", InventoryKey{CreatedAt: now.Add(day)}, 365 * day, 30 * day, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.key.RotationDue(now, tt.maxAge, tt.remindBefore); got != tt.want {
				t.Fatalf("RotationDue = %v, want %v", got, tt.want)
			}
		})
	}
}
