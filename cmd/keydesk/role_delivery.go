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

// deliveryOptions are the delivery role's settings from the config:
// what serve starts the service with and `keydesk check` asks delivery
// to judge.
func deliveryOptions(cfg *config.Config) delivery.Options {
	return delivery.Options{
		From: cfg.SMTP.From, SupportAddress: cfg.SMTP.SupportAddress,
		RetryFor: cfg.Delivery.RetryFor, AckWait: cfg.Delivery.AckWait,
	}
}

// checkDelivery reports what the delivery role would refuse: its
// settings (smtp.from, delivery.ack_wait) and the smtp server as the
// sender takes it (plain text to loopback only, the CA file a
// certificate), each naming the file and key. Without smtp.address
// there is nothing to judge: the role says so when it starts.
func checkDelivery(cfg *config.Config) error {
	if cfg.SMTP.Address == "" {
		return nil
	}
	o := deliveryOptions(cfg)
	return cfg.InFile(errors.Join(o.Validate(), smtpOptions(cfg).Validate()))
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
	o := deliveryOptions(cfg)
	o.Queue, o.Sender, o.Partners, o.Templates = a.q, sender, a.partners.Current, tpl
	o.Holder, o.Log, o.Metrics = a.holder, a.log.With("role", "delivery"), a.metrics
	svc, err := delivery.New(o)
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
