package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// The key's life in the chaos: the partner's own keys, made with its
// keys:manage key beside keydesk's, and revocations asked for once the
// requests are delivered, one of them interrupted by a SIGKILL between
// the API's answer and the record.

// chaosPartnerKeys makes, before keydesk starts, the partner's own keys in
// each environment: one with the label and scopes of the first email's
// requests (known to the inventory before any attempt), one with that
// label and other scopes. Reconciliation must spare both.
func (r *chaosRun) makePartnerKeys() {
	r.partnerKeys = map[keydesk.Environment][]string{}
	for _, env := range keydesk.Environments {
		c := bmapi.New(bmapi.Options{BaseURL: r.apis[env].url, APIKey: r.managers[env].APIKey, APISecret: keydesk.SecretString(r.managers[env].APISecret)})
		for _, sc := range [][]keydesk.Scope{{"accounts:read", "marketdata:read"}, {"accounts:read"}} {
			k, err := c.CreateKey(context.Background(), "svc-000", sc)
			if err != nil {
				r.t.Fatal(err)
			}
			k.APISecret.Wipe()
			r.partnerKeys[env] = append(r.partnerKeys[env], k.ID)
		}
	}
}

// chaosRevocation is a revoke request the test asked for, and the key.
type chaosRevocation struct {
	id  string
	ref keydesk.KeyRef
}

