package review

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
)

// The key's life as support sees it: the key inventory (which the batch
// role lists and writes; review only reads it), staff asking to revoke or
// rotate one key, picking the key a revocation named by label means, and
// confirming a rotation. A key is always the triple (partner,
// environment, key_id): key IDs are numbered per partner account and
// environment, so two environments of one partner both hold a key-001.
//
// A revoke or rotate asked by staff is a request like any other: it waits
// in pending_review and is approved by the ordinary rules (four eyes per
// review.four_eyes). The staff member who asked may give one of the
// approvals, never both: under four eyes a second, different approver is
// needed, as for every request. Once a revocation is approved, review
// writes a batch record with the revoke trigger, so that the batch role —
// which alone holds API credentials — revokes it at once instead of at
// the next scheduled run.

// staffSource prefixes the source key of a request staff asked for, so
// that keydesk knows no email is behind it (no email is ever sent to its
// "requester", a staff name).
const staffSource = "staff\x00"

const (
	// maxKeyID bounds a key ID taken from a caller.
	maxKeyID = 100
	// maxAskTries bounds the search for a new request ID.
	maxAskTries = 8
)

// staffMade reports whether staff asked for r in the UI, API or CLI.
func staffMade(r *keydesk.Request) bool { return strings.HasPrefix(r.SourceKey, staffSource) }

