package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/queue"
)

// KeyInventory reads the partners' key inventories, which the batch role
// writes; intake only reads them. *queue.Conn is one.
type KeyInventory interface {
	Inventory(ctx context.Context, partner string, env keydesk.Environment) (*keydesk.Inventory, error)
	Inventories(ctx context.Context) ([]*keydesk.Inventory, error)
}

var _ KeyInventory = (*queue.Conn)(nil)

// NotListedWarning is the warning on a revoke or rotate request whose
// partner's keys have not been listed yet: a person checks the key.
const NotListedWarning = "the key inventory has not been listed yet"

// maxListedKeys bounds the keys a rejection names per environment.
const maxListedKeys = 20

func (h *parseHandler) keys() KeyInventory {
	if h.o.Keys != nil {
		return h.o.Keys
	}
	if k, ok := h.o.Threads.(KeyInventory); ok {
		return k
	}
	return nil
}

// resolveKeys settles each key ask of an accepted email against its
// partner's inventory: the key it names (its ID, label and, for a
// rotation, scopes), the keys a person picks from, or a rejection that
// names the partner's own keys. Revoke and rotate requests stay in
// pending_review whatever they resolve to: a forged or mistaken email
// must never take a partner's key away by itself, and review applies
// four eyes per environment. An email whose every request is rejected
// becomes a rejection.
func (h *parseHandler) resolveKeys(ctx context.Context, res *parse.Result) error {
	if len(res.KeyAsks) == 0 || res.Partner == nil {
		return nil
	}
	if res.Verdict != parse.Accept {
		for _, a := range res.KeyAsks {
			if a.Index < len(res.Requests) && !a.All && res.Verdict == parse.Review {
				r := res.Requests[a.Index]
				r.AddFlag(keydesk.FlagNeedsReview)
				r.Warnings = append(r.Warnings, "asks to "+string(a.Kind)+" "+keydesk.SafeLine(a.What(), 120)+": not checked against the key inventory, the sender is not authenticated")
			}
		}
		return nil
	}
	kr := &keyResolver{h: h, inv: h.keys(), p: res.Partner, cache: map[keydesk.Environment]*keydesk.Inventory{}, notListed: map[keydesk.Environment]bool{}}
	for _, a := range res.KeyAsks {
		if a.Index >= len(res.Requests) || a.All {
			continue
		}
		if err := kr.resolve(ctx, a, res.Requests[a.Index]); err != nil {
			return err
		}
	}
	var rejected []keydesk.Reason
	all := true
	for _, r := range res.Requests {
		if r.State == keydesk.StateRejected {
			rejected = append(rejected, r.Reasons...)
		} else {
			all = false
		}
	}
	res.Reasons = append(res.Reasons, rejected...)
	if all {
		res.Verdict = parse.Reject
	}
	return nil
}

type keyResolver struct {
	h         *parseHandler
	inv       KeyInventory
	p         *keydesk.Partner
	cache     map[keydesk.Environment]*keydesk.Inventory
	notListed map[keydesk.Environment]bool
	others    []*keydesk.Inventory // every inventory, read once when needed
	read      bool
}

// inventory is the partner's inventory in env, or nil when it was never
// listed.
func (kr *keyResolver) inventory(ctx context.Context, env keydesk.Environment) (*keydesk.Inventory, error) {
	if inv, ok := kr.cache[env]; ok || kr.notListed[env] {
		return inv, nil
	}
	if kr.inv == nil {
		kr.notListed[env] = true
		return nil, nil
	}
	inv, err := kr.inv.Inventory(ctx, kr.p.ID, env)
	if errors.Is(err, keydesk.ErrNotFound) || err == nil && inv.ListedAt.IsZero() && len(inv.Keys) == 0 {
		kr.notListed[env] = true
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("intake: key inventory of %s/%s: %w: %w", kr.p.ID, env, ErrTemporary, err)
	}
	kr.cache[env] = inv
	return inv, nil
}

// candidate is one live key an ask may name.
type candidate struct {
	env keydesk.Environment
	key keydesk.InventoryKey
}

