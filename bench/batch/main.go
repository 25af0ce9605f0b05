// Command batch measures a batch run: N approved requests against the API
// simulator with a per-call latency and a rate limit, on a real embedded
// JetStream with real OpenPGP sealing. It prints the wall time and its
// ratio to N/rate (the floor any client that respects the limit has), the
// calls the API refused for rate, and duplicates: requests that ended with
// more than one live key (must be 0).
//
//	go run ./bench/batch -n 1000 -rate 50 -latency 20ms
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"golang.org/x/time/rate"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/batch"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

func main() {
	n := flag.Int("n", 1000, "approved requests")
	rps := flag.Float64("rate", 50, "api.sandbox.rate_limit (requests per second)")
	latency := flag.Duration("latency", 20*time.Millisecond, "simulator latency per call")
	concurrency := flag.Int("concurrency", 8, "batch.concurrency")
	partners := flag.Int("partners", 4, "partners sharing the environment's limit")
	goal := flag.Float64("goal", 1.10, "highest acceptable ratio of wall time to N/rate")
	flag.Parse()
	if err := run(*n, *rps, *latency, *concurrency, *partners, *goal); err != nil {
		fmt.Fprintln(os.Stderr, "bench/batch:", err)
		os.Exit(1)
	}
}

func run(n int, rps float64, latency time.Duration, concurrency, nPartners int, goal float64) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keydesk-bench-batch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	q, err := queue.Open(ctx, queue.Options{DataDir: dir})
	if err != nil {
		return err
	}
	defer q.Close()

	seed, reg, signer, err := partners(nPartners)
	if err != nil {
		return err
	}
	// The simulator refuses calls above the rate (429), so a client that
	// does not pace itself shows here.
	api, err := fake.New(fake.Options{Seed: seed, Latency: latency, RateLimit: rps})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(api)
	defer srv.Close()

	if err := createApproved(ctx, q, reg, n); err != nil {
		return err
	}
	tpl := templates.MustLoadEmbedded()
	r, err := batch.New(batch.Options{
		Queue: q, Partners: func() *keydesk.Registry { return reg },
		Accounts: batch.NewBMAPI(batch.BMAPIOptions{Envs: map[keydesk.Environment]batch.APIEnv{
			keydesk.Sandbox: {BaseURL: srv.URL, Timeout: 10 * time.Second, Limiter: rate.NewLimiter(rate.Limit(rps), 1)},
		}}),
		Classify: batch.ClassifyBMAPI, Sealer: &batch.PGPSealer{Signer: signer, Templates: tpl}, Templates: tpl,
		Concurrency: concurrency, SupportAddress: "support@bench.example", Holder: "bench",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	start := time.Now()
	b, err := r.RunNow(ctx, "manual", "bench")
	if err != nil {
		return err
	}
	wall := time.Since(start)
	floor := time.Duration(float64(n) / rps * float64(time.Second))
	ratio := wall.Seconds() / floor.Seconds()
	live, dups := liveKeys(api, reg)

	st := api.Stats()
	fmt.Printf("requests:        %d (%d partners, one limiter for the environment)\n", n, nPartners)
	fmt.Printf("rate limit:      %.0f/s, simulator latency %s, concurrency %d\n", rps, latency, concurrency)
	fmt.Printf("outcomes:        %v\n", b.Counts)
	fmt.Printf("wall time:       %.2fs\n", wall.Seconds())
	fmt.Printf("N/rate:          %.2fs\n", floor.Seconds())
	fmt.Printf("ratio:           %.3f (goal <= %.2f)\n", ratio, goal)
	fmt.Printf("429 answers:     %d\n", st.RateLimited)
	fmt.Printf("live keys:       %d\n", live)
	fmt.Printf("duplicates:      %d\n", dups)
	if b.Counts[batch.OutcomeGenerated] != n || live != n || dups != 0 {
		return fmt.Errorf("not every request got exactly one key")
	}
	if ratio > goal {
		return fmt.Errorf("ratio %.3f is above the goal %.2f", ratio, goal)
	}
	return nil
}

// partners makes n partners sharing one technical contact's key, their
// manager keys in the simulator's seed, and the signer of the mail.
func partners(n int) (*fake.Seed, *keydesk.Registry, *crypto.Signer, error) {
	seed := &fake.Seed{}
	reg := &keydesk.Registry{}
	_, contactPub, contactFP, err := crypto.GenerateKey("Bench Contact", "sec@bench.example", crypto.Curve25519, []byte("x"))
	if err != nil {
		return nil, nil, nil, err
	}
	signerPriv, _, _, err := crypto.GenerateKey("keydesk bench", "keydesk@bench.example", crypto.Curve25519, []byte("bench"))
	if err != nil {
		return nil, nil, nil, err
	}
	signer, err := crypto.NewSigner([]byte(signerPriv), []byte("bench"), time.Now())
	if err != nil {
		return nil, nil, nil, err
	}
	for i := range n {
		id := fmt.Sprintf("partner%d", i)
		key, secret := "bm_key_"+id+"_mgr", "bm_secret_"+id+"_mgr"
		seed.Accounts = append(seed.Accounts, fake.SeedAccount{ID: id, ManagerKeys: []fake.SeedKey{{APIKey: key, APISecret: secret, Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}}})
		reg.Partners = append(reg.Partners, &keydesk.Partner{
			ID: id, Name: "Partner " + id,
			TechnicalContact: keydesk.TechnicalContact{Email: "sec@" + id + ".example", Fingerprint: contactFP, ArmoredKey: contactPub},
			Environments:     map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {APIKey: key, APISecret: keydesk.SecretString(secret)}},
		})
	}
	return seed, reg, signer, nil
}

// createApproved queues n approved requests, spread over the partners.
func createApproved(ctx context.Context, q *queue.Conn, reg *keydesk.Registry, n int) error {
	fmt.Printf("creating %d approved requests...\n", n)
	for i := range n {
		_, _, err := q.Create(ctx, &keydesk.Request{
			State: keydesk.StateApproved, Partner: reg.Partners[i%len(reg.Partners)].ID, Environment: keydesk.Sandbox,
			Scopes: []keydesk.Scope{"accounts:read", "trading:read"}, Label: fmt.Sprintf("bench-%05d", i),
			Requester: "cto@bench.example", SourceKey: fmt.Sprintf("bench-%d", i), SourceDate: time.Now(), Index: i,
		}, "bench")
		if err != nil {
			return err
		}
	}
	return nil
}

// liveKeys counts the simulator's live keys, and the duplicates among
// them: keys beyond the first for one label.
func liveKeys(api *fake.Server, reg *keydesk.Registry) (live, dups int) {
	for _, p := range reg.Partners {
		perLabel := map[string]int{}
		for _, k := range api.LiveKeys(p.ID) {
			perLabel[k.Label]++
			live++
		}
		for _, c := range perLabel {
			if c > 1 {
				dups += c - 1
			}
		}
	}
	return live, dups
}