// Key is one key of GET /api/v1/keys. The field names are part of the
// external interface.
type Key struct {
	Partner     string     `json:"partner"`
	Environment string     `json:"environment"`
	KeyID       string     `json:"key_id"`
	Label       string     `json:"label"`
	Scopes      []string   `json:"scopes"`
	CreatedAt   *time.Time `json:"created_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	RequestID   string     `json:"request_id"`
	AgeDays     int        `json:"age_days"`
	MadeBy      string     `json:"made_by"`
	// RotationDue: rotation.max_age calls for the key to be rotated.
	RotationDue bool `json:"rotation_due,omitempty"`
}

// Listing is when the batch role last listed one partner account's keys
// in one environment, and why that listing failed, if it did.
type Listing struct {
	Partner     string     `json:"partner"`
	Environment string     `json:"environment"`
	ListedAt    *time.Time `json:"listed_at"`
	Problem     string     `json:"problem,omitempty"`
}

// KeyList is GET /api/v1/keys.
type KeyList struct {
	Keys     []Key     `json:"keys"`
	Listings []Listing `json:"listings"`
	// More: keys were left out past the limit (?limit=, at most 5000).
	More bool `json:"more,omitempty"`
}

// KeyActionBody is the body of POST /api/v1/keys/revoke and /rotate.
type KeyActionBody struct {
	Partner     string `json:"partner"`
	Environment string `json:"environment"`
	KeyID       string `json:"key_id"`
	Reason      string `json:"reason"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// naturalCompare orders key IDs as people count: key-2 before key-10.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitsPrefix(a), digitsPrefix(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		ra, sa := utf8.DecodeRuneInString(a)
		rb, sb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return cmp.Compare(ra, rb)
		}
		a, b = a[sa:], b[sb:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitsPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// rotationDue applies the rotation policy to k at now.
func (s *Server) rotationDue(k *keydesk.InventoryKey, now time.Time) bool {
	return k.RotationDue(now, s.o.RotationMaxAge, s.o.RotationRemindBefore)
}

// inventories reads every inventory, sorted by partner and environment;
// one that cannot be read is logged and left out.
func (s *Server) inventories(ctx context.Context) ([]*keydesk.Inventory, error) {
	invs, err := s.o.Queue.Inventories(ctx)
	if err != nil {
		if len(invs) == 0 || queue.Unavailable(err) {
			return nil, err
		}
		s.log.Warn("review: an inventory record cannot be read", "err", err)
	}
	slices.SortFunc(invs, func(a, b *keydesk.Inventory) int {
		if c := strings.Compare(a.Partner, b.Partner); c != 0 {
			return c
		}
		return envOrder(a.Environment) - envOrder(b.Environment)
	})
	for _, inv := range invs {
		sortKeys(inv.Keys)
	}
	return invs, nil
}

func envOrder(e keydesk.Environment) int {
	if i := slices.Index(keydesk.Environments, e); i >= 0 {
		return i
	}
	return len(keydesk.Environments)
}

func sortKeys(keys []keydesk.InventoryKey) {
	slices.SortStableFunc(keys, func(a, b keydesk.InventoryKey) int { return naturalCompare(a.ID, b.ID) })
}

func (s *Server) apiKey(k *keydesk.InventoryKey, now time.Time) Key {
	out := Key{
		Partner: k.Partner, Environment: string(k.Environment), KeyID: k.ID, Label: k.Label, Scopes: []string{},
		CreatedAt: timePtr(k.CreatedAt), RevokedAt: timePtr(k.RevokedAt), RequestID: k.RequestID,
		AgeDays: k.AgeDays(now), MadeBy: string(k.MadeBy), RotationDue: s.rotationDue(k, now),
	}
	for _, sc := range k.Scopes {
		out.Scopes = append(out.Scopes, string(sc))
	}
	return out
}

// apiListKeys is GET /api/v1/keys?partner=&environment=: every key of the
// inventory, revoked ones too, by partner, environment and key ID.
func (s *Server) apiListKeys(w http.ResponseWriter, r *http.Request, st *staff) error {
	q := r.URL.Query()
	partner := q.Get("partner")
	if len(partner) > 64 {
		return errBadRequest("partner: a partner ID is at most 64 characters")
	}
	env := keydesk.Environment(q.Get("environment"))
	if env != "" && !env.Valid() {
		return errBadRequest("environment %q: use sandbox or production", clip(string(env), 40))
	}
	limit := maxLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return errBadRequest("limit %q: use a number from 1 to %d", clip(v, 20), maxLimit)
		}
		limit = n
	}
	invs, err := s.inventories(r.Context())
	if err != nil {
		return err
	}
	now := s.now()
	out := KeyList{Keys: []Key{}, Listings: []Listing{}}
	for _, inv := range invs {
		if (partner != "" && inv.Partner != partner) || (env != "" && inv.Environment != env) {
			continue
		}
		out.Listings = append(out.Listings, Listing{Partner: inv.Partner, Environment: string(inv.Environment), ListedAt: timePtr(inv.ListedAt), Problem: inv.Problem})
		for i := range inv.Keys {
			if len(out.Keys) == limit {
				out.More = true
				break
			}
			k := &inv.Keys[i]
			// The record's own partner and environment: a key's copy may
			// be empty in records written before the triple was stored.
			k.Partner, k.Environment = inv.Partner, inv.Environment
			out.Keys = append(out.Keys, s.apiKey(k, now))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// keyRequest is a staff member's ask to revoke or rotate one key.
type keyRequest struct {
	By     staff
	Kind   keydesk.RequestKind
	Ref    keydesk.KeyRef
	Reason string
	Via    string
}

// errKeyUnknown and the errors beside it are what refuses a revoke or
// rotate; each has a code scripts can branch on.
func errKeyUnknown(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: "unknown_key", Msg: fmt.Sprintf(format, args...)}
}

// inventoryKey finds ref in the inventory, as the batch role last listed
// it; the error says what a person does about a key keydesk does not know.
func (s *Server) inventoryKey(ctx context.Context, ref keydesk.KeyRef) (*keydesk.Inventory, *keydesk.InventoryKey, error) {
	inv, err := s.o.Queue.Inventory(ctx, ref.Partner, ref.Environment)
	if errors.Is(err, keydesk.ErrNotFound) {
		return nil, nil, errKeyUnknown("keydesk has not listed the %s keys of %s yet: press Refresh on the partner page (or run 'keydesk keys refresh') and try again once the list is there", ref.Environment, ref.Partner)
	}
	if err != nil {
		return nil, nil, err
	}
	k := inv.Key(ref.ID)
	if k == nil {
		return inv, nil, errKeyUnknown("%s has no key %s in %s as last listed (%s): check the key ID on the partner page; a key made since shows after a Refresh", ref.Partner, clip(ref.ID, 40), ref.Environment, s.listedWords(inv))
	}
	k.Partner, k.Environment = inv.Partner, inv.Environment
	return inv, k, nil
}

func (s *Server) listedWords(inv *keydesk.Inventory) string {
	if inv.ListedAt.IsZero() {
		return "never listed"
	}
	return "listed " + inv.ListedAt.In(s.o.Location).Format("2006-01-02 15:04 MST")
}

// checkKeyRef checks the triple a caller named: a known partner, an
// environment it has, a key ID of sane size.
func (s *Server) checkKeyRef(partner, env, keyID string) (keydesk.KeyRef, error) {
	ref := keydesk.KeyRef{Partner: strings.TrimSpace(partner), Environment: keydesk.Environment(strings.TrimSpace(env)), ID: strings.TrimSpace(keyID)}
	if ref.Partner == "" || ref.Environment == "" || ref.ID == "" {
		return ref, errBadRequest("name the key by its partner, environment and key_id: key IDs repeat across partners and environments")
	}
	if !ref.Environment.Valid() {
		return ref, errBadRequest("environment %q: use sandbox or production", clip(env, 40))
	}
	if utf8.RuneCountInString(ref.ID) > maxKeyID || !keydesk.Inert(ref.ID) || strings.ContainsAny(ref.ID, " \t\r\n") {
		return ref, errBadRequest("key_id %q is not a key ID of the API (such as key-001)", clip(keyID, 40))
	}
	p, ok := s.o.Partners().Partner(ref.Partner)
	if !ok {
		return ref, &Error{Status: http.StatusNotFound, Code: "unknown_partner", Msg: fmt.Sprintf("partner %q is not in partners.yaml", clip(ref.Partner, 64))}
	}
	if len(p.Environments) > 0 {
		if _, ok := p.Environments[ref.Environment]; !ok {
			return ref, &Error{Status: http.StatusNotFound, Code: "unknown_environment", Msg: fmt.Sprintf("partner %s has no %s environment in partners.yaml", p.ID, ref.Environment)}
		}
	}
	return ref, nil
}

// openKeyRequest returns the open request (not done) of kind that is
// about ref, or nil.
func (s *Server) openKeyRequest(ctx context.Context, kind keydesk.RequestKind, ref keydesk.KeyRef) (*keydesk.Request, error) {
	list, err := s.o.Queue.List(ctx, queue.Filter{Partner: ref.Partner, Environment: ref.Environment})
	if err != nil {
		return nil, err
	}
	for _, x := range list {
		if x.KindOf() != kind || x.State.Done() {
			continue
		}
		if (kind == keydesk.KindRevoke && x.KeyID == ref.ID) || (kind == keydesk.KindRotate && x.ReplacesKeyID == ref.ID) {
			return x, nil
		}
	}
	return nil, nil
}

// askKey creates a revoke or rotate request for one key of the
// inventory, asked by staff, pending review.
func (s *Server) askKey(ctx context.Context, kr keyRequest) (*keydesk.Request, error) {
	if !kr.By.Role.Can(users.Approver) {
		return nil, errForbidden(users.Approver)
	}
	reason, err := cleanText(kr.Reason, "the reason", maxReason)
	if err != nil {
		return nil, err
	}
	if reason == "" {
		return nil, errBadRequest("give a reason: the approvers read it and the audit trail keeps it")
	}
	ref, err := s.checkKeyRef(kr.Ref.Partner, string(kr.Ref.Environment), kr.Ref.ID)
	if err != nil {
		return nil, err
	}
	_, k, err := s.inventoryKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !k.Live() {
		return nil, errConflict("key_revoked", "key %s was revoked on %s: there is nothing to %s", ref, k.RevokedAt.In(s.o.Location).Format("2006-01-02 15:04 MST"), kr.Kind)
	}
	open, err := s.openKeyRequest(ctx, kr.Kind, ref)
	if err != nil {
		return nil, err
	}
	if open != nil {
		return nil, errConflict(string(kr.Kind)+"_open", "request %s already asks to %s key %s (it is %s): approve or cancel that one", open.ID, kr.Kind, ref, open.State)
	}
	now := s.now().UTC()
	r := &keydesk.Request{
		Kind: kr.Kind, State: keydesk.StatePendingReview, Partner: ref.Partner, Environment: ref.Environment,
		Requester: kr.By.Name, Reason: reason, SourceDate: now,
		SourceKey: staffSource + kr.By.Name + "\x00" + strconv.FormatInt(now.UnixNano(), 10) + "\x00" + string(kr.Kind) + "\x00" + ref.String(),
	}
	what := "revoke key " + ref.String()
	switch kr.Kind {
	case keydesk.KindRevoke:
		r.KeyID = ref.ID
		r.Subject = fmt.Sprintf("Revoke %s (%s, %s)", ref.ID, ref.Partner, ref.Environment)
	case keydesk.KindRotate:
		r.ReplacesKeyID = ref.ID
		r.Label, r.Scopes = k.Label, slices.Clone(k.Scopes)
		r.Subject = fmt.Sprintf("Rotate %s (%s, %s)", ref.ID, ref.Partner, ref.Environment)
		what = "rotate key " + ref.String()
	default:
		return nil, fmt.Errorf("review: ask %q of a key", kr.Kind)
	}
	if k.Label != "" {
		what += fmt.Sprintf(" (label %q)", keydesk.SafeLine(k.Label, 64))
	}
	refreshFlags(r, s.o.Partners())
	// The source key holds the time to the nanosecond; should a clock
	// give the same time twice, the index makes the second one new.
	var out *keydesk.Request
	for i := 0; out == nil; i++ {
		if i == maxAskTries {
			return nil, errConflict("conflict", "no free request ID after %d tries: try again", maxAskTries)
		}
		r.Index = i
		x, created, err := s.o.Queue.Create(ctx, r, kr.By.Name)
		if err != nil {
			return nil, asError("", err)
		}
		if created {
			out = x
		}
	}
	note := what + ": " + keydesk.SafeLine(reason, 300)
	if kr.Via == "api" {
		note += " (via API)"
	}
	s.audit(ctx, kr.By, "ask-"+string(kr.Kind), out.ID, note)
	s.actions.Inc("ask-" + string(kr.Kind))
	s.log.Info("review: key request", "request", out.ID, "kind", kr.Kind, "key", ref.String(), "by", kr.By.Name)
	return out, nil
}

// apiAskKey is POST /api/v1/keys/revoke and /api/v1/keys/rotate.
func (s *Server) apiAskKey(kind keydesk.RequestKind) func(w http.ResponseWriter, r *http.Request, st *staff) error {
	return func(w http.ResponseWriter, r *http.Request, st *staff) error {
		var body KeyActionBody
		if err := decodeBody(r, &body, `{"partner": "acme", "environment": "production", "key_id": "key-001", "reason": "..."}`); err != nil {
			return err
		}
		out, err := s.askKey(r.Context(), keyRequest{By: *st, Kind: kind,
			Ref: keydesk.KeyRef{Partner: body.Partner, Environment: keydesk.Environment(body.Environment), ID: body.KeyID}, Reason: body.Reason, Via: "api"})
		if err != nil {
			return err
		}
		res := s.apiRequest(out, s.o.Partners())
		res.Message = askedMessage(out)
		writeJSON(w, http.StatusCreated, res)
		return nil
	}
}

func askedMessage(r *keydesk.Request) string {
	if r.KindOf() == keydesk.KindRotate {
		return fmt.Sprintf("Rotation of %s asked as %s: it waits for approval; once approved the next batch makes the new key and the old one is revoked when the contact confirms or at the end of the grace.", r.ReplacesKeyID, r.ID)
	}
	return fmt.Sprintf("Revocation of %s asked as %s: it waits for approval, and is revoked at once when approved.", r.KeyID, r.ID)
}

// apiRefreshKeys is POST /api/v1/keys/refresh: the batch role lists every
// partner's keys now.
func (s *Server) apiRefreshKeys(w http.ResponseWriter, r *http.Request, st *staff) error {
	b, err := s.refreshKeys(r.Context(), *st)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, b)
	return nil
}

