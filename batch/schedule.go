package batch

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ParseSchedule reads batch.schedule: a five-field cron expression with an
// optional CRON_TZ= (or TZ=) prefix, or a descriptor such as @hourly or
// @every 30m. An expression that never fires is refused.
func ParseSchedule(spec string) (_ cron.Schedule, err error) {
	// The cron parser panics on some malformed input ("TZ=" alone): a
	// schedule typed into the config must not bring keydesk down.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("batch: schedule %q cannot be read (%v): write e.g. \"CRON_TZ=UTC 0 10,16 * * 1-5\"", spec, p)
		}
	}()
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("batch: schedule is empty: write a cron expression such as \"CRON_TZ=UTC 0 10,16 * * 1-5\" or \"@every 1h\"")
	}
	if len(spec) > 200 {
		return nil, errors.New("batch: schedule is longer than 200 characters")
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("batch: schedule %q: %w (use five fields: minute hour day-of-month month day-of-week, e.g. \"CRON_TZ=UTC 0 10,16 * * 1-5\")", spec, err)
	}
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		if every, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && every < time.Second {
			return nil, fmt.Errorf("batch: schedule %q: an interval under one second is not a schedule", spec)
		}
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("batch: schedule %q never fires", spec)
	}
	return s, nil
}

// NextRun returns when a batch next runs after now under schedule. It needs
// no running batch role: intake quotes it in acknowledgements and the
// review UI shows it.
func NextRun(schedule string, now time.Time) (time.Time, error) {
	s, err := ParseSchedule(schedule)
	if err != nil {
		return time.Time{}, err
	}
	next := s.Next(now)
	if next.IsZero() {
		return time.Time{}, fmt.Errorf("batch: schedule %q has no run after %s", schedule, now.Format(time.RFC3339))
	}
	return next, nil
}
