package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/redact"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// Secrets pasted into emails. A partner who writes "we get 401 with this
// pair" and pastes the pair has exposed a live key; keydesk is the first
// system that sees it. The poller redacts the spooled email before
// anything reads it (redactSpool), so the raw mail store, the parser and
// everything after them see only the markers; then, once the email's
// requests are stored, it proposes a revoke request for each exposed key
// it can name, tells the requester once and alerts support (exposures).

// redactSpool replaces the secrets of a spooled email in its file, in
// place, and returns what it found (nil: nothing). The file's size and
// digest become the redacted email's, so everything derived from the
// email (its source key when it has no Message-ID) is derived from what
// is kept, the same on every reading of it.
func (p *Poller) redactSpool(sp *spooled) (*redact.Result, error) {
	if p.noRedact {
		sp.data = nil
		return nil, nil
	}
	var out []byte
	var res *redact.Result
	var f *os.File
	openFile := func() error {
		var err error
		if f == nil {
			f, err = os.OpenFile(sp.file, os.O_RDWR, 0)
		}
		return err
	}
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	if sp.size <= p.o.IMAP.MaxMessageBytes && !sp.tooLarge {
		raw := sp.data
		if int64(len(raw)) != sp.size {
			if err := openFile(); err != nil {
				return nil, p.spoolErr(err)
			}
			raw = make([]byte, sp.size)
			if _, err := io.ReadFull(f, raw); err != nil {
				return nil, p.spoolErr(err)
			}
		}
		out, res = redact.Redact(raw, redact.Limits{})
		if len(res.Findings) > 0 {
			clear(raw)
		}
		sp.data = out
	} else {
		sp.data = nil
		if err := openFile(); err != nil {
			return nil, p.spoolErr(err)
		}
		// Too large to hold: looked at as written, line by line, and
		// only rewritten when it holds a secret: into a second spool
		// file, copied back over the first.
		var err error
		if res, err = redact.Lines(f, io.Discard); err != nil {
			return nil, p.spoolErr(err)
		}
		if len(res.Findings) == 0 {
			return nil, nil
		}
		if err := p.rewriteLarge(f, sp); err != nil {
			return nil, p.spoolErr(err)
		}
		return res, nil
	}
	if len(res.Findings) == 0 {
		return nil, nil
	}
	// Written over the same file, and cut to its new length: the blocks
	// that held the secret are overwritten, not only unlinked.
	if err := openFile(); err != nil {
		return nil, p.spoolErr(err)
	}
	if _, err := f.WriteAt(out, 0); err != nil {
		return nil, p.spoolErr(err)
	}
	if pad := sp.size - int64(len(out)); pad > 0 {
		if _, err := f.WriteAt(make([]byte, pad), int64(len(out))); err != nil {
			return nil, p.spoolErr(err)
		}
	}
	if err := f.Truncate(int64(len(out))); err != nil {
		return nil, p.spoolErr(err)
	}
	sum := sha256.Sum256(out)
	sp.size = int64(len(out))
	sp.digest = hex.EncodeToString(sum[:])
	return res, nil
}

// rewriteLarge redacts a spooled email too large to hold, as written,
// through a second spool file, and copies the result over the first
// (overwriting its blocks, then cutting it to its new length).
func (p *Poller) rewriteLarge(f *os.File, sp *spooled) error {
	tmp, err := os.CreateTemp(p.o.SpoolDir, "msg-*")
	if err != nil {
		return err
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := redact.Lines(f, tmp); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), tmp)
	if err != nil {
		return err
	}
	if pad := sp.size - n; pad > 0 && !sp.tooLarge {
		if _, err := f.Write(make([]byte, min(pad, 1<<20))); err != nil {
			return err
		}
	}
	if err := f.Truncate(n); err != nil {
		return err
	}
	if !sp.tooLarge {
		sp.size = n
	}
	sp.digest = hex.EncodeToString(h.Sum(nil))
	return nil
}

func (p *Poller) spoolErr(err error) error {
	return fmt.Errorf("intake: redact spooled email: %w: %w", ErrTemporary, err)
}

// describeSender fills what a decision says of its sender from the parse
// result: the partner, and the requester who may be told of the email.
func describeSender(dec *Decision, res *parse.Result) {
	dec.Date = res.Date
	if res.Partner == nil {
		return
	}
	if res.Authenticated || res.Via != "" {
		dec.Partner = res.Partner.ID
	}
	if res.Authenticated {
		dec.Requester = res.From
	}
}

