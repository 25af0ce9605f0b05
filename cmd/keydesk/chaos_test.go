package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/buildmarkets/keydesk/internal/demo"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/natstest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/review"
)

var (
	chaosSeed = flag.Uint64("chaos.seed", 0, "seed of TestChaos's decisions (0: from the clock); a failing run logs its seed")
	chaosLong = flag.Bool("chaos.long", false, "run TestChaos longer: more mail, more kills (make chaos)")
)

// chaosParams size a chaos run.
type chaosParams struct {
	emails int           // request emails, half of them waiting in the inbox at start
	kills  int           // SIGKILLs per scenario, failpoints included
	gap    time.Duration // longest pause between two kills (the shortest is a tenth of it)
	settle time.Duration // how long the system has to finish once the chaos stops
}

var (
	chaosBounded = chaosParams{emails: 30, kills: 10, gap: 3 * time.Second, settle: 90 * time.Second}
	chaosLonger  = chaosParams{emails: 200, kills: 40, gap: 4 * time.Second, settle: 5 * time.Minute}
)

// failpointSteps are the batch steps at which KEYDESK_FAILPOINT kills.
var failpointSteps = []string{"after-generating", "after-create", "after-seal", "after-enqueue", "after-generated"}

// TestChaos runs the real binary with every role and kills it, again and
// again, while it works through a mailbox and its batches against an API
// that is slow, fails and loses answers: once with the embedded NATS
// server, once as two instances sharing a 3-node cluster. The sandbox and
// production APIs are separate servers that both number their keys from
// key-001, as the real API does per account and environment. When the
// chaos stops and the system has settled, what a partner and an auditor
// would check must hold: every email filed once, every request delivered
// once, one live key per request and every live key delivered, and no
// secret in any store, log or email.
//
// Its decisions (kill times, failpoints, faults, new mail) come from one
// seeded generator; the seed is logged, and -chaos.seed replays the same
// decisions (timing still varies). -chaos.long (make chaos) runs longer.
func TestChaos(t *testing.T) {
	testenv.Short(t)
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	dovecot := testenv.LookPath(t, "dovecot", "dovecot-imapd")
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	p := chaosBounded
	if *chaosLong {
		p = chaosLonger
	}
	t.Logf("chaos seed %d: replay with -run TestChaos -chaos.seed %d (make chaos CHAOS_SEED=%d)", seed, seed, seed)
	t.Run("embedded", func(t *testing.T) {
		runChaos(t, chaosSetup{bin: bin, dovecot: dovecot, seed: seed, p: p, instances: 1})
	})
	t.Run("cluster", func(t *testing.T) {
		tlsDir := t.TempDir()
		if err := natstest.WriteCerts(tlsDir, natstest.CertOptions{}); err != nil {
			t.Fatal(err)
		}
		c := natstest.StartCluster(t, natstest.ClusterOptions{ConfigDir: "../../deploy/nats", TLSDir: tlsDir})
		runChaos(t, chaosSetup{bin: bin, dovecot: dovecot, seed: seed + 1, p: p, instances: 2, cluster: c, tlsDir: tlsDir})
	})
}

// chaosSetup is one scenario.
type chaosSetup struct {
	bin, dovecot string
	seed         uint64
	p            chaosParams
	instances    int
	cluster      *natstest.Cluster // nil: the embedded server
	tlsDir       string
}

// chaosAPI is one environment's simulator, behind a tap that keeps, in
// test memory only, every secret it hands out: the secrets to search for.
type chaosAPI struct {
	api *fake.Server
	url string

	mu      sync.Mutex
	secrets [][]byte
}

func (c *chaosAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/keys" {
		c.api.ServeHTTP(w, r)
		return
	}
	tw := &tapWriter{ResponseWriter: w}
	c.api.ServeHTTP(tw, r)
	var k struct {
		APISecret string `json:"api_secret"`
	}
	if tw.status == http.StatusCreated && json.Unmarshal(tw.body.Bytes(), &k) == nil && k.APISecret != "" {
		c.mu.Lock()
		c.secrets = append(c.secrets, []byte(k.APISecret))
		c.mu.Unlock()
	}
}