// refreshKeys asks the batch role to list the partners' keys now.
func (s *Server) refreshKeys(ctx context.Context, by staff) (*keydesk.Batch, error) {
	if !by.Role.Can(users.Approver) {
		return nil, errForbidden(users.Approver)
	}
	b, err := s.requestRun(ctx, by, keydesk.TriggerInventory, "asked for the partners' keys to be listed now")
	if err != nil {
		return nil, err
	}
	s.actions.Inc("refresh-keys")
	return b, nil
}

// requestRun writes a batch record in state requested with trigger, which
// a batch role takes, and its audit event.
func (s *Server) requestRun(ctx context.Context, by staff, trigger, change string) (*keydesk.Batch, error) {
	b := &keydesk.Batch{ID: s.o.Queue.NewBatchID(), Trigger: trigger, By: by.Name, State: keydesk.BatchRequested, Requested: s.now().UTC()}
	if err := s.o.Queue.PutBatch(ctx, b); err != nil {
		if queue.Unavailable(err) {
			return nil, errUnavailable(err)
		}
		return nil, &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "the batch run could not be requested; the log has the cause", Err: err}
	}
	s.audit(ctx, by, "request-run", b.ID, trigger+": "+change)
	s.log.Info("review: batch run requested", "batch", b.ID, "trigger", trigger, "by", by.Name)
	return b, nil
}