// exposures takes what redactSpool found into the decision: each
// request of the email is flagged secret-exposed with a warning naming
// the fingerprints, and once the requests are stored (Converse, after
// the decision's own) the exposed keys get their revoke requests, the
// audit its events, the requester one email and support one alert.
func (p *Poller) exposures(m *Message, dec *Decision, found *redact.Result) {
	for _, f := range found.Findings {
		p.log.Warn("secret pasted in an email: redacted before it was stored", "uid", m.UID, "message_id", dec.MessageID,
			"fingerprint", "sha256:"+f.Fingerprint, "length", f.Length, "where", strings.Join(f.Where, "; "))
	}
	for _, r := range dec.Requests {
		r.AddFlag(keydesk.FlagSecretExposed)
		r.Warnings = append(r.Warnings, "the email held "+secretsPhrase(found)+": redacted before it was stored, and the keys named beside them proposed for revocation")
	}
	inner := dec.Converse
	dec.Converse = func(ctx context.Context, stored []*keydesk.Request, mailRef string) ([]*keydesk.Outgoing, error) {
		var outs []*keydesk.Outgoing
		if inner != nil {
			var err error
			if outs, err = inner(ctx, stored, mailRef); err != nil {
				return nil, err
			}
		}
		more, err := p.exposed(ctx, dec, found, stored, mailRef)
		if err != nil {
			return nil, err
		}
		return append(outs, more...), nil
	}
}

func secretsPhrase(found *redact.Result) string {
	var fps []string
	for _, f := range found.Findings {
		fps = append(fps, "sha256:"+f.Fingerprint)
	}
	if len(fps) == 1 {
		return "an API secret (" + fps[0] + ")"
	}
	return fmt.Sprintf("%d API secrets (%s)", len(fps), strings.Join(fps, ", "))
}

// exposure is what became of one secret found.
type exposure struct {
	f       *redact.Finding
	key     *keydesk.InventoryKey // the key it belongs to; nil: none known
	revoke  *keydesk.Request      // the revoke request proposed for it
	problem string                // why no revoke request was proposed
}

// exposed acts on the secrets of a stored email. Everything it does is
// idempotent: the revoke requests are derived from the email and the
// key, the emails carry IDs derived from the email.
func (p *Poller) exposed(ctx context.Context, dec *Decision, found *redact.Result, stored []*keydesk.Request, mailRef string) ([]*keydesk.Outgoing, error) {
	invs, err := p.o.Queue.Inventories(ctx)
	if err != nil && len(invs) == 0 {
		return nil, fmt.Errorf("inventories: %w", err)
	}
	date := dec.Date
	if date.IsZero() {
		date = p.o.Now()
	}
	var exps []*exposure
	for _, f := range found.Findings {
		e := &exposure{f: f}
		e.key, e.problem = matchKey(invs, f, dec.Partner)
		if e.key != nil && !e.key.Live() {
			e.problem = "the key is revoked already"
		}
		if e.key != nil && e.key.Live() {
			if e.revoke, err = p.proposeRevoke(ctx, dec, e, date, stored, mailRef); err != nil {
				return nil, err
			}
		}
		exps = append(exps, e)
		partner := dec.Partner
		if e.key != nil {
			partner = e.key.Partner
		}
		if partner == "" {
			partner = "unknown"
		}
		p.exposedTotal.Inc(partner)
		if err := p.o.Queue.Record(ctx, "system", exposureEvent(dec, e, stored, p.o.Actor)); err != nil {
			return nil, err
		}
	}
	var outs []*keydesk.Outgoing
	if p.o.Templates == nil {
		p.log.Warn("no email sent about a secret pasted in an email: no templates", "message_id", dec.MessageID)
		return nil, nil
	}
	if notice, err := p.exposureNotice(dec, exps, date); err != nil {
		return nil, err
	} else if notice != nil {
		outs = append(outs, notice)
	}
	if p.o.SupportAddress == "" {
		p.log.Warn("no alert sent about a secret pasted in an email: smtp.support_address is not set", "message_id", dec.MessageID)
		return outs, nil
	}
	alert, err := p.o.Templates.AlertMail("intake.secret-exposed."+keydesk.EntryID(dec.SourceKey), p.o.SupportAddress, exposureAlert(dec, exps, stored))
	if err != nil {
		return nil, err
	}
	return append(outs, alert), nil
}

