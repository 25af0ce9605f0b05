package review

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review/users"
)

// The partner pages: /partners lists the partners with their keys at a
// glance; /partners/{id} shows the keys of each environment, as the batch
// role last listed them, with Revoke… and Rotate… on each live key and
// Refresh for a new listing.

type partnersView struct {
	List []partnerRow
	// Policy is the rotation policy in words; empty: none.
	Policy string
}

type partnerRow struct {
	ID, Name     string
	Live, Due    int
	Listed       bool
	ListedAt     time.Time
	Problem      bool
	InRegistry   bool
	Environments []keydesk.Environment
}

type partnerView struct {
	P       *keydesk.Partner
	ID      string
	Envs    []envKeys
	Policy  string
	CanAct  bool
	Form    url.Values
	Refresh bool // a listing was asked for and not taken yet
}

type envKeys struct {
	Env      keydesk.Environment
	Listed   bool
	ListedAt time.Time
	Problem  string
	Keys     []keyView
}

// keyView is one key of the partner page.
type keyView struct {
	keydesk.InventoryKey
	AgeDays int
	Due     bool
	// Open revoke and rotate requests about this key, by ID.
	Revoking, Rotating string
}

// policyWords says the rotation policy, or "" when there is none.
func (s *Server) policyWords() string {
	if s.o.RotationMaxAge <= 0 {
		return ""
	}
	return "keys older than " + days(s.o.RotationMaxAge) + " are rotated; they show as due " + days(s.o.RotationRemindBefore) + " before"
}

func days(d time.Duration) string {
	n := int(d / (24 * time.Hour))
	if n == 1 {
		return "1 day"
	}
	if d%(24*time.Hour) != 0 {
		return ageWords(d)
	}
	return strconv.Itoa(n) + " days"
}

func (s *Server) getPartners(w http.ResponseWriter, r *http.Request, st *staff) error {
	invs, err := s.inventories(r.Context())
	if err != nil {
		return err
	}
	now := s.now()
	rows := map[string]*partnerRow{}
	var order []string
	row := func(id string) *partnerRow {
		if x, ok := rows[id]; ok {
			return x
		}
		x := &partnerRow{ID: id, Name: id}
		rows[id] = x
		order = append(order, id)
		return x
	}
	for _, p := range s.o.Partners().Partners {
		x := row(p.ID)
		x.Name, x.InRegistry = p.Name, true
	}
	for _, inv := range invs {
		x := row(inv.Partner)
		x.Listed = true
		x.Environments = append(x.Environments, inv.Environment)
		if inv.ListedAt.After(x.ListedAt) {
			x.ListedAt = inv.ListedAt
		}
		if inv.Problem != "" {
			x.Problem = true
		}
		for i := range inv.Keys {
			k := &inv.Keys[i]
			if k.Live() {
				x.Live++
			}
			if s.rotationDue(k, now) {
				x.Due++
			}
		}
	}
	slices.Sort(order)
	v := &partnersView{Policy: s.policyWords()}
	for _, id := range order {
		v.List = append(v.List, *rows[id])
	}
	s.render(w, http.StatusOK, "partners", pageData{Title: "Partners", Nav: "partners", Staff: st, Partners: v})
	return nil
}

func (s *Server) getPartner(w http.ResponseWriter, r *http.Request, st *staff) error {
	return s.showPartner(w, r, st, r.PathValue("partner"), http.StatusOK, doneMessages[r.URL.Query().Get("done")], "", nil)
}

func (s *Server) showPartner(w http.ResponseWriter, r *http.Request, st *staff, id string, status int, notice, errMsg string, form url.Values) error {
	ctx := r.Context()
	v, err := s.partnerView(ctx, id)
	if err != nil {
		return err
	}
	v.CanAct = st.Role.Can(users.Approver)
	v.Form = form
	title := id
	if v.P != nil {
		title = v.P.Name
	}
	s.render(w, status, "partner", pageData{Title: title, Nav: "partners", Staff: st, Partner: v, Notice: notice, Error: errMsg})
	return nil
}

