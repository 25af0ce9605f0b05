package intake

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/queue"
)

// rotations are the delivered rotate requests an email confirms: it
// threads to them (In-Reply-To and References, else a request ID in its
// subject), its own text says the new key is in use (res.Confirms), and
// its sender may speak for them: an authenticated requester of the
// request's partner, or the partner's registered technical contact
// (who receives the delivery), with DMARC passed. Anything else is
// threaded as any reply is.
func (h *parseHandler) rotations(ctx context.Context, res *parse.Result) ([]*keydesk.Request, error) {
	q := h.o.Threads
	ids, err := h.answered(ctx, res)
	if err != nil {
		return nil, err
	}
	var out []*keydesk.Request
	for _, id := range ids {
		r, err := q.Get(ctx, id)
		if errors.Is(err, keydesk.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r.KindOf() == keydesk.KindRotate && r.State == keydesk.StateDelivered && h.speaksFor(res, r.Partner) {
			out = append(out, r)
		}
	}
	return out, nil
}

// speaksFor reports whether the email's sender may confirm a rotation of
// partner's key.
func (h *parseHandler) speaksFor(res *parse.Result, partner string) bool {
	if res.Authenticated && res.Partner != nil && res.Partner.ID == partner {
		return true
	}
	if !res.DMARC || res.Via != "" || h.o.Registry == nil {
		return false
	}
	p, ok := h.o.Registry().Partner(partner)
	return ok && p.TechnicalContact.Email != "" && strings.EqualFold(strings.TrimSpace(p.TechnicalContact.Email), res.From)
}

// confirm is the decision for a rotation's confirmation: it makes no
// request and sends nothing. The rotation records who confirmed and
// when; the batch role revokes the old key from there, and the notice of
// that revocation is the partner's answer. A reply of its own would only
// invite another reply.
func (h *parseHandler) confirm(res *parse.Result, key string, rs []*keydesk.Request) *Decision {
	return h.joining(res, key, rs, "confirmation", "confirms the rotation of ",
		func(c *conversation, ctx context.Context) ([]*keydesk.Outgoing, error) {
			return nil, c.confirmRotations(ctx)
		})
}

// confirmRotations sets Rotation.ConfirmedAt and ConfirmedBy on each
// request (the first confirmation stands; read again after a crash, the
// email changes nothing twice) and records the email and what it did in
// each thread.
func (c *conversation) confirmRotations(ctx context.Context) error {
	q := c.h.o.Threads
	now := c.h.now().UTC()
	for _, id := range c.requests {
		var old string
		for i := 0; ; i++ {
			if i == maxCAS {
				return fmt.Errorf("intake: confirm rotation %s: %w", id, keydesk.ErrConflict)
			}
			r, err := q.Get(ctx, id)
			if err != nil {
				return err
			}
			old = r.ReplacesKeyID
			if r.Rotation != nil && !r.Rotation.ConfirmedAt.IsZero() {
				break
			}
			_, err = q.Apply(ctx, id, queue.Change{
				Actor: c.h.actor(), Action: "confirm-rotation", Revision: r.Revision,
				Note: keydesk.SafeLine(c.res.From, 200) + " confirmed that the new key is in use",
				Mutate: func(x *keydesk.Request) error {
					if x.Rotation == nil {
						x.Rotation = &keydesk.Rotation{}
					}
					x.Rotation.ConfirmedAt, x.Rotation.ConfirmedBy = now, c.res.From
					return nil
				},
			})
			if errors.Is(err, keydesk.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		if err := c.entry(ctx, id, keydesk.ThreadEmailIn, c.ref, c.res.Text); err != nil {
			return err
		}
		text := keydesk.SafeLine(c.res.From, 200) + " confirmed that the new key is in use: the old key " + old + " is revoked next."
		if err := c.entry(ctx, id, keydesk.ThreadSystem, keydesk.EntryID(c.key, "rotation-confirmed"), text); err != nil {
			return err
		}
	}
	return q.IndexMessage(ctx, c.res.MessageID, c.requests...)
}
