package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/group"
	"github.com/buildmarkets/keydesk/notify"
	"github.com/buildmarkets/keydesk/templates"
)

// The review role sends the notifications (notify.webhook_url,
// notify.digest): it reads the requests already and holds no API
// credential, and a webhook token is one more secret the batch role need
// not hold.

// checkNotify lets `keydesk check` (and the review role at start) report
// a notify.digest schedule that cannot be read.
func checkNotify(cfg *config.Config) error {
	if strings.TrimSpace(cfg.Notify.Digest) == "" {
		return nil
	}
	if _, err := batch.ParseSchedule(cfg.Notify.Digest); err != nil {
		return cfg.InFile(fmt.Errorf("notify.digest: %s", strings.TrimPrefix(err.Error(), "batch: ")))
	}
	return nil
}

// newNotifier builds the notifier of the review role from the notify
// section.
func newNotifier(a *app, tpl *templates.Set) (*notify.Notifier, error) {
	cfg := a.cfg
	if err := checkNotify(cfg); err != nil {
		return nil, err
	}
	o := notify.Options{
		Queue: a.q, WebhookURL: cfg.Notify.WebhookURL, SupportAddress: cfg.SMTP.SupportAddress,
		Templates: tpl, BaseURL: cfg.Review.BaseURL, Holder: a.holder, LeaseTTL: cfg.Notify.LeaseTTL,
		Metrics: a.metrics, Logger: a.log.With("role", "review"),
		RotationMaxAge: cfg.Rotation.MaxAge, RotationRemindBefore: cfg.Rotation.RemindBefore,
	}
	if cfg.Notify.Digest != "" {
		s, err := batch.ParseSchedule(cfg.Notify.Digest)
		if err != nil {
			return nil, err
		}
		o.Digest = s
	}
	return notify.New(o)
}

// runTogether runs fns as one (group.Run).
func runTogether(fns ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error { return group.Run(ctx, fns...) }
}