func (a askMatch) matches(k *keydesk.InventoryKey) bool {
	switch {
	case a.KeyID != "":
		return strings.EqualFold(k.ID, a.KeyID)
	case a.APIKey != "":
		return k.APIKey != "" && k.APIKey == a.APIKey
	}
	return strings.EqualFold(strings.TrimSpace(k.Label), strings.TrimSpace(a.Label))
}

type askMatch struct{ parse.KeyAsk }

func (kr *keyResolver) resolve(ctx context.Context, a parse.KeyAsk, r *keydesk.Request) error {
	envs := kr.envs(a)
	if len(envs) == 0 {
		kr.reject(r, keydesk.Reason{Code: keydesk.ReasonInvalidEnvironment,
			Message:    fmt.Sprintf("%s has no %s access set up", kr.p.Name, a.Environment),
			Suggestion: "name the environment the key is in"})
		return nil
	}
	var live []candidate
	revoked := false
	for _, env := range envs {
		inv, err := kr.inventory(ctx, env)
		if err != nil {
			return err
		}
		if inv == nil {
			continue
		}
		for i := range inv.Keys {
			k := &inv.Keys[i]
			if !(askMatch{a}).matches(k) {
				continue
			}
			if k.Live() {
				live = append(live, candidate{env, *k})
			} else {
				revoked = true
			}
		}
	}
	switch {
	case len(live) == 1:
		kr.name(r, a, live[0])
	case len(live) > 1:
		kr.pick(r, a, live)
	case slices.ContainsFunc(envs, func(e keydesk.Environment) bool { return kr.notListed[e] }):
		r.AddFlag(keydesk.FlagNeedsReview)
		r.Warnings = append(r.Warnings, NotListedWarning+": a person checks "+keydesk.SafeLine(a.What(), 120)+" against the partner's keys")
	default:
		return kr.unknown(ctx, a, r, envs, revoked)
	}
	return nil
}

// envs are the environments an ask may be in: the one it names, or every
// one the partner has.
func (kr *keyResolver) envs(a parse.KeyAsk) []keydesk.Environment {
	var out []keydesk.Environment
	for _, e := range keydesk.Environments {
		if _, ok := kr.p.Environments[e]; ok && (a.Environment == "" || a.Environment == e) {
			out = append(out, e)
		}
	}
	return out
}

// name sets the one key an ask names on its request.
func (kr *keyResolver) name(r *keydesk.Request, a parse.KeyAsk, c candidate) {
	r.Environment = c.env
	r.Label = c.key.Label
	if c.env == keydesk.Production {
		r.AddFlag(keydesk.FlagProduction)
	}
	if a.Kind == keydesk.KindRotate {
		r.KeyID, r.ReplacesKeyID = "", c.key.ID
		r.Scopes = slices.Clone(c.key.Scopes)
		for _, s := range r.Scopes {
			if s == keydesk.ScopeKeysManage {
				r.AddFlag(keydesk.FlagKeysManage)
			}
			if !kr.p.Allows(s) {
				r.AddFlag(keydesk.FlagScopeNotAllowed)
			}
		}
		return
	}
	r.KeyID = c.key.ID
}

// pick leaves the choice among several live keys to a person. Key IDs are
// unique only within an environment: candidates of several environments
// are written environment/key_id, and the request's environment is left
// for the person to set.
func (kr *keyResolver) pick(r *keydesk.Request, a parse.KeyAsk, cs []candidate) {
	r.KeyID, r.ReplacesKeyID = "", ""
	same := !slices.ContainsFunc(cs, func(c candidate) bool { return c.env != cs[0].env })
	var names []string
	for _, c := range cs {
		if same {
			r.KeyCandidates = append(r.KeyCandidates, c.key.ID)
		} else {
			r.KeyCandidates = append(r.KeyCandidates, string(c.env)+"/"+c.key.ID)
		}
		names = append(names, describeKey(c))
	}
	if same {
		r.Environment = cs[0].env
		if r.Environment == keydesk.Production {
			r.AddFlag(keydesk.FlagProduction)
		}
	} else {
		r.Environment = ""
		r.AddFlag(keydesk.FlagProduction)
	}
	if a.Label != "" {
		r.Label = cs[0].key.Label
	}
	r.AddFlag(keydesk.FlagNeedsReview)
	r.Warnings = append(r.Warnings, fmt.Sprintf("%s matches %d live keys (%s): a person picks the one to %s", keydesk.SafeLine(a.What(), 120), len(cs), strings.Join(names, "; "), a.Kind))
}

