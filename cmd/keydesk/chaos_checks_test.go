package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/internal/demo"
)

// checkFiled: every email filed exactly once.
func (r *chaosRun) checkFiled() {
	filed := map[string][]string{}
	for _, folder := range []string{"INBOX", "Processed", "Rejected"} {
		for _, id := range maildirMessageIDs(r.t, r.imap.FolderDir(folder)) {
			filed[id] = append(filed[id], folder)
		}
	}
	for _, e := range r.emails {
		if f := filed[e.messageID]; len(f) != 1 || f[0] == "INBOX" {
			r.t.Errorf("email %s is in %v, want in Processed or Rejected once", e.messageID, f)
		}
	}
}

// checkDelivered: every request delivered exactly once, one key delivery
// (one Message-ID; a copy resent after a crash between the server's
// answer and the sent mark carries the same one) of the request's own
// attempt. It returns the requests delivered, the key deliveries by
// request and Message-ID, and the copies sent.
func (r *chaosRun) checkDelivered() (delivered int, deliveries map[string]map[string]int, copies int) {
	t := r.t
	bySource := map[string][]*keydesk.Request{}
	for _, req := range r.reqs {
		src := strings.Trim(req.SourceMessageID, "<>")
		bySource[src] = append(bySource[src], req)
		if r.wasDelivered(req) {
			delivered++
		}
	}
	for _, e := range r.emails {
		var got []string
		for _, req := range bySource[strings.Trim(e.messageID, "<>")] {
			if r.wasDelivered(req) {
				got = append(got, string(req.Environment))
			}
		}
		slices.Sort(got)
		want := []string{}
		for _, env := range e.envs {
			want = append(want, string(env))
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("email %s: delivered requests for %v, want %v", e.messageID, got, want)
		}
	}
	deliveries, copies = r.keyDeliveries()
	r.checkDeliveryPerRequest(deliveries)
	return delivered, deliveries, copies
}

// keyDeliveries counts the key deliveries in the sink: request →
// Message-ID → copies, and the copies in all.
func (r *chaosRun) keyDeliveries() (map[string]map[string]int, int) {
	deliveries := map[string]map[string]int{}
	copies := 0
	for _, m := range r.sink.Messages() {
		if kind, msg := demo.MailKind(m.Data); kind == "key delivery" {
			mid, _, _ := strings.Cut(strings.Trim(msg.Header.Get("Message-ID"), "<>"), "@")
			rid, _, _ := strings.Cut(mid, ".key.")
			if deliveries[rid] == nil {
				deliveries[rid] = map[string]int{}
			}
			deliveries[rid][mid]++
			copies++
		}
	}
	return deliveries, copies
}

// checkDeliveryPerRequest: a delivered request got one key delivery, of
// its attempt; any other request none; none went to no request.
func (r *chaosRun) checkDeliveryPerRequest(deliveries map[string]map[string]int) {
	byID := map[string]*keydesk.Request{}
	for _, req := range r.reqs {
		byID[req.ID] = req
		if !r.wasDelivered(req) {
			if len(deliveries[req.ID]) > 0 {
				r.t.Errorf("request %s (%s) got a key delivery", req.ID, req.State)
			}
			continue
		}
		ids := deliveries[req.ID]
		if len(ids) != 1 || req.Attempt == nil || ids[req.ID+".key."+req.Attempt.ID] == 0 {
			r.t.Errorf("request %s (%s, %s): key deliveries %v, want one, of its attempt", req.ID, req.Environment, req.Label, ids)
		}
	}
	for rid := range deliveries {
		if byID[rid] == nil {
			r.t.Errorf("a key delivery for %s, which is no request", rid)
		}
	}
}

// checkKeys: one live key per delivered request, in its own environment,
// and every live key is one a delivered request holds and sent. It
// returns the live keys and the keys made.
func (r *chaosRun) checkKeys() (live, made int) {
	for _, env := range keydesk.Environments {
		keys := r.apis[env].api.LiveKeys("acme")
		live += len(keys)
		for _, k := range r.apis[env].api.Keys("acme") {
			if !k.Seeded {
				made++
			}
		}
		byLabel := map[string][]string{}
		for _, k := range keys {
			if slices.Contains(r.partnerKeys[env], k.ID) {
				continue // the partner's own (checkKeyLife)
			}
			byLabel[k.Label] = append(byLabel[k.Label], k.ID)
			ok := slices.ContainsFunc(r.reqs, func(req *keydesk.Request) bool {
				return req.State == keydesk.StateDelivered && req.Environment == env && req.KeyID == k.ID && req.APIKey == k.APIKey
			})
			if !ok {
				r.t.Errorf("live key (acme, %s, %s) %q is held by no delivered request", env, k.ID, k.Label)
			}
		}
		for _, req := range r.reqs {
			if req.State == keydesk.StateDelivered && req.Environment == env && len(byLabel[req.Label]) != 1 {
				r.t.Errorf("request %s (%s, %s) has live keys %v, want exactly one", req.ID, env, req.Label, byLabel[req.Label])
			}
		}
	}
	return live, made
}

