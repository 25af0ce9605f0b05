package main

import (
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/config"
)

func TestCheckBatchSchedule(t *testing.T) {
	tests := []struct {
		schedule, err string
	}{
		{"CRON_TZ=UTC 0 10,16 * * 1-5", ""},
		{"@every 15m", ""},
		{"TZ=", "keydesk.yaml: batch.schedule: "},
		{"0 0 30 2 *", "never fires"},
		{"every day at ten", "batch.schedule"},
	}
	for _, tc := range tests {
		t.Run(tc.schedule, func(t *testing.T) {
			cfg := config.Default()
			cfg.File = "/etc/keydesk/keydesk.yaml"
			cfg.Batch.Schedule = tc.schedule
			err := checkBatch(cfg)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("checkBatch(%q) = %v, want %q", tc.schedule, err, tc.err)
			}
		})
	}
}

// TestCheckRotation: the rotation section reaches the batch role's
// settings, and what it refuses names the file and the key.
func TestCheckRotation(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name string
		set  func(r *config.Rotation)
		err  string
	}{
		{"defaults", func(*config.Rotation) {}, ""},
		{"policy", func(r *config.Rotation) { r.MaxAge = 365 * day }, ""},
		{"remind_before past max_age", func(r *config.Rotation) { r.MaxAge = 20 * day }, "keydesk.yaml: rotation.remind_before: 30d is not shorter than rotation.max_age (20d)"},
		{"grace within revoke_undelivered_after", func(r *config.Rotation) { r.Grace = 2 * day }, "keydesk.yaml: rotation.grace: 2d is not longer than delivery.revoke_undelivered_after (3d)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.File = "/etc/keydesk/keydesk.yaml"
			tc.set(&cfg.Rotation)
			o := batchOptions(cfg)
			if o.RotationGrace != cfg.Rotation.Grace || o.RotationMaxAge != cfg.Rotation.MaxAge || o.RotationRemindBefore != cfg.Rotation.RemindBefore {
				t.Fatalf("batch options %+v do not carry rotation %+v", o, cfg.Rotation)
			}
			err := checkBatch(cfg)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("checkBatch = %v, want %q", err, tc.err)
			}
		})
	}
}