func describeKey(c candidate) string {
	if c.key.Label == "" {
		return fmt.Sprintf("%s, %s", c.key.ID, c.env)
	}
	return fmt.Sprintf("%s (label %s), %s", c.key.ID, keydesk.SafeLine(c.key.Label, 80), c.env)
}

// unknown rejects an ask that names no live key of the partner, naming
// the keys the partner has: never anything of another partner's. A
// public key half of another partner's account is told to support only.
func (kr *keyResolver) unknown(ctx context.Context, a parse.KeyAsk, r *keydesk.Request, envs []keydesk.Environment, revoked bool) error {
	where := kr.p.Name + "'s accounts"
	if a.Environment != "" {
		where = kr.p.Name + "'s " + string(a.Environment) + " account"
	}
	what := keydesk.SafeLine(a.What(), 120)
	msg := fmt.Sprintf("%s is not a live key of %s", what, where)
	if a.Label != "" {
		msg = fmt.Sprintf("no live key of %s is labelled %s", where, keydesk.SafeLine(a.Label, 80))
	}
	if revoked {
		msg = fmt.Sprintf("%s of %s is already revoked", what, where)
	}
	if a.APIKey != "" {
		other, err := kr.elsewhere(ctx, a.APIKey)
		if err != nil {
			return err
		}
		if other {
			r.Warnings = append(r.Warnings, "the public key half named belongs to another partner's account: the partner was told only that it is not theirs")
		}
	}
	kr.reject(r, keydesk.Reason{Code: keydesk.ReasonUnknownKey, Message: msg, Suggestion: kr.yourKeys(envs) + "; name the key by its key ID and environment"})
	return nil
}

// elsewhere reports whether apiKey is a key of another partner.
func (kr *keyResolver) elsewhere(ctx context.Context, apiKey string) (bool, error) {
	if kr.inv == nil {
		return false, nil
	}
	if !kr.read {
		all, err := kr.inv.Inventories(ctx)
		if err != nil && len(all) == 0 {
			return false, fmt.Errorf("intake: key inventories: %w: %w", ErrTemporary, err)
		}
		kr.others, kr.read = all, true
	}
	for _, inv := range kr.others {
		if inv.Partner == kr.p.ID {
			continue
		}
		if slices.ContainsFunc(inv.Keys, func(k keydesk.InventoryKey) bool { return k.APIKey == apiKey }) {
			return true, nil
		}
	}
	return false, nil
}

// yourKeys names the partner's live keys in envs, bounded: "your
// production keys are key-001 (label a), key-003 (label b)".
func (kr *keyResolver) yourKeys(envs []keydesk.Environment) string {
	var parts []string
	for _, env := range envs {
		inv := kr.cache[env]
		if inv == nil {
			continue
		}
		live := inv.Live("")
		if len(live) == 0 {
			parts = append(parts, fmt.Sprintf("you have no live %s keys", env))
			continue
		}
		var ks []string
		for i, k := range live {
			if i == maxListedKeys {
				ks = append(ks, fmt.Sprintf("and %d more", len(live)-maxListedKeys))
				break
			}
			if k.Label == "" {
				ks = append(ks, k.ID)
			} else {
				ks = append(ks, fmt.Sprintf("%s (label %s)", k.ID, keydesk.SafeLine(k.Label, 80)))
			}
		}
		parts = append(parts, fmt.Sprintf("your %s keys are %s", env, strings.Join(ks, ", ")))
	}
	return strings.Join(parts, "; ")
}

func (kr *keyResolver) reject(r *keydesk.Request, why keydesk.Reason) {
	r.State = keydesk.StateRejected
	r.Reasons = append(r.Reasons, why)
	r.Problem = why.Message
}
