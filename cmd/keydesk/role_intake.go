package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/templates"
)

// startIntake wires the intake role: the IMAP poller (TLS and SASL from
// mailauth) with the parser and reply builder as its handler, under the
// mailbox's lease, with the "imap" readiness check and the intake metrics.
func startIntake(ctx context.Context, a *app) (func(context.Context) error, error) {
	cfg := a.cfg
	if cfg.IMAP.Address == "" {
		return nil, fmt.Errorf("intake: imap.address is not set: the intake role needs the support mailbox (or leave intake out of --roles)")
	}
	p, err := newIntakePoller(a)
	if err != nil {
		return nil, err
	}
	a.addCheck("imap", p.Ready)
	return func(ctx context.Context) error {
		return a.q.Standby(ctx, intake.LeaseName(cfg.IMAP.Mailbox), a.holder, cfg.IMAP.LeaseTTL, p.Run)
	}, nil
}

func newIntakePoller(a *app) (*intake.Poller, error) {
	cfg := a.cfg
	o, err := intakeMailOptions(cfg)
	if err != nil {
		return nil, err
	}
	tpl, err := templates.Load(cfg.Path(cfg.Templates.Dir))
	if err != nil {
		return nil, err
	}
	schedule := cfg.Batch.Schedule
	// The same parser options as "keydesk parse" (parseOptionsFromConfig),
	// with its full contact-key check: a key that cannot be used rejects
	// the request before any key is made. The registry is taken per email.
	po := parseOptionsFromConfig(cfg, nil, time.Now)
	handler := intake.NewParseHandler(intake.ParseOptions{
		Registry: a.partners.Current,
		Parse:    po,
		Reply: func(res *parse.Result) (*keydesk.Outgoing, error) {
			// The acknowledgement names the next batch; a schedule that
			// cannot say leaves it out rather than holding the reply.
			next, err := batch.NextRun(schedule, time.Now())
			if err != nil {
				next = time.Time{}
			}
			return reply.BuildWith(res, tpl, reply.Options{NextBatch: next, RotationGrace: cfg.Rotation.Grace})
		},
		Threads:        a.q,
		Keys:           a.q,
		Templates:      tpl,
		SupportAddress: cfg.SMTP.SupportAddress,
		NextBatch: func() time.Time {
			next, err := batch.NextRun(schedule, time.Now())
			if err != nil {
				return time.Time{}
			}
			return next
		},
		Log: a.log.With("role", "intake"),
	})
	o.Queue, o.Handler, o.Metrics = a.q, handler, a.metrics
	o.Templates, o.SupportAddress = tpl, cfg.SMTP.SupportAddress
	o.SpoolDir = filepath.Join(cfg.Path(cfg.DataDir), "intake-spool")
	o.Log = a.log.With("role", "intake")
	return intake.New(o)
}

// intakeMailOptions are the poller's mailbox, TLS and SASL from the imap
// section: what the intake role and `keydesk check --connect` log in with.
func intakeMailOptions(cfg *config.Config) (intake.Options, error) {
	mb := intakeMailbox(cfg)
	ms := mb.MailServer
	if err := mailauth.CheckSecurity(ms); err != nil {
		return intake.Options{}, fmt.Errorf("intake: imap: %w", err)
	}
	var tc *tls.Config
	if ms.Security != mailauth.SecurityNone {
		var err error
		if tc, err = mailauth.TLSConfig(ms, ""); err != nil {
			return intake.Options{}, fmt.Errorf("intake: imap: %w", err)
		}
	}
	tokens := mailauth.NewTokenSource(ms)
	var authFailed func()
	if tokens != nil {
		authFailed = tokens.Invalidate
	}
	return intake.Options{
		IMAP:       mb,
		TLSConfig:  tc,
		Auth:       func(ctx context.Context) (sasl.Client, error) { return mailauth.SASLClient(ctx, ms, tokens) },
		AuthFailed: authFailed,
	}, nil
}

// intakeMailbox is the imap section as the poller takes it, file names
// resolved.
func intakeMailbox(cfg *config.Config) intake.Mailbox {
	c := cfg.IMAP
	return intake.Mailbox{
		MailServer: mailauth.Resolve(c.MailServer, cfg.Path), Mailbox: c.Mailbox, ProcessedMailbox: c.ProcessedMailbox, RejectedMailbox: c.RejectedMailbox,
		PollInterval: c.PollInterval, MaxMessageBytes: int64(c.MaxMessageBytes), HardMaxMessageBytes: int64(c.HardMaxMessageBytes),
		MaxAttempts: c.MaxAttempts, LeaseTTL: c.LeaseTTL,
	}
}

// checkIntake is `keydesk check`'s and serve's look at the intake role's
// settings: the imap section as the poller takes it, judged by intake.
// Without imap.address there is nothing to judge: the role says so when
// it starts.
func checkIntake(cfg *config.Config) error {
	if cfg.IMAP.Address == "" {
		return nil
	}
	o := intake.Options{IMAP: intakeMailbox(cfg)}
	return cfg.InFile(o.Validate())
}