// checkNoSecretAtRest: no secret in any store, spool or log, nor in the
// mail as sent. It returns the secrets searched for and the places
// searched.
func (r *chaosRun) checkNoSecretAtRest(delivered int) (secrets [][]byte, places map[string][]byte) {
	t := r.t
	for _, env := range keydesk.Environments {
		secrets = append(secrets, r.apis[env].created()...)
		secrets = append(secrets, []byte(r.managers[env].APISecret))
	}
	anySecret := regexp.MustCompile(`bm_secret_[A-Za-z0-9_]{8,}`)
	// The search finds what it looks for where a secret belongs (the
	// managers' credentials in partners.yaml), and the tap saw every key
	// delivered: a miss below is an absence.
	if pf, err := os.ReadFile(filepath.Join(r.dir, "partners.yaml")); err != nil || !anySecret.Match(pf) || !bytes.Contains(pf, secrets[len(secrets)-1]) {
		t.Errorf("the secret search does not find the manager's secret in partners.yaml (%v)", err)
	}
	if n := len(secrets) - len(keydesk.Environments); n < delivered {
		t.Errorf("the tap saw %d secrets handed out, fewer than the %d keys delivered", n, delivered)
	}
	places = map[string][]byte{}
	for _, in := range r.ins {
		places[in.name+" log"] = []byte(in.logs.String())
		readTree(t, in.dataDir, places)
	}
	if r.s.cluster != nil {
		readTree(t, r.s.cluster.Dir(), places)
	}
	for i, m := range r.sink.Messages() {
		places[fmt.Sprintf("sent mail %d", i)] = m.Data
	}
	for where, b := range places {
		if m := anySecret.Find(b); m != nil {
			t.Errorf("a secret (%.14s…) is at rest in %s", m, where)
		}
		for _, sec := range secrets {
			if bytes.Contains(b, sec) {
				t.Errorf("a secret the API handed out is at rest in %s", where)
			}
		}
	}
	return secrets, places
}

// checkStaffAndStarts: staff never got a 500 (a 503 is the answer while
// the cluster has no leader), no batch a person asked for failed because
// another instance held the batch lease, and every start served /healthz
// within 2 s, however NATS was doing.
func (r *chaosRun) checkStaffAndStarts() {
	t := r.t
	r.statuses.mu.Lock()
	if n := r.statuses.n["500"]; n > 0 {
		t.Errorf("the API answered 500 %d times: %v", n, r.statuses.n)
	}
	statusSummary := fmt.Sprint(r.statuses.n)
	r.statuses.mu.Unlock()
	for _, b := range r.batches {
		if b.State == keydesk.BatchFailed && strings.Contains(b.Error, "another batch is running") {
			t.Errorf("batch %s (%s by %s) failed for the lease: %s", b.ID, b.Trigger, b.By, b.Error)
		}
	}
	var slowHealth, slowReady time.Duration
	starts := 0
	for _, in := range r.ins {
		in.mu.Lock()
		for _, d := range in.healthy {
			slowHealth = max(slowHealth, d)
			if d > 2*time.Second {
				t.Errorf("%s served /healthz %s after a start, want within 2s", in.name, d.Round(time.Millisecond))
			}
		}
		for _, d := range in.ready {
			slowReady = max(slowReady, d)
		}
		starts += in.starts
		in.mu.Unlock()
	}
	t.Logf("starts %d, slowest start to /healthz %s, to /readyz %s; NATS nodes killed %d; batches %d; API answers %s",
		starts, slowHealth.Round(time.Millisecond), slowReady.Round(time.Millisecond), r.nodeKills, len(r.batches), statusSummary)
}

// summary is what the checks counted, for the run's closing lines.
type summary struct {
	delivered, copies, live, made int
	deliveries                    map[string]map[string]int
	secrets                       [][]byte
	places                        map[string][]byte
}

// logSummary logs what the run did and what the APIs saw.
func (r *chaosRun) logSummary(s summary) {
	t := r.t
	st := map[keydesk.Environment]fake.Stats{}
	for _, env := range keydesk.Environments {
		st[env] = r.apis[env].api.Stats()
	}
	t.Logf("chaos %s: %d kills survived (%d by failpoints), chaos %s, settled in %s", t.Name(), r.kills, r.selfKills,
		r.chaosTook.Round(time.Second), r.settleTook.Round(time.Second))
	t.Logf("emails %d, requests %d (%d delivered), key deliveries %d (%d copies sent), keys made %d, live %d, secrets handed out %d, places searched %d",
		len(r.emails), len(r.reqs), s.delivered, len(s.deliveries), s.copies, s.made, s.live, len(s.secrets)-len(keydesk.Environments), len(s.places))
	for _, env := range keydesk.Environments {
		t.Logf("API %s: %+v", env, st[env])
	}
}

// wasDelivered reports whether req is an issue request that was
// delivered: delivered still, or revoked since by a revocation the test
// asked for.
func (r *chaosRun) wasDelivered(req *keydesk.Request) bool {
	if req.KindOf() == keydesk.KindRevoke {
		return false
	}
	return req.State == keydesk.StateDelivered ||
		req.State == keydesk.StateRevoked && slices.ContainsFunc(r.revocations, func(rv chaosRevocation) bool { return rv.ref == req.KeyRef() })
}