func (s *Server) partnerView(ctx context.Context, id string) (*partnerView, error) {
	if len(id) > 64 {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no partner " + clip(id, 64)}
	}
	v := &partnerView{ID: id, Policy: s.policyWords()}
	p, inRegistry := s.o.Partners().Partner(id)
	if inRegistry {
		v.P = p
	}
	invs, err := s.inventories(ctx)
	if err != nil {
		return nil, err
	}
	reqs, err := s.o.Queue.List(ctx, queue.Filter{Partner: id})
	if err != nil {
		return nil, err
	}
	now := s.now()
	found := inRegistry
	for _, env := range keydesk.Environments {
		ek := envKeys{Env: env}
		if i := slices.IndexFunc(invs, func(inv *keydesk.Inventory) bool { return inv.Partner == id && inv.Environment == env }); i >= 0 {
			inv := invs[i]
			found = true
			ek.Listed, ek.ListedAt, ek.Problem = true, inv.ListedAt, inv.Problem
			for _, k := range inv.Keys {
				k.Partner, k.Environment = inv.Partner, inv.Environment
				kv := keyView{InventoryKey: k, AgeDays: k.AgeDays(now), Due: s.rotationDue(&k, now)}
				for _, x := range reqs {
					if x.Environment != env || x.State.Done() {
						continue
					}
					switch {
					case x.KindOf() == keydesk.KindRevoke && x.KeyID == k.ID:
						kv.Revoking = x.ID
					case x.KindOf() == keydesk.KindRotate && x.ReplacesKeyID == k.ID:
						kv.Rotating = x.ID
					}
				}
				ek.Keys = append(ek.Keys, kv)
			}
		} else if inRegistry && len(p.Environments) > 0 {
			if _, ok := p.Environments[env]; !ok {
				continue // the partner has no account in env
			}
		}
		v.Envs = append(v.Envs, ek)
	}
	if !found {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no partner " + clip(id, 64) + " in partners.yaml"}
	}
	if bs, err := s.o.Queue.ListBatches(ctx); err == nil {
		v.Refresh = slices.ContainsFunc(bs, func(b *keydesk.Batch) bool {
			return b.Trigger == keydesk.TriggerInventory && b.State == keydesk.BatchRequested
		})
	}
	return v, nil
}

// postKeys takes the partner page's forms: /keys/revoke, /keys/rotate
// (one key, with a reason) and /keys/refresh.
func (s *Server) postKeys(w http.ResponseWriter, r *http.Request, st *staff) error {
	partner := r.PostFormValue("partner")
	back := "/partners/" + url.PathEscape(partner)
	if partner == "" {
		back = "/partners"
	}
	var kind keydesk.RequestKind
	switch r.PathValue("action") {
	case "refresh":
		if _, err := s.refreshKeys(r.Context(), *st); err != nil {
			return err
		}
		http.Redirect(w, r, back+"?done=refresh", http.StatusSeeOther)
		return nil
	case "revoke":
		kind = keydesk.KindRevoke
	case "rotate":
		kind = keydesk.KindRotate
	default:
		return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no such action"}
	}
	out, err := s.askKey(r.Context(), keyRequest{By: *st, Kind: kind, Via: "web", Reason: r.PostFormValue("reason"),
		Ref: keydesk.KeyRef{Partner: partner, Environment: keydesk.Environment(r.PostFormValue("environment")), ID: r.PostFormValue("key_id")}})
	if err != nil {
		e := asError("", err)
		if e.Status >= 500 || e.Code == "unknown_partner" {
			return e
		}
		return s.showPartner(w, r, st, partner, e.Status, "", e.Msg, r.PostForm)
	}
	http.Redirect(w, r, "/requests/"+url.PathEscape(out.ID)+"?done=asked-"+string(kind), http.StatusSeeOther)
	return nil
}

func (s *Server) postConfirmRotation(w http.ResponseWriter, r *http.Request, st *staff) error {
	a := action{By: *st, ID: strings.ToUpper(r.PathValue("id")), Via: "web"}
	if _, err := s.confirmRotation(r.Context(), a); err != nil {
		e := asError(a.ID, err)
		if e.Status == http.StatusNotFound || e.Status >= 500 {
			return e
		}
		return s.showRequest(w, r, st, e.Status, "", e.Msg, nil)
	}
	http.Redirect(w, r, "/requests/"+url.PathEscape(a.ID)+"?done=rotation-confirmed", http.StatusSeeOther)
	return nil
}
