package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review"
)

// pickFailpoint decides whether a start is armed with a failpoint, and
// which.
func (r *chaosRun) pickFailpoint() string {
	if r.rng.IntN(5) >= 2 {
		return ""
	}
	return fmt.Sprintf("%s:%d", failpointSteps[r.rng.IntN(len(failpointSteps))], 1+r.rng.IntN(3))
}

// pressRunBatch is a person pressing "Run batch now", on any instance,
// until ctx ends.
func (r *chaosRun) pressRunBatch(ctx context.Context) *sync.WaitGroup {
	var pokes sync.WaitGroup
	pokes.Go(func() {
		rng := rand.New(rand.NewPCG(r.s.seed, 2))
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(300+rng.IntN(1200)) * time.Millisecond):
			}
			in := r.ins[rng.IntN(len(r.ins))]
			r.statuses.record((&apiclient.Client{Base: "http://" + in.listen, Token: r.token, HC: &http.Client{Timeout: 20 * time.Second}}).Do(ctx, "POST", "/api/v1/batches", nil, nil))
		}
	})
	return &pokes
}

// approve is two people approving production requests, on any instance,
// until ctx ends.
func (r *chaosRun) approve(ctx context.Context) *sync.WaitGroup {
	var reviewers sync.WaitGroup
	reviewers.Go(func() {
		rng := rand.New(rand.NewPCG(r.s.seed, 3))
		hc := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(200+rng.IntN(600)) * time.Millisecond):
			}
			base := "http://" + r.ins[rng.IntN(len(r.ins))].listen
			var page review.RequestList
			if (&apiclient.Client{Base: base, Token: r.token, HC: hc}).Do(ctx, "GET", "/api/v1/requests?state=pending_review&limit=500", nil, &page) != nil {
				continue
			}
			for _, req := range page.Requests {
				for _, tok := range r.approvers {
					err := (&apiclient.Client{Base: base, Token: tok, HC: hc}).Do(ctx, "POST", "/api/v1/requests/"+req.ID+"/approve", nil, nil)
					if ctx.Err() == nil {
						r.statuses.record(err)
					}
				}
			}
		}
	})
	return &reviewers
}

// restart starts an instance again after a SIGKILL, its own or ours.
func (r *chaosRun) restart(ex chaosExit) {
	r.t.Helper()
	if !killed(ex.err) {
		r.t.Fatalf("%s ended other than by SIGKILL: %v (its log follows)", ex.in.name, ex.err)
	}
	r.kills++
	fp := ""
	if r.armed {
		fp = r.pickFailpoint()
	}
	ex.in.start(r.t, r.s.bin, fp, r.exits)
}

// kill kills an instance and starts it again; a failpoint that fires
// meanwhile elsewhere is handled as it would be on its own.
func (r *chaosRun) kill(in *chaosInstance) {
	r.t.Helper()
	victim := in.cmd
	_ = victim.Process.Signal(syscall.SIGKILL)
	for {
		ex := <-r.exits
		r.restart(ex)
		if ex.cmd == victim {
			return
		}
		r.selfKills++
	}
}

// faults makes each API slow, failing and losing answers, anew.
func (r *chaosRun) faults() {
	for _, env := range keydesk.Environments {
		f := r.apis[env].api
		f.Latency(time.Duration(r.rng.IntN(80)) * time.Millisecond)
		f.FailNext(r.rng.IntN(3), []int{500, 502, 503}[r.rng.IntN(3)])
		f.DropAfterCreate(r.rng.IntN(2))
	}
}

// chaos kills instances (and NATS nodes) until p.kills kills, delivering
// the rest of the mail between kills; it returns when it began.
func (r *chaosRun) chaos() time.Time {
	p, s := r.p, r.s
	r.faults()
	start := time.Now()
	for r.kills < p.kills {
		wait := p.gap/10 + time.Duration(r.rng.Int64N(int64(p.gap-p.gap/10)))
		select {
		case ex := <-r.exits: // a failpoint fired
			r.selfKills++
			r.restart(ex)
		case <-time.After(wait):
			switch {
			case r.nodeDown != "": // one NATS node down at a time: it comes back
				s.cluster.Restart(r.nodeDown)
				r.nodeDown = ""
			case s.cluster != nil && r.rng.IntN(3) == 0:
				r.nodeDown = s.cluster.Nodes[r.rng.IntN(len(s.cluster.Nodes))].Name
				s.cluster.Kill(r.nodeDown)
				r.nodeKills++
				continue
			}
			r.kill(r.ins[r.rng.IntN(len(r.ins))])
			r.faults()
			// More mail arrives between kills, so that intake works
			// throughout, not only at the start.
			if left := p.emails - r.sent; left > 0 {
				n := min(left, max(1, left/max(1, p.kills-r.kills)))
				r.deliver(r.emails[r.sent : r.sent+n])
			}
		}
	}
	r.deliver(r.emails[r.sent:])
	return start
}

