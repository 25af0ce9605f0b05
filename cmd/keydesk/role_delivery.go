package main

import (
	"context"
	"fmt"

	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/templates"
)

func init() {
	registerRole(role{name: "delivery", start: startDelivery})
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
	sender, err := delivery.NewSMTP(delivery.SMTPOptions{
		Server:   mailauth.Resolve(cfg.SMTP.MailServer, cfg.Path),
		HeloName: cfg.SMTP.HeloName,
	})
	if err != nil {
		return nil, err
	}
	svc, err := delivery.New(delivery.Options{
		Queue: a.q, Sender: sender, From: cfg.SMTP.From, SupportAddress: cfg.SMTP.SupportAddress,
		Partners: a.partners.Current, Templates: tpl, RetryFor: cfg.Delivery.RetryFor,
		Holder: a.holder, Log: a.log.With("role", "delivery"), Metrics: a.metrics,
	})
	if err != nil {
		return nil, err
	}
	a.addCheck("smtp", sender.Check)
	return svc.Run, nil
}
