package review

import (
	"context"
	"fmt"

	"github.com/buildmarkets/keydesk"
)

// revokeAndReplace is the one-click answer to a key whose secret a
// partner's email exposed (a revoke request intake proposed, flagged
// secret-exposed): it creates a rotate request for the key's replacement
// (same partner, environment, label and scopes; replaces_key_id the
// exposed key; pending review, since a new key is approved as any is) and
// approves the revocation as Approve does. The old key is therefore
// revoked as soon as the revocation is approved, not at the end of a
// rotation's grace: the rotate request records the revoke request as its
// old key's (Rotation.RevokeRequest), so the rotation revokes nothing
// itself. Both steps are idempotent: the replacement is derived from the
// revoke request, so a second click creates no second one.
func (s *Server) revokeAndReplace(ctx context.Context, a action) (*result, error) {
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	if r.KindOf() != keydesk.KindRevoke || !r.HasFlag(keydesk.FlagSecretExposed) || r.KeyID == "" {
		return nil, errConflict("invalid_kind", "request %s is not a revocation of an exposed key: use approve", r.ID)
	}
	if rf := s.approveRefusal(r, a.By); rf != nil {
		return nil, rf.Err
	}
	rot := &keydesk.Request{
		Kind: keydesk.KindRotate, State: keydesk.StatePendingReview,
		Partner: r.Partner, Environment: r.Environment, Label: r.Label, Scopes: r.Scopes,
		ReplacesKeyID: r.KeyID, Requester: r.Requester, Subject: r.Subject,
		SourceMessageID: r.SourceMessageID, SourceDate: s.now().UTC(), SourceKey: r.SourceKey + "\x00replacement",
		Reason:   fmt.Sprintf("replacement for %s, whose secret was exposed (revoked by %s)", r.KeyRef(), r.ID),
		Flags:    []keydesk.Flag{keydesk.FlagSecretExposed},
		Rotation: &keydesk.Rotation{RevokeRequest: r.ID},
	}
	if r.Environment == keydesk.Production {
		rot.AddFlag(keydesk.FlagProduction)
	}
	made, _, err := s.o.Queue.Create(ctx, rot, a.By.Name)
	if err != nil {
		return nil, asError(r.ID, err)
	}
	res, err := s.approve(ctx, a)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, a.By, "revoke-replace", r.ID, "replacement "+made.ID+" for "+r.KeyRef().String())
	res.Message += " The replacement is request " + made.ID + ": it waits for approval like any new key."
	return res, nil
}
