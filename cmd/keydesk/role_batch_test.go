package main

import (
	"strings"
	"testing"

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