// pickKey sets the key of a revoke or rotate request whose label matched
// several live keys: one of its candidates, still live as last listed.
func (s *Server) pickKey(ctx context.Context, a action, keyID string) (*result, error) {
	if err := staffAction(a); err != nil {
		return nil, err
	}
	keyID = strings.TrimSpace(keyID)
	if keyID == "" {
		return nil, errBadRequest(`name the key: {"key_id": "key-001"}`)
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	kind := r.KindOf()
	if kind == keydesk.KindIssue || len(r.KeyCandidates) == 0 {
		return nil, errConflict("no_candidates", "request %s has no keys to pick from (someone may have picked one already): reload it", r.ID)
	}
	if !awaitingReview(r) {
		return nil, errConflict("invalid_state", "request %s is %s: a key is picked while the request awaits review", r.ID, r.State)
	}
	if !slices.Contains(r.KeyCandidates, keyID) {
		return nil, errBadRequest("%s is not one of the keys the request matched: pick one of %s", clip(keyID, 40), strings.Join(r.KeyCandidates, ", "))
	}
	// A candidate found in both environments is written environment/key_id,
	// the request's environment left for the pick to set.
	ref := keydesk.KeyRef{Partner: r.Partner, Environment: r.Environment, ID: keyID}
	if env, id, ok := strings.Cut(keyID, "/"); ok {
		ref.Environment, ref.ID = keydesk.Environment(env), id
	}
	_, k, err := s.inventoryKey(ctx, ref)
	if err != nil {
		return nil, err
	}
	if !k.Live() {
		return nil, errConflict("key_revoked", "key %s was revoked since the request came: pick another, or cancel the request", ref)
	}
	note := fmt.Sprintf("picked key %s of %s", ref, strings.Join(r.KeyCandidates, ", "))
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "pick-key", From: r.State, Revision: r.Revision, Note: s.note(a, note),
		Mutate: func(x *keydesk.Request) error {
			x.Environment = ref.Environment
			if kind == keydesk.KindRotate {
				x.ReplacesKeyID = ref.ID
				if x.Label == "" {
					x.Label = k.Label
				}
				if len(x.Scopes) == 0 {
					x.Scopes = slices.Clone(k.Scopes)
				}
			} else {
				x.KeyID = ref.ID
			}
			x.KeyCandidates = nil
			refreshFlags(x, s.o.Partners())
			return nil
		},
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("pick-key")
	s.log.Info("review: key picked", "request", r.ID, "key", ref.String(), "by", a.By.Name)
	return &result{Request: out, Message: "Key " + ref.String() + " picked: the request waits for approval."}, nil
}

// confirmRotation records, for a delivered rotation, that the new key is
// in use: the batch role then revokes the old key without waiting for the
// end of the grace.
func (s *Server) confirmRotation(ctx context.Context, a action) (*result, error) {
	if err := staffAction(a); err != nil {
		return nil, err
	}
	r, err := s.load(ctx, a)
	if err != nil {
		return nil, err
	}
	if r.KindOf() != keydesk.KindRotate {
		return nil, errConflict("not_rotation", "request %s is a %s request: only a rotation is confirmed", r.ID, r.KindOf())
	}
	if r.State != keydesk.StateDelivered {
		return nil, errConflict("invalid_state", "request %s is %s: a rotation is confirmed once its new key is delivered", r.ID, r.State)
	}
	if rot := r.Rotation; rot != nil {
		switch {
		case !rot.OldRevokedAt.IsZero():
			return nil, errConflict("rotation_done", "the old key %s of request %s is revoked already", r.ReplacesKeyID, r.ID)
		case !rot.ConfirmedAt.IsZero():
			return nil, errConflict("rotation_confirmed", "the rotation of request %s was confirmed by %s already", r.ID, rot.ConfirmedBy)
		}
	}
	now := s.now().UTC()
	out, err := s.o.Queue.Apply(ctx, r.ID, queue.Change{
		Actor: a.By.Name, Subject: a.By.Subject, Action: "confirm-rotation", From: r.State, Revision: r.Revision,
		Note: s.note(a, "confirmed the new key is in use: the old key "+r.ReplacesKeyID+" is revoked now"),
		Mutate: func(x *keydesk.Request) error {
			if x.Rotation == nil {
				x.Rotation = &keydesk.Rotation{}
			}
			x.Rotation.ConfirmedAt, x.Rotation.ConfirmedBy = now, a.By.Name
			return nil
		},
	})
	if err != nil {
		return nil, asError(r.ID, err)
	}
	s.actions.Inc("confirm-rotation")
	s.log.Info("review: rotation confirmed", "request", r.ID, "old_key", r.ReplacesKeyID, "by", a.By.Name)
	res := &result{Request: out, Message: "Rotation confirmed: the batch role revokes the old key " + r.ReplacesKeyID + " now."}
	// As for an approved revocation: the batch role takes this record at
	// once, and its rotation sweep, then its revocation, run.
	if _, err := s.requestRun(ctx, a.By, keydesk.TriggerRevoke, "revoke the old key "+r.ReplacesKeyID+" of rotation "+r.ID+" now"); err != nil {
		s.log.Error("review: revoke run not requested", "request", r.ID, "err", err)
		res.Message = "Rotation confirmed: the batch role revokes the old key " + r.ReplacesKeyID + " on its next pass, within a minute."
	}
	return res, nil
}

// apiConfirmRotation is POST /api/v1/requests/{id}/rotation/confirm.
func (s *Server) apiConfirmRotation(w http.ResponseWriter, r *http.Request, st *staff) error {
	var body ActionBody
	if err := decodeBody(r, &body, `{}`); err != nil {
		return err
	}
	res, err := s.confirmRotation(r.Context(), action{By: *st, ID: strings.ToUpper(r.PathValue("id")), Revision: body.Revision, Via: "api"})
	if err != nil {
		return err
	}
	out := s.apiRequest(res.Request, s.o.Partners())
	out.Message = res.Message
	writeJSON(w, http.StatusOK, out)
	return nil
}

// keyFacts is what the request page shows of the key a request is about,
// from the inventory.
type keyFacts struct {
	Ref      keydesk.KeyRef
	Key      *keydesk.InventoryKey // nil: not in the inventory (as last listed)
	AgeDays  int
	Due      bool
	ListedAt time.Time
	Problem  string // why the key cannot be shown
}

// keyFactsOf looks id up in the inventory of r's partner and environment.
func (s *Server) keyFactsOf(ctx context.Context, r *keydesk.Request, id string) *keyFacts {
	f := &keyFacts{Ref: keydesk.KeyRef{Partner: r.Partner, Environment: r.Environment, ID: id}}
	inv, err := s.o.Queue.Inventory(ctx, r.Partner, r.Environment)
	switch {
	case errors.Is(err, keydesk.ErrNotFound):
		f.Problem = "the keys of " + r.Partner + " in " + string(r.Environment) + " have not been listed yet"
		return f
	case err != nil:
		s.log.Warn("review: inventory", "request", r.ID, "err", err)
		f.Problem = "the key inventory cannot be read now"
		return f
	}
	f.ListedAt = inv.ListedAt
	if k := inv.Key(id); k != nil {
		f.Key = k
		f.AgeDays = k.AgeDays(s.now())
		f.Due = s.rotationDue(k, s.now())
	} else {
		f.Problem = "not in the inventory as last listed"
	}
	return f
}
