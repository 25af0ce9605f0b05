package batch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
	"golang.org/x/time/rate"
)

const (
	managerKey    = "bm_key_acme_manager"
	managerSecret = "bm_secret_acme_manager"
	supportAddr   = "support@buildmarkets.example"
)

// harness is a batch against a real embedded JetStream, the API simulator
// over HTTP and the real OpenPGP sealer.
type harness struct {
	t   *testing.T
	ctx context.Context
	q   *queue.Conn
	api *fake.Server // sandbox
	url string
	// prod is the production API: another server whose accounts number
	// their keys on their own, so its key IDs collide with sandbox's.
	prod    *fake.Server
	prodURL string
	partner *keydesk.Partner
	reg     *keydesk.Registry
	signer  *crypto.Signer
	tpl     *templates.Set
	n       int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	api, url := newFakeAPI(t)
	prod, prodURL := newFakeAPI(t)
	p := cryptotest.Partner(t, crypto.Curve25519)
	h := &harness{t: t, ctx: ctx, q: queuetest.Open(t), api: api, url: url, prod: prod, prodURL: prodURL,
		partner: p, signer: cryptotest.Signer(t), tpl: templates.MustLoadEmbedded()}
	h.reg = &keydesk.Registry{Partners: []*keydesk.Partner{p}}
	return h
}

// newFakeAPI starts one environment's API simulator, with acme's manager
// key and a globex key without keys:manage.
func newFakeAPI(t *testing.T) (*fake.Server, string) {
	t.Helper()
	api, err := fake.New(fake.Options{Seed: &fake.Seed{Accounts: []fake.SeedAccount{
		{ID: "acme", ManagerKeys: []fake.SeedKey{{APIKey: managerKey, APISecret: managerSecret, Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}}},
		{ID: "globex", ManagerKeys: []fake.SeedKey{{APIKey: "bm_key_globex_reader", APISecret: "bm_secret_globex_reader", Scopes: []keydesk.Scope{"accounts:read"}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv.URL
}

// options are the runner's options with short back-offs for tests.
func (h *harness) options() batch.Options {
	return batch.Options{
		Queue: h.q, Partners: func() *keydesk.Registry { return h.reg },
		Accounts: batch.NewBMAPI(batch.BMAPIOptions{Envs: map[keydesk.Environment]batch.APIEnv{
			keydesk.Sandbox:    {BaseURL: h.url, Timeout: 5 * time.Second},
			keydesk.Production: {BaseURL: h.prodURL, Timeout: 5 * time.Second, Limiter: rate.NewLimiter(100, 1)},
		}}),
		Classify: batch.ClassifyBMAPI, Sealer: &batch.PGPSealer{Signer: h.signer, Templates: h.tpl}, Templates: h.tpl,
		SupportAddress: supportAddr, Holder: "test-instance", Backoff: 10 * time.Millisecond, MaxBackoff: 2 * time.Second,
		LeaseTTL: 3 * time.Second,
	}
}

// run runs r until the test ends, and then expects it to stop because
// it was cancelled.
func (h *harness) run(r *batch.Runner) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			h.t.Errorf("Run returned %v, want it cancelled", err)
		}
	})
}

func (h *harness) runner(mod func(*batch.Options)) *batch.Runner {
	h.t.Helper()
	o := h.options()
	if mod != nil {
		mod(&o)
	}
	r, err := batch.New(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// request stores a request in state (approved unless given).
func (h *harness) request(label string, mod func(*keydesk.Request)) *keydesk.Request {
	h.t.Helper()
	h.n++
	r := &keydesk.Request{
		State: keydesk.StateApproved, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{"accounts:read", "trading:read"}, Label: label, Requester: "cto@acme.example",
		SourceMessageID: fmt.Sprintf("<m%d@acme.example>", h.n), SourceKey: fmt.Sprintf("cto@acme.example\x00m%d", h.n),
		SourceDate: time.Now(), Subject: "API key please",
	}
	if mod != nil {
		mod(r)
	}
	stored, _, err := h.q.Create(h.ctx, r, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	return stored
}

func (h *harness) get(id string) *keydesk.Request {
	h.t.Helper()
	r, err := h.q.Get(h.ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// outbox returns every message in the outbox, in order.
func (h *harness) outbox() []*keydesk.Outgoing {
	h.t.Helper()
	out, err := h.q.Outbox(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func kind(msgs []*keydesk.Outgoing, k keydesk.MessageKind) []*keydesk.Outgoing {
	var out []*keydesk.Outgoing
	for _, m := range msgs {
		if m.Kind == k {
			out = append(out, m)
		}
	}
	return out
}

// liveKeyIDs lists the keys keydesk made that still work, per the simulator.
func (h *harness) liveKeyIDs(account string) []string {
	var ids []string
	for _, k := range h.api.LiveKeys(account) {
		ids = append(ids, k.ID)
	}
	slices.Sort(ids)
	return ids
}

func (h *harness) revokedKeyIDs(account string) []string {
	var ids []string
	for _, k := range h.api.Keys(account) {
		if k.Revoked {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

func (h *harness) batchRecord(id string) *keydesk.Batch {
	h.t.Helper()
	b, err := h.q.GetBatch(h.ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// fakeClock is a Clock a test moves by hand.
type fakeClock = testenv.Clock

func newFakeClock(t time.Time) *fakeClock { return testenv.NewClock(t) }

func newLimiter(rps float64) *rate.Limiter { return rate.NewLimiter(rate.Limit(rps), 1) }
