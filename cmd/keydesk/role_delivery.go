package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/templates"
)

// checkSMTP is keydesk check's look at the smtp section beyond what the
// config loader validates: delivery's own checks of the server (plain text
// to loopback only, the CA file a certificate) and of smtp.from.
func checkSMTP(cfg *config.Config) error {
	if cfg.SMTP.Address == "" {
		return nil
	}
	errs := []error{smtpOptions(cfg).Validate()}
	if _, err := delivery.NewComposer(cfg.SMTP.From, nil); err != nil {
		errs = append(errs, fmt.Errorf("smtp.from: %w", err))
	}
	return errors.Join(errs...)
}

// startDelivery wires the delivery role: the SMTP sender (its TLS and
// SASL from mailauth), the outbox consumer, the "smtp" readiness check and
// the delivery metrics.
func startDelivery(ctx context.Context, a *app) (func(context.Context) error, error) {
	cfg := a.cfg
	if cfg.SMTP.Address == "" {
		return nil, fmt.Errorf("delivery: smtp.address is not set: the delivery role needs a mail server to send through (or leave delivery out of --roles)")
	}
	tpl, err := templates.Load(cfg.Path(cfg.Templates.Dir))
	if err != nil {
		return nil, err
	}
	sender, err := newSMTPSender(cfg)
	if err != nil {
		return nil, err
	}
	svc, err := delivery.New(delivery.Options{
		Queue: a.q, Sender: sender, From: cfg.SMTP.From, SupportAddress: cfg.SMTP.SupportAddress,
		Partners: a.partners.Current, Templates: tpl, RetryFor: cfg.Delivery.RetryFor,
		AckWait: cfg.Delivery.AckWait, Holder: a.holder, Log: a.log.With("role", "delivery"), Metrics: a.metrics,
	})
	if err != nil {
		return nil, err
	}
	a.addCheck("smtp", sender.Check)
	return svc.Run, nil
}

// newSMTPSender is the sender of the smtp section (its TLS and SASL from
// mailauth): what the delivery role sends with and `keydesk check
// --connect` logs in with.
func newSMTPSender(cfg *config.Config) (*delivery.SMTP, error) {
	return delivery.NewSMTP(smtpOptions(cfg))
}

// smtpOptions are the sender's settings from the smtp section, paths
// resolved.
func smtpOptions(cfg *config.Config) delivery.SMTPOptions {
	return delivery.SMTPOptions{
		Server:   mailauth.Resolve(cfg.SMTP.MailServer, cfg.Path),
		HeloName: cfg.SMTP.HeloName,
	}
}
