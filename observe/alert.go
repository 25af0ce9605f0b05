package observe

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/templates"
)

// The alerts to support: a contact key that expires soon, an AUDIT
// stream near its limit. Each alert's ID names what it reports and the
// day, so it is sent once a day however many instances look.

// checkAudit reads how full the AUDIT stream is and alerts support,
// once a day, while it is more than auditAlertFull full.
func (o *Observer) checkAudit(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u, err := o.q.AuditUsage(actx)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("audit gauges not updated", "err", err)
		}
		return
	}
	o.mu.Lock()
	o.audit = &u
	o.mu.Unlock()
	if u.Full() < auditAlertFull {
		return
	}
	now := o.now()
	log := o.log.With("bytes", u.Bytes, "max_bytes", u.MaxBytes)
	pct := int(u.Full() * 100)
	o.alert(ctx, log, "alert.audit-size."+now.UTC().Format("20060102"), "", now, "alert-audit-size", templates.AuditSizeAlert{
		Msgs: u.Msgs, Bytes: u.Bytes, MaxBytes: u.MaxBytes, Percent: pct, First: u.First,
	}, fmt.Sprintf("The audit trail is %d%% full", pct))
}

// expiring returns the partners whose contact key expires within
// keyExpiryWarning of now, or has expired.
func (o *Observer) expiring(now time.Time) []*keydesk.Partner {
	var out []*keydesk.Partner
	for _, p := range o.partners().Partners {
		if exp := p.TechnicalContact.KeyExpires; !exp.IsZero() && exp.Sub(now) < keyExpiryWarning {
			out = append(out, p)
		}
	}
	return out
}

// keyAlertID names the alert for one key on one day: the same key on the
// same day always gives the same ID, so however many instances look,
// support hears once a day.
func keyAlertID(p *keydesk.Partner, now time.Time) string {
	fp := p.TechnicalContact.Fingerprint
	if len(fp) > 16 {
		fp = fp[len(fp)-16:]
	}
	return fmt.Sprintf("alert.contact-key.%s.%s.%s", p.ID, fp, now.UTC().Format("20060102"))
}

// checkKeys alerts support about each contact key that expires soon.
func (o *Observer) checkKeys(ctx context.Context) {
	now := o.now()
	for _, p := range o.expiring(now) {
		id := keyAlertID(p, now)
		exp := p.TechnicalContact.KeyExpires
		log := o.log.With("partner", p.ID, "fingerprint", p.TechnicalContact.Fingerprint, "expires", exp.UTC().Format(time.RFC3339))
		o.alert(ctx, log, id, p.ID, now, "alert-contact-key", keyAlert(p, now), "technical contact key expires soon: keys cannot be delivered to an expired key")
	}
}

// alert logs warning and, unless this process has already, queues the
// alert id, mail template tmpl with data, to support: the same id is sent once however many instances
// try (the outbox and delivery's sent-once records dedupe it). A failure
// is logged and tried again at the next check.
func (o *Observer) alert(ctx context.Context, log *slog.Logger, id, partner string, now time.Time, tmpl string, data any, warning string) {
	o.mu.Lock()
	done := o.alerted[id]
	o.mu.Unlock()
	if done {
		return
	}
	log.Warn(warning)
	if o.support == "" {
		log.Warn("no alert sent: smtp.support_address is not set")
		return
	}
	if o.tpl == nil {
		log.Warn("no alert sent: the templates did not load (see the error at start)")
		return
	}
	out, err := o.tpl.AlertMailFrom(tmpl, id, o.support, data)
	if err != nil {
		log.Error("alert not rendered", "err", err)
		return
	}
	out.Partner, out.CreatedAt = partner, now
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = o.q.Enqueue(cctx, out)
	cancel()
	if err != nil {
		log.Error("alert not queued; trying again at the next check", "err", err)
		return
	}
	o.mu.Lock()
	o.alerted[id] = true
	o.mu.Unlock()
}

// keyAlert is what the contact-key alert says of p's key on now.
func keyAlert(p *keydesk.Partner, now time.Time) templates.ContactKeyAlert {
	tc := p.TechnicalContact
	exp := tc.KeyExpires.UTC()
	return templates.ContactKeyAlert{
		PartnerID: p.ID, PartnerName: p.Name, Email: tc.Email, Fingerprint: tc.Fingerprint, KeyFile: tc.KeyFile,
		Expires: exp, Expired: !exp.After(now), DaysLeft: int(exp.Sub(now).Hours() / 24),
	}
}