// settle lets the system finish: no faults, no failpoint left armed, every
// node up; it waits until every request is delivered or refused and
// every instance ready, and returns the test's own queue connection.
func (r *chaosRun) settle() *queue.Conn {
	t, s := r.t, r.s
	if r.nodeDown != "" {
		s.cluster.Restart(r.nodeDown)
	}
	if s.cluster != nil {
		s.cluster.WaitHealthy(60 * time.Second)
	}
	for _, c := range r.apis {
		c.api.ClearFaults()
	}
	r.armed = false
	for _, in := range r.ins {
		if in.failpoint != "" {
			r.kill(in)
		}
	}
	q := openChaosQueue(t, s, r.embeddedNATS)
	wantRequests := 0
	for _, e := range r.emails {
		wantRequests += len(e.envs)
	}
	settleStart := time.Now()
	if err := testenv.Poll(r.p.settle, "every request delivered or refused, every instance ready", func() bool {
		return r.settled(q, wantRequests)
	}); err != nil {
		t.Errorf("%v: %s", err, demo.StateCounts(r.reqs))
	}
	r.settleTook = time.Since(settleStart)
	return q
}

// settled reports whether the inbox is empty, every instance ready and
// every request delivered or refused (at least want delivered).
func (r *chaosRun) settled(q *queue.Conn, want int) bool {
	select {
	case ex := <-r.exits:
		r.t.Fatalf("%s ended while settling: %v (its log follows)", ex.in.name, ex.err)
	default:
	}
	if n, err := r.imap.Count("INBOX"); err != nil || n > 0 {
		return false
	}
	for _, in := range r.ins { // every role of every instance at work
		resp, err := http.Get("http://" + in.listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
	}
	var err error
	r.reqs, err = q.List(context.Background(), queue.Filter{})
	if err != nil {
		return false
	}
	delivered := 0
	for _, req := range r.reqs {
		switch req.State {
		case keydesk.StateDelivered:
			delivered++
		case keydesk.StateRejected:
		default:
			return false
		}
	}
	return delivered >= want
}

// stop stops every instance cleanly, so that the stores are complete on
// disk.
func (r *chaosRun) stop() {
	for _, in := range r.ins {
		_ = in.cmd.Process.Signal(syscall.SIGTERM)
	}
	for range r.ins {
		select {
		case ex := <-r.exits:
			if ex.err != nil {
				r.t.Errorf("%s did not stop cleanly: %v", ex.in.name, ex.err)
			}
			ex.in.cmd = nil
		case <-time.After(time.Minute):
			r.t.Fatal("an instance still runs a minute after SIGTERM")
		}
	}
}

// writeMail writes the mail: requests for sandbox, production or both
// (one label, two keys), and a refused one now and then.
func (r *chaosRun) writeMail() {
	now := time.Now()
	for i := range r.p.emails {
		e := chaosEmail{label: fmt.Sprintf("svc-%03d", i)}
		scopes := "accounts:read, marketdata:read"
		var body string
		switch {
		case i%10 == 9:
			scopes = "accounts:read, trading:raed" // refused: not a scope
			body = "Environment: sandbox\n"
		case i%3 == 0:
			e.envs = []keydesk.Environment{keydesk.Sandbox, keydesk.Production}
			body = "Request 1\nEnvironment: sandbox\nScopes: " + scopes + "\nLabel: " + e.label +
				"\n\nRequest 2\nEnvironment: production\n"
		case i%2 == 0:
			e.envs = []keydesk.Environment{keydesk.Production}
			body = "Environment: production\n"
		default:
			e.envs = []keydesk.Environment{keydesk.Sandbox}
			body = "Environment: sandbox\n"
		}
		body += "Scopes: " + scopes + "\nLabel: " + e.label + "\n\nThanks,\nAda\n"
		id := fmt.Sprintf("chaos-%d-%03d", r.s.seed, i)
		e.messageID = "<" + id + "@mail.acme.example>"
		e.raw = []byte(demo.Message(now.Add(time.Duration(i)*time.Second), id, "Ada Lovelace <ada@acme.example>", "API key "+e.label, "", body))
		r.emails = append(r.emails, e)
	}
}

// deliver puts emails in the inbox; they are the next ones not yet sent.
func (r *chaosRun) deliver(es []chaosEmail) {
	for _, e := range es {
		if err := r.imap.Deliver("INBOX", e.raw); err != nil {
			r.t.Fatal(err)
		}
	}
	r.sent += len(es)
}