// matchKey finds the key a secret belongs to: by the bm_key_ written
// beside it, in any partner's inventory (the pair is exposed whoever
// sent it); else by the key ID beside it, in the inventories of the
// sender's own partner only, and only when one key has that ID.
func matchKey(invs []*keydesk.Inventory, f *redact.Finding, partner string) (*keydesk.InventoryKey, string) {
	if f.APIKey != "" {
		for _, inv := range invs {
			for i := range inv.Keys {
				if inv.Keys[i].APIKey == f.APIKey {
					k := inv.Keys[i]
					k.Partner, k.Environment = inv.Partner, inv.Environment
					return &k, ""
				}
			}
		}
	}
	if f.KeyID == "" {
		if f.APIKey != "" {
			return nil, "the API key written beside it is in no partner's key inventory"
		}
		return nil, "no API key or key ID is written beside it"
	}
	if partner == "" {
		return nil, "the key ID written beside it cannot be looked up: the sender is not an authenticated requester of a partner"
	}
	var found []keydesk.InventoryKey
	for _, inv := range invs {
		if inv.Partner != partner {
			continue
		}
		if k := inv.Key(f.KeyID); k != nil {
			c := *k
			c.Partner, c.Environment = inv.Partner, inv.Environment
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, "the key ID written beside it is not in the partner's key inventory"
	case 1:
		return &found[0], ""
	}
	return nil, "the key ID written beside it names a key in more than one environment: which one is not said"
}

// proposeRevoke creates the revoke request of an exposed key: pending a
// person's approval (the partner may need a replacement first), flagged
// secret-exposed, one per email and key.
func (p *Poller) proposeRevoke(ctx context.Context, dec *Decision, e *exposure, date time.Time, stored []*keydesk.Request, mailRef string) (*keydesk.Request, error) {
	k := e.key
	r := &keydesk.Request{
		Kind: keydesk.KindRevoke, State: keydesk.StatePendingReview,
		Partner: k.Partner, Environment: k.Environment, KeyID: k.ID, Label: k.Label, APIKey: k.APIKey,
		Scopes: k.Scopes, Flags: []keydesk.Flag{keydesk.FlagSecretExposed}, Requester: dec.From,
		SourceMessageID: dec.MessageID, SourceDate: date.UTC(), MailRef: mailRef, Subject: dec.Subject,
		SourceKey: dec.SourceKey + "\x00secret-exposed:" + k.KeyRef.String(),
		Reason:    fmt.Sprintf("secret exposed in the email of %s (sha256:%s)", date.UTC().Format("2 January 2006"), e.f.Fingerprint),
	}
	if k.Environment == keydesk.Production {
		r.AddFlag(keydesk.FlagProduction)
	}
	if len(stored) > 0 {
		r.RevokeOf = stored[0].ID
	}
	// A key exposed again (the same pair pasted in a second email) keeps
	// the revocation already waiting.
	open, err := p.o.Queue.List(ctx, queue.Filter{Partner: k.Partner, Environment: k.Environment})
	if err != nil {
		return nil, err
	}
	for _, o := range open {
		if o.KindOf() == keydesk.KindRevoke && o.KeyID == k.ID && !o.State.Done() && o.SourceKey != r.SourceKey {
			return o, nil
		}
	}
	got, created, err := p.o.Queue.Create(ctx, r, p.o.Actor)
	if err != nil {
		return nil, err
	}
	if created {
		p.log.Warn("revoke request proposed for a key whose secret was pasted in an email", "request", got.ID, "key", k.KeyRef.String(),
			"fingerprint", "sha256:"+e.f.Fingerprint, "message_id", dec.MessageID)
	}
	return got, nil
}

func exposureEvent(dec *Decision, e *exposure, stored []*keydesk.Request, actor string) keydesk.Event {
	ev := keydesk.Event{Actor: actor, Action: "secret-exposed"}
	var b strings.Builder
	fmt.Fprintf(&b, "sha256:%s len:%s (%s) in the email %s from %s, in %s", e.f.Fingerprint, e.f.Length, e.f.Kind,
		keydesk.SafeLine(dec.MessageID, 200), keydesk.SafeLine(dec.From, 200), strings.Join(e.f.Where, "; "))
	switch {
	case e.revoke != nil:
		ev.Ref = e.revoke.ID
		fmt.Fprintf(&b, "; key %s: revoke request %s proposed", e.key.KeyRef, e.revoke.ID)
	case e.key != nil:
		fmt.Fprintf(&b, "; key %s: %s", e.key.KeyRef, e.problem)
	default:
		b.WriteString("; no key: " + e.problem)
	}
	if ev.Ref == "" && len(stored) > 0 {
		ev.Ref = stored[0].ID
	}
	if ev.Ref == "" {
		ev.Ref = "mail"
	}
	ev.Change = keydesk.RedactSecrets(b.String())
	return ev
}

// exposureNotice is the email to the requester about the keys of their
// own partner that their email exposed: once per email, never the
// secret. None when the sender is not authenticated or no key of theirs
// was named.
func (p *Poller) exposureNotice(dec *Decision, exps []*exposure, date time.Time) (*keydesk.Outgoing, error) {
	if dec.Requester == "" || dec.Partner == "" {
		return nil, nil
	}
	data := reply.SecretExposedData{Date: date, Subject: dec.Subject}
	var ids []string
	for _, e := range exps {
		if e.revoke == nil || e.key.Partner != dec.Partner {
			continue
		}
		data.Keys = append(data.Keys, reply.ExposedKey{KeyID: e.key.ID, Environment: string(e.key.Environment), Label: e.key.Label, RequestID: e.revoke.ID})
		ids = append(ids, e.revoke.ID)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	m, err := p.o.Templates.RenderPartnerMail("secret-exposed", data)
	if err != nil {
		return nil, err
	}
	out := &keydesk.Outgoing{
		ID: "secret-exposed." + keydesk.EntryID(dec.SourceKey), Kind: keydesk.KindSecretExposed, Partner: dec.Partner,
		RequestID: ids[0], To: []string{dec.Requester}, Subject: m.Subject, Text: m.Body, InReplyTo: dec.MessageID,
	}
	if len(ids) > 1 {
		out.Thread = ids
	}
	return out, nil
}

func exposureAlert(dec *Decision, exps []*exposure, stored []*keydesk.Request) templates.Alert {
	var b strings.Builder
	fmt.Fprintf(&b, "An email held %d API secret(s). keydesk replaced each with a marker before storing anything: its copy of the email, the request and the logs never held them. "+
		"The mail server's copy of the email still does.\n\n  From:       %s\n  Subject:    %s\n  Message-ID: %s\n",
		len(exps), keydesk.SafeLine(dec.From, 200), keydesk.SafeLine(dec.Subject, 200), keydesk.SafeLine(dec.MessageID, 200))
	for _, r := range stored {
		fmt.Fprintf(&b, "  Request:    %s\n", r.ID)
	}
	for _, e := range exps {
		fmt.Fprintf(&b, "\n  Secret sha256:%s (length %s, %s), in %s\n", e.f.Fingerprint, e.f.Length, e.f.Kind, strings.Join(e.f.Where, "; "))
		if e.f.APIKey != "" || e.f.KeyID != "" {
			fmt.Fprintf(&b, "    written beside it: %s\n", keydesk.SafeLine(strings.TrimSpace(e.f.APIKey+" "+e.f.KeyID), 200))
		}
		switch {
		case e.revoke != nil:
			fmt.Fprintf(&b, "    key %s (%q): revoke request %s waits for approval\n", e.key.KeyRef, e.key.Label, e.revoke.ID)
		case e.key != nil:
			fmt.Fprintf(&b, "    key %s: %s\n", e.key.KeyRef, e.problem)
		default:
			fmt.Fprintf(&b, "    no key found: %s\n", e.problem)
		}
	}
	return templates.Alert{
		Title: "A live API secret was pasted in an email",
		Text:  keydesk.RedactSecrets(b.String()),
		Action: "approve each revoke request (or use \"Revoke and issue a replacement\" on it when the partner needs a new key first); " +
			"for a secret no key was found for, find whose it is with the partner (the fingerprint is the first 8 hex digits of the SHA-256 of the secret) and revoke it by hand; " +
			"then delete the original email from the mailbox (the processed or rejected mailbox): the mail server's copy still holds the secret.",
	}
}