func (c *chaosAPI) created() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.secrets)
}

// tapWriter copies an answer as it is written; Unwrap lets the simulator
// still drop the connection (http.ResponseController).
type tapWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *tapWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *tapWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}
func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// chaosEmail is one request email and what it asks for.
type chaosEmail struct {
	messageID string
	raw       []byte
	envs      []keydesk.Environment // one request per environment; none for a refused email
	label     string
}

// chaosInstance is one `keydesk serve` process, started again after each kill.
type chaosInstance struct {
	name, cfg, dataDir, listen string
	logs                       *testenv.Buffer

	cmd       *exec.Cmd
	failpoint string
	starts    int

	// Per start that lived long enough: how long until /healthz and
	// /readyz first answered 200.
	mu             sync.Mutex
	healthy, ready []time.Duration
}

// watchStart times one start of the instance: the first 200 of /healthz,
// then of /readyz, until the process ends.
func (in *chaosInstance) watchStart(started time.Time, dead <-chan struct{}) {
	hc := &http.Client{Timeout: time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		for {
			select {
			case <-dead:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := hc.Get("http://" + in.listen + path)
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		in.mu.Lock()
		if path == "/healthz" {
			in.healthy = append(in.healthy, time.Since(started))
		} else {
			in.ready = append(in.ready, time.Since(started))
		}
		in.mu.Unlock()
	}
}

// chaosExit is an instance's process ending.
type chaosExit struct {
	in  *chaosInstance
	cmd *exec.Cmd
	err error
}

func (in *chaosInstance) start(t *testing.T, bin, failpoint string, exits chan<- chaosExit) {
	t.Helper()
	in.starts++
	fmt.Fprintf(in.logs, "--- %s start %d (failpoint %q)\n", in.name, in.starts, failpoint)
	cmd := exec.Command(bin, "serve", "--config", in.cfg)
	cmd.Env = append(os.Environ(), failpointEnv+"="+failpoint)
	cmd.Stdout, cmd.Stderr = in.logs, in.logs
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.cmd, in.failpoint = cmd, failpoint
	dead := make(chan struct{})
	go in.watchStart(started, dead)
	go func() {
		err := cmd.Wait()
		close(dead)
		exits <- chaosExit{in: in, cmd: cmd, err: err}
	}()
}

// apiStatuses counts the answers staff got from the API during the chaos.
type apiStatuses struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *apiStatuses) record(err error) {
	k := "2xx"
	var ae *apiclient.Error
	switch {
	case errors.As(err, &ae):
		k = fmt.Sprint(ae.Status)
	case err != nil:
		k = "unreachable" // the instance was down
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[k]++
}

// killed reports whether err is the end of a process by SIGKILL.
func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func runChaos(t *testing.T, s chaosSetup) {
	rng := rand.New(rand.NewPCG(s.seed, 0x6b657964657368))
	dir := t.TempDir()
	p := s.p

	// The world: Dovecot, the SMTP sink, and one simulator per environment,
	// each with the partner's account, so both number keys from key-001.
	imap, err := dovecottest.New(dovecottest.Options{Dovecot: s.dovecot})
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() { _ = imap.Close() })
	sink, err := demo.StartSink(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	apis := map[keydesk.Environment]*chaosAPI{}
	managers := map[keydesk.Environment]fake.SeedKey{}
	for _, env := range keydesk.Environments {
		mgr := fake.SeedKey{APIKey: "bm_key_acme_" + string(env), APISecret: "bm_secret_acme_" + string(env) + "_" + demo.RandHex(8),
			Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}
		api, err := fake.New(fake.Options{Seed: &fake.Seed{Accounts: []fake.SeedAccount{{ID: "acme", ManagerKeys: []fake.SeedKey{mgr}}}}})
		if err != nil {
			t.Fatal(err)
		}
		c := &chaosAPI{api: api}
		srv := httptest.NewServer(c)
		t.Cleanup(srv.Close)
		c.url = srv.URL
		apis[env], managers[env] = c, mgr
	}

	// Keys, partners, staff and one config per instance.
	contact := cryptotest.Contact(t, crypto.Curve25519)
	signing := cryptotest.SigningKey(t)
	cryptotest.WriteFile(t, dir, "acme.asc", contact.Public)
	cryptotest.WriteFile(t, dir, "signing.asc", signing.Private)
	cryptotest.WriteFile(t, dir, "partners.yaml", fmt.Sprintf(`partners:
  - id: acme
    name: Acme Capital
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: %q}
    environments:
      sandbox: {api_key: %q, api_secret: %q, auto_approve: true}
      production: {api_key: %q, api_secret: %q}
`, contact.Fingerprint, managers[keydesk.Sandbox].APIKey, managers[keydesk.Sandbox].APISecret,
		managers[keydesk.Production].APIKey, managers[keydesk.Production].APISecret))
	token := addUser(t, filepath.Join(dir, "users.yaml"), "ada", "admin")
	// Production needs two approvers (review.four_eyes).
	approvers := []string{addUser(t, filepath.Join(dir, "users.yaml"), "alice", "approver"),
		addUser(t, filepath.Join(dir, "users.yaml"), "bob", "approver")}
	embeddedNATS := freeAddr(t)
	var ins []*chaosInstance
	for i := range s.instances {
		in := &chaosInstance{name: fmt.Sprintf("keydesk-%d", i+1), listen: freeAddr(t), logs: &testenv.Buffer{}}
		in.dataDir = filepath.Join(dir, in.name+"-data")
		nats := fmt.Sprintf("{url: \"\", listen: %q}", embeddedNATS)
		if s.cluster != nil {
			nats = fmt.Sprintf("{url: %q, replicas: 3, tls_ca_file: %q, tls_cert: %q, tls_key: %q}", s.cluster.URLs(),
				filepath.Join(s.tlsDir, "ca.pem"), filepath.Join(s.tlsDir, "admin.pem"), filepath.Join(s.tlsDir, "admin-key.pem"))
		}
		in.cfg = cryptotest.WriteFile(t, dir, in.name+".yaml", fmt.Sprintf(`data_dir: %s
nats: %s
imap: {address: %q, security: none, username: %q, password: %q, poll_interval: 1s, timeout: 10s, lease_ttl: 2s}
smtp: {address: %q, security: none, auth: none, from: %q, support_address: %s, helo_name: keydesk.test, timeout: 10s}
api:
  sandbox: {base_url: %q, timeout: 2s, rate_limit: 100}
  production: {base_url: %q, timeout: 2s, rate_limit: 100}
signing_key: {file: signing.asc, passphrase: %q}
sender_auth: {trusted_authserv_ids: [%s], require_dmarc: true, internal_domains: [%s]}
batch: {schedule: "@every 4s", concurrency: 4, lease_ttl: 2s}
review: {listen: %q, users_file: users.yaml}
delivery: {retry_for: 1h, revoke_undelivered_after: 1h, ack_wait: 5s}
log: {level: debug, format: json}
partners_file: partners.yaml
`, in.dataDir, nats, imap.Addr, imap.User, imap.Password, sink.Addr, demo.From, demo.Support,
			apis[keydesk.Sandbox].url, apis[keydesk.Production].url, cryptotest.Passphrase, demo.Authserv, demo.Domain, in.listen))
		ins = append(ins, in)
	}
	artifacts := t.ArtifactDir()
	t.Cleanup(func() {
		for _, in := range ins {
			if in.cmd != nil {
				_ = in.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			for _, in := range ins {
				if err := os.WriteFile(filepath.Join(artifacts, in.name+".log"), []byte(in.logs.String()), 0o600); err == nil {
					t.Logf("%s's whole log: %s (kept with go test -artifacts)", in.name, filepath.Join(artifacts, in.name+".log"))
				}
			}
			for _, in := range ins {
				// What the roles did, without the poller's debug lines.
				var l []string
				for line := range strings.Lines(in.logs.String()) {
					if !strings.Contains(line, `"level":"DEBUG"`) {
						l = append(l, line)
					}
				}
				all := strings.Join(l, "")
				t.Logf("--- %s log, debug lines left out (last 16 KiB):\n%s", in.name, all[max(0, len(all)-16384):])
			}
		}
	})

	// The mail: requests for sandbox, production or both (one label, two
	// keys), and a refused one now and then. Half wait in the inbox.
	var emails []chaosEmail
	now := time.Now()
	for i := range p.emails {
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
		id := fmt.Sprintf("chaos-%d-%03d", s.seed, i)
		e.messageID = "<" + id + "@mail.acme.example>"
		e.raw = []byte(demo.Message(now.Add(time.Duration(i)*time.Second), id, "Ada Lovelace <ada@acme.example>", "API key "+e.label, "", body))
		emails = append(emails, e)
	}
	deliver := func(es []chaosEmail) {
		for _, e := range es {
			if err := imap.Deliver("INBOX", e.raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	sent := p.emails / 2
	deliver(emails[:sent])

	// Chaos: one loop takes every decision from rng, in order.
	exits := make(chan chaosExit, 8)
	pickFailpoint := func() string {
		if rng.IntN(5) >= 2 {
			return ""
		}
		return fmt.Sprintf("%s:%d", failpointSteps[rng.IntN(len(failpointSteps))], 1+rng.IntN(3))
	}
	for _, in := range ins {
		in.start(t, s.bin, pickFailpoint(), exits)
	}
	chaosCtx, stopChaos := context.WithCancel(context.Background())
	defer stopChaos()
	var statuses apiStatuses
	var pokes sync.WaitGroup
	pokes.Add(1)
	go func() { // a person pressing "Run batch now", on any instance
		defer pokes.Done()
		r := rand.New(rand.NewPCG(s.seed, 2))
		for {
			select {
			case <-chaosCtx.Done():
				return
			case <-time.After(time.Duration(300+r.IntN(1200)) * time.Millisecond):
			}
			in := ins[r.IntN(len(ins))]
			statuses.record((&apiclient.Client{Base: "http://" + in.listen, Token: token, HC: &http.Client{Timeout: 20 * time.Second}}).Do(chaosCtx, "POST", "/api/v1/batches", nil, nil))
		}
	}()
	// Two people approving production requests, on any instance, until
	// the end.
	reviewCtx, stopReview := context.WithCancel(context.Background())
	defer stopReview()
	var reviewers sync.WaitGroup
	reviewers.Add(1)
	go func() {
		defer reviewers.Done()
		r := rand.New(rand.NewPCG(s.seed, 3))
		hc := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-reviewCtx.Done():
				return
			case <-time.After(time.Duration(200+r.IntN(600)) * time.Millisecond):
			}
			base := "http://" + ins[r.IntN(len(ins))].listen
			var page review.RequestList
			if (&apiclient.Client{Base: base, Token: token, HC: hc}).Do(reviewCtx, "GET", "/api/v1/requests?state=pending_review&limit=500", nil, &page) != nil {
				continue
			}
			for _, req := range page.Requests {
				for _, tok := range approvers {
					err := (&apiclient.Client{Base: base, Token: tok, HC: hc}).Do(reviewCtx, "POST", "/api/v1/requests/"+req.ID+"/approve", nil, nil)
					if reviewCtx.Err() == nil {
						statuses.record(err)
					}
				}
			}
		}
	}()
	var kills, selfKills int
	armed := true // failpoints are set on restarts
	// restart starts an instance again after a SIGKILL, its own or ours.
	restart := func(ex chaosExit) {
		t.Helper()
		if !killed(ex.err) {
			t.Fatalf("%s ended other than by SIGKILL: %v (its log follows)", ex.in.name, ex.err)
		}
		kills++
		fp := ""
		if armed {
			fp = pickFailpoint()
		}
		ex.in.start(t, s.bin, fp, exits)
	}
	// kill kills an instance and starts it again; a failpoint that fires
	// meanwhile elsewhere is handled as it would be on its own.
	kill := func(in *chaosInstance) {
		t.Helper()
		victim := in.cmd
		_ = victim.Process.Signal(syscall.SIGKILL)
		for {
			ex := <-exits
			restart(ex)
			if ex.cmd == victim {
				return
			}
			selfKills++
		}
	}
	faults := func() {
		for _, env := range keydesk.Environments {
			f := apis[env].api
			f.Latency(time.Duration(rng.IntN(80)) * time.Millisecond)
			f.FailNext(rng.IntN(3), []int{500, 502, 503}[rng.IntN(3)])
			f.DropAfterCreate(rng.IntN(2))
		}
	}
	faults()
	start := time.Now()
	nodeDown, nodeKills := "", 0
	for kills < p.kills {
		wait := p.gap/10 + time.Duration(rng.Int64N(int64(p.gap-p.gap/10)))
		select {
		case ex := <-exits: // a failpoint fired
			selfKills++
			restart(ex)
		case <-time.After(wait):
			switch {
			case nodeDown != "": // one NATS node down at a time: it comes back
				s.cluster.Restart(nodeDown)
				nodeDown = ""
			case s.cluster != nil && rng.IntN(3) == 0:
				nodeDown = s.cluster.Nodes[rng.IntN(len(s.cluster.Nodes))].Name
				s.cluster.Kill(nodeDown)
				nodeKills++
				continue
			}
			kill(ins[rng.IntN(len(ins))])
			faults()
			// More mail arrives between kills, so that intake works
			// throughout, not only at the start.
			if left := p.emails - sent; left > 0 {
				n := min(left, max(1, left/max(1, p.kills-kills)))
				deliver(emails[sent : sent+n])
				sent += n
			}
		}
	}
	deliver(emails[sent:])
	stopChaos()
	pokes.Wait()
	chaosTook := time.Since(start)
	if nodeDown != "" {
		s.cluster.Restart(nodeDown)
	}
	if s.cluster != nil {
		s.cluster.WaitHealthy(60 * time.Second)
	}

	// Settle: no faults, no failpoint left armed, and time to finish.
	for _, c := range apis {
		c.api.ClearFaults()
	}
	armed = false
	for _, in := range ins {
		if in.failpoint != "" {
			kill(in)
		}
	}
	q := openChaosQueue(t, s, embeddedNATS)
	wantRequests := 0
	for _, e := range emails {
		wantRequests += len(e.envs)
	}
	ctx := context.Background()
	var reqs []*keydesk.Request
	settled := func() bool {
		select {
		case ex := <-exits:
			t.Fatalf("%s ended while settling: %v (its log follows)", ex.in.name, ex.err)
		default:
		}
		if n, err := imap.Count("INBOX"); err != nil || n > 0 {
			return false
		}
		for _, in := range ins { // every role of every instance at work
			resp, err := http.Get("http://" + in.listen + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		reqs, err = q.List(ctx, queue.Filter{})
		if err != nil {
			return false
		}
		delivered := 0
		for _, r := range reqs {
			switch r.State {
			case keydesk.StateDelivered:
				delivered++
			case keydesk.StateRejected:
			default:
				return false
			}
		}
		return delivered >= wantRequests
	}
	settleStart := time.Now()
	if err := testenv.Poll(p.settle, "every request delivered or refused, every instance ready", settled); err != nil {
		t.Errorf("%v: %s", err, demo.StateCounts(reqs))
	}
	settleTook := time.Since(settleStart)
	// The batch records, read while the instances (and an embedded
	// server) still run.
	batches := openChaosBatches(t, q)
	stopReview()
	reviewers.Wait()
	// Stop cleanly, so that the stores are complete on disk.
	for _, in := range ins {
		_ = in.cmd.Process.Signal(syscall.SIGTERM)
	}
	for range ins {
		select {
		case ex := <-exits:
			if ex.err != nil {
				t.Errorf("%s did not stop cleanly: %v", ex.in.name, ex.err)
			}
			ex.in.cmd = nil
		case <-time.After(time.Minute):
			t.Fatal("an instance still runs a minute after SIGTERM")
		}
	}

	// 1. Every email filed exactly once.
	filed := map[string][]string{}
	for _, folder := range []string{"INBOX", "Processed", "Rejected"} {
		for _, id := range maildirMessageIDs(t, imap.FolderDir(folder)) {
			filed[id] = append(filed[id], folder)
		}
	}
	for _, e := range emails {
		if f := filed[e.messageID]; len(f) != 1 || f[0] == "INBOX" {
			t.Errorf("email %s is in %v, want in Processed or Rejected once", e.messageID, f)
		}
	}

	// 2. Every request delivered exactly once: one key delivery (one
	// Message-ID; a copy resent after a crash between the server's answer
	// and the sent mark carries the same one) of the request's own attempt.
	byID := map[string]*keydesk.Request{}
	bySource := map[string][]*keydesk.Request{}
	delivered := 0
	for _, r := range reqs {
		byID[r.ID] = r
		src := strings.Trim(r.SourceMessageID, "<>")
		bySource[src] = append(bySource[src], r)
		if r.State == keydesk.StateDelivered {
			delivered++
		}
	}
	for _, e := range emails {
		var got []string
		for _, r := range bySource[strings.Trim(e.messageID, "<>")] {
			if r.State == keydesk.StateDelivered {
				got = append(got, string(r.Environment))
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
	deliveries := map[string]map[string]int{} // request → Message-ID → copies
	copies := 0
	for _, m := range sink.Messages() {
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
	for _, r := range reqs {
		if r.State != keydesk.StateDelivered {
			if len(deliveries[r.ID]) > 0 {
				t.Errorf("request %s (%s) got a key delivery", r.ID, r.State)
			}
			continue
		}
		ids := deliveries[r.ID]
		if len(ids) != 1 || r.Attempt == nil || ids[r.ID+".key."+r.Attempt.ID] == 0 {
			t.Errorf("request %s (%s, %s): key deliveries %v, want one, of its attempt", r.ID, r.Environment, r.Label, ids)
		}
	}
	for rid := range deliveries {
		if byID[rid] == nil {
			t.Errorf("a key delivery for %s, which is no request", rid)
		}
	}

	// 3. One live key per delivered request, in its own environment, and
	// every live key is one a delivered request holds and sent.
	live, made := 0, 0
	for _, env := range keydesk.Environments {
		keys := apis[env].api.LiveKeys("acme")
		live += len(keys)
		for _, k := range apis[env].api.Keys("acme") {
			if !k.Seeded {
				made++
			}
		}
		byLabel := map[string][]string{}
		for _, k := range keys {
			byLabel[k.Label] = append(byLabel[k.Label], k.ID)
			ok := slices.ContainsFunc(reqs, func(r *keydesk.Request) bool {
				return r.State == keydesk.StateDelivered && r.Environment == env && r.KeyID == k.ID && r.APIKey == k.APIKey
			})
			if !ok {
				t.Errorf("live key (acme, %s, %s) %q is held by no delivered request", env, k.ID, k.Label)
			}
		}
		for _, r := range reqs {
			if r.State == keydesk.StateDelivered && r.Environment == env && len(byLabel[r.Label]) != 1 {
				t.Errorf("request %s (%s, %s) has live keys %v, want exactly one", r.ID, env, r.Label, byLabel[r.Label])
			}
		}
	}

	// 4. No secret at rest: not in any store, spool or log, nor in the
	// mail as sent.
	var secrets [][]byte
	for _, env := range keydesk.Environments {
		secrets = append(secrets, apis[env].created()...)
		secrets = append(secrets, []byte(managers[env].APISecret))
	}
	anySecret := regexp.MustCompile(`bm_secret_[A-Za-z0-9_]{8,}`)
	// The search finds what it looks for where a secret belongs (the
	// managers' credentials in partners.yaml), and the tap saw every key
	// delivered: a miss below is an absence.
	if pf, err := os.ReadFile(filepath.Join(dir, "partners.yaml")); err != nil || !anySecret.Match(pf) || !bytes.Contains(pf, secrets[len(secrets)-1]) {
		t.Errorf("the secret search does not find the manager's secret in partners.yaml (%v)", err)
	}
	if n := len(secrets) - len(keydesk.Environments); n < delivered {
		t.Errorf("the tap saw %d secrets handed out, fewer than the %d keys delivered", n, delivered)
	}
	places := map[string][]byte{}
	for _, in := range ins {
		places[in.name+" log"] = []byte(in.logs.String())
		readTree(t, in.dataDir, places)
	}
	if s.cluster != nil {
		readTree(t, s.cluster.Dir(), places)
	}
	for i, m := range sink.Messages() {
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

	// 5. Staff never got a 500 (a 503 is the answer while the cluster
	// has no leader), and no batch a person asked for failed because
	// another instance held the batch lease.
	statuses.mu.Lock()
	if n := statuses.n["500"]; n > 0 {
		t.Errorf("the API answered 500 %d times: %v", n, statuses.n)
	}
	statusSummary := fmt.Sprint(statuses.n)
	statuses.mu.Unlock()
	for _, b := range batches {
		if b.State == keydesk.BatchFailed && strings.Contains(b.Error, "another batch is running") {
			t.Errorf("batch %s (%s by %s) failed for the lease: %s", b.ID, b.Trigger, b.By, b.Error)
		}
	}
	// 6. Every start served /healthz within 2 s, however NATS was doing.
	var slowHealth, slowReady time.Duration
	starts := 0
	for _, in := range ins {
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
		starts, slowHealth.Round(time.Millisecond), slowReady.Round(time.Millisecond), nodeKills, len(batches), statusSummary)

	st := map[keydesk.Environment]fake.Stats{}
	for _, env := range keydesk.Environments {
		st[env] = apis[env].api.Stats()
	}
	t.Logf("chaos %s: %d kills survived (%d by failpoints), chaos %s, settled in %s", t.Name(), kills, selfKills,
		chaosTook.Round(time.Second), settleTook.Round(time.Second))
	t.Logf("emails %d, requests %d (%d delivered), key deliveries %d (%d copies sent), keys made %d, live %d, secrets handed out %d, places searched %d",
		len(emails), len(reqs), delivered, len(deliveries), copies, made, live, len(secrets)-len(keydesk.Environments), len(places))
	for _, env := range keydesk.Environments {
		t.Logf("API %s: %+v", env, st[env])
	}
}

// openChaosBatches lists the batch records, once the cluster answers.
func openChaosBatches(t *testing.T, q *queue.Conn) []*keydesk.Batch {
	t.Helper()
	var out []*keydesk.Batch
	if err := testenv.Poll(30*time.Second, "the batch records", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		out, err = q.ListBatches(ctx)
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// openChaosQueue connects the test to the scenario's NATS, to read the
// request records as they are.
func openChaosQueue(t *testing.T, s chaosSetup, embedded string) *queue.Conn {
	t.Helper()
	o := queue.Options{URL: "nats://" + embedded, SkipSetup: true, Name: "chaos test"}
	if s.cluster != nil {
		o = queue.Options{URL: s.cluster.URLs(), SkipSetup: true, Replicas: 3, Name: "chaos test",
			TLSCAFile: filepath.Join(s.tlsDir, "ca.pem"), TLSCert: filepath.Join(s.tlsDir, "admin.pem"), TLSKey: filepath.Join(s.tlsDir, "admin-key.pem")}
	}
	var q *queue.Conn
	err := testenv.Poll(30*time.Second, "a connection to NATS", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		q, err = queue.Open(ctx, o)
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// maildirMessageIDs returns the Message-ID of every message of a Maildir
// folder.
func maildirMessageIDs(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			f, err := os.Open(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m, err := mail.ReadMessage(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			ids = append(ids, m.Header.Get("Message-ID"))
		}
	}
	return ids
}

// readTree reads every regular file under root into places.
func readTree(t *testing.T, root string, places map[string][]byte) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if path == root && errors.Is(err, fs.ErrNotExist) {
			return nil // nothing was written there
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		places[path] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