// revokeSome asks, once everything is delivered, for the revocation of a
// sandbox key whose ID a delivered production key also bears, and of one
// production key, as the review role does on approval (a revoke request
// approved, and a revoke record). It kills an instance at once and starts
// it again (with a cluster, to die between the API's answer and the record
// of its first revocation); it waits until both are revoked, starting
// again whatever dies.
func (r *chaosRun) revokeSome(q *queue.Conn) *queue.Conn {
	t := r.t
	byRef := map[keydesk.KeyRef]*keydesk.Request{}
	for _, req := range r.reqs {
		if req.State == keydesk.StateDelivered {
			byRef[req.KeyRef()] = req
		}
	}
	var targets []*keydesk.Request
	for _, req := range r.reqs {
		if req.State != keydesk.StateDelivered || req.Environment != keydesk.Sandbox {
			continue
		}
		twin := byRef[keydesk.KeyRef{Partner: req.Partner, Environment: keydesk.Production, ID: req.KeyID}]
		if twin != nil {
			targets = append(targets, req)
			r.twins = append(r.twins, twin.KeyRef())
			break
		}
	}
	for _, req := range r.reqs {
		if req.State == keydesk.StateDelivered && req.Environment == keydesk.Production && !slices.Contains(r.twins, req.KeyRef()) {
			targets = append(targets, req)
			break
		}
	}
	if len(targets) != 2 || len(r.twins) != 1 {
		t.Fatalf("no sandbox key whose ID a production key bears too, or no other production key: the simulators must number keys per environment")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, req := range targets {
		rev, _, err := q.Create(ctx, &keydesk.Request{
			Kind: keydesk.KindRevoke, State: keydesk.StateApproved, Partner: req.Partner, Environment: req.Environment, KeyID: req.KeyID,
			Requester: "ada@acme.example", Reason: "rotated by hand", SourceKey: fmt.Sprintf("chaos-revoke-%d-%d", r.s.seed, i), SourceDate: time.Now(), Index: i,
		}, "chaos test")
		if err != nil {
			t.Fatal(err)
		}
		r.revocations = append(r.revocations, chaosRevocation{id: rev.ID, ref: req.KeyRef()})
	}
	if err := q.PutBatch(ctx, &keydesk.Batch{ID: q.NewBatchID(), Trigger: keydesk.TriggerRevoke, By: "ada", State: keydesk.BatchRequested, Requested: time.Now()}); err != nil {
		t.Fatal(err)
	}
	victim := r.ins[0]
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	ex := <-r.exits
	if !killed(ex.err) {
		t.Fatalf("%s ended other than by SIGKILL: %v", ex.in.name, ex.err)
	}
	r.kills++
	// With a cluster, the instance started again dies between the API's
	// answer and the record of its first revocation. The embedded
	// scenario only kills and restarts: its server, started again after
	// that failpoint, left the test's own connection without JetStream
	// answers in some runs (batch's TestCrashRevoke covers the failpoint
	// with a server that outlives keydesk).
	fp := ""
	if r.s.cluster != nil {
		fp = "after-revoke:1"
	}
	ex.in.start(t, r.s.bin, fp, r.exits)

	why := ""
	err := testenv.Poll(60*time.Second, "every revocation done", func() bool {
		select {
		case ex := <-r.exits: // the failpoint fired
			if !killed(ex.err) {
				t.Fatalf("%s ended other than by SIGKILL: %v", ex.in.name, ex.err)
			}
			r.selfKills++
			ex.in.start(t, r.s.bin, "", r.exits)
		default:
		}
		// Bounded: while an instance is down, so is an embedded server,
		// and a read waits for it; the instance is started again above.
		gctx, gcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer gcancel()
		// Read through List (a consumer), as settle does: a direct get
		// of one record has answered "no responders" for long after a
		// server restart.
		all, err := q.List(gctx, queue.Filter{States: []keydesk.State{keydesk.StateApproved, keydesk.StateRevoking, keydesk.StateRevoked, keydesk.StateFailed}})
		if err != nil {
			why = err.Error()
			q = r.reconnect(gctx, q)
			return false
		}
		for _, rv := range r.revocations {
			i := slices.IndexFunc(all, func(x *keydesk.Request) bool { return x.ID == rv.id })
			if i < 0 {
				why = rv.id + " not listed"
				return false
			}
			got := all[i]
			if got.State != keydesk.StateRevoked {
				why = fmt.Sprintf("%s is %s (%s)", rv.id, got.State, got.Problem)
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("%v: %s", err, why)
	}
	// An inventory run, as a person asking for a fresh list: every key
	// keydesk knows of is then listed once more.
	inv := &keydesk.Batch{ID: q.NewBatchID(), Trigger: keydesk.TriggerInventory, By: "ada", State: keydesk.BatchRequested, Requested: time.Now()}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	if err := q.PutBatch(ctx2, inv); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the inventory run", func() bool {
		gctx, gcancel := context.WithTimeout(ctx2, 2*time.Second)
		defer gcancel()
		bs, err := q.ListBatches(gctx)
		if err != nil {
			why = err.Error()
			q = r.reconnect(gctx, q)
			return false
		}
		return slices.ContainsFunc(bs, func(b *keydesk.Batch) bool { return b.ID == inv.ID && b.State == keydesk.BatchDone })
	})
	r.reqs, err = q.List(ctx2, queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// checkKeyLife: each revocation revoked its key in its own environment
// only (the twin with the same ID in the other environment lives on), the
// request that made it is revoked, and the partner's own keys all live.
// The inventory agrees with the API: every live key listed live, made by
// the request that holds it or by the partner.
func (r *chaosRun) checkKeyLife(q *queue.Conn) {
	t := r.t
	live := map[keydesk.KeyRef]bool{}
	for _, env := range keydesk.Environments {
		for _, k := range r.apis[env].api.Keys("acme") {
			if !k.Revoked {
				live[keydesk.KeyRef{Partner: "acme", Environment: env, ID: k.ID}] = true
			}
		}
	}
	for _, rv := range r.revocations {
		if live[rv.ref] {
			t.Errorf("%s is live after its revocation %s", rv.ref, rv.id)
		}
		if !slices.ContainsFunc(r.reqs, func(req *keydesk.Request) bool {
			return req.KindOf() != keydesk.KindRevoke && req.KeyRef() == rv.ref && req.State == keydesk.StateRevoked && !req.RevokedAt.IsZero()
		}) {
			t.Errorf("the request that made %s is not revoked", rv.ref)
		}
	}
	for _, twin := range r.twins {
		if !live[twin] {
			t.Errorf("%s was revoked with its namesake of the other environment", twin)
		}
	}
	for env, ids := range r.partnerKeys {
		for _, id := range ids {
			if !live[keydesk.KeyRef{Partner: "acme", Environment: env, ID: id}] {
				t.Errorf("the partner's own key (acme, %s, %s) was revoked", env, id)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	invs, err := q.Inventories(ctx)
	if err != nil {
		t.Fatalf("inventories: %v", err)
	}
	for _, env := range keydesk.Environments {
		i := slices.IndexFunc(invs, func(inv *keydesk.Inventory) bool { return inv.Partner == "acme" && inv.Environment == env })
		if i < 0 {
			t.Fatalf("no inventory of acme %s", env)
		}
		inv := invs[i]
		for ref := range live {
			if ref.Environment != env {
				continue
			}
			k := inv.Key(ref.ID)
			if k == nil || !k.Live() {
				t.Errorf("live key %s is %+v in the inventory", ref, k)
				continue
			}
			holder := slices.IndexFunc(r.reqs, func(req *keydesk.Request) bool {
				return req.KindOf() != keydesk.KindRevoke && req.KeyRef() == ref
			})
			switch {
			case holder >= 0 && (k.MadeBy != keydesk.MadeByKeydesk || k.RequestID != r.reqs[holder].ID):
				t.Errorf("%s, made by %s, shows as made by %s %s", ref, r.reqs[holder].ID, k.MadeBy, k.RequestID)
			case holder < 0 && k.MadeBy != keydesk.MadeByPartner:
				t.Errorf("%s, the partner's own, shows as made by %s %s", ref, k.MadeBy, k.RequestID)
			}
		}
		for _, rv := range r.revocations {
			if rv.ref.Environment == env {
				if k := inv.Key(rv.ref.ID); k == nil || k.Live() {
					t.Errorf("revoked %s shows as %+v in the inventory", rv.ref, k)
				}
			}
		}
	}
}

// reconnect connects anew: an embedded server started again may not
// answer a connection made before. On failure it keeps q.
func (r *chaosRun) reconnect(ctx context.Context, q *queue.Conn) *queue.Conn {
	nq, err := queue.Open(ctx, chaosQueueOptions(r.s, r.embeddedNATS))
	if err != nil {
		return q
	}
	_ = q.Close()
	r.t.Cleanup(func() { _ = nq.Close() })
	return nq
}
