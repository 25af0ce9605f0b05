package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/mailsim"
	"github.com/buildmarkets/keydesk/internal/natstest"
	"github.com/buildmarkets/keydesk/internal/testenv"
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
// secret in any store, log or email. Then revocations are asked for,
// with an instance killed meanwhile (with a cluster, by a SIGKILL between
// the API's answer and the record): each revokes its key in its own environment only (a key of the
// other environment with the same ID lives on), and the partner's own
// keys, made beside keydesk's with the same label, all survive.
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

// chaosRun is one scenario as it runs: its world, its instances, its mail
// and what the chaos did, shared by the phases of runChaos.
type chaosRun struct {
	t   *testing.T
	s   chaosSetup
	p   chaosParams
	rng *rand.Rand // every decision of the chaos, in order
	dir string

	imap         *dovecottest.Server
	sink         *mailsim.SMTPServer
	apis         map[keydesk.Environment]*chaosAPI
	managers     map[keydesk.Environment]fake.SeedKey
	token        string   // an admin's, who presses "Run batch now"
	approvers    []string // two approvers' (production needs both)
	embeddedNATS string
	ins          []*chaosInstance

	emails []chaosEmail
	sent   int // emails delivered to the inbox so far

	exits            chan chaosExit
	statuses         apiStatuses
	kills, selfKills int
	armed            bool // failpoints are set on restarts
	nodeDown         string
	nodeKills        int

	chaosTook, settleTook time.Duration
	reqs                  []*keydesk.Request
	batches               []*keydesk.Batch

	// The key's life: the partner's own keys (made before keydesk
	// starts), the revocations asked for once all is delivered, and the
	// keys of the other environment that bear a revoked key's ID.
	partnerKeys map[keydesk.Environment][]string
	revocations []chaosRevocation
	twins       []keydesk.KeyRef
}

// runChaos runs one scenario: the world and its files, the mail, staff at
// work, the kills, the settling, then what a partner and an auditor check.
func runChaos(t *testing.T, s chaosSetup) {
	r := &chaosRun{t: t, s: s, p: s.p, rng: rand.New(rand.NewPCG(s.seed, 0x6b657964657368)), dir: t.TempDir()}
	r.startWorld()
	r.makePartnerKeys()
	r.writeFiles()
	r.keepLogs()
	r.writeMail()
	r.deliver(r.emails[:r.p.emails/2])

	r.exits = make(chan chaosExit, 8)
	for _, in := range r.ins {
		in.start(t, s.bin, r.pickFailpoint(), r.exits)
	}
	chaosCtx, stopChaos := context.WithCancel(context.Background())
	defer stopChaos()
	pokes := r.pressRunBatch(chaosCtx)
	reviewCtx, stopReview := context.WithCancel(context.Background())
	defer stopReview()
	reviewers := r.approve(reviewCtx)
	r.armed = true
	started := r.chaos()
	stopChaos()
	pokes.Wait()
	r.chaosTook = time.Since(started)

	q := r.settle()
	q = r.revokeSome(q)
	// The batch records and the inventories, read while the instances
	// (and an embedded server) still run.
	r.batches = openChaosBatches(t, q)
	r.checkKeyLife(q)
	stopReview()
	reviewers.Wait()
	r.stop()

	r.checkFiled()
	delivered, deliveries, copies := r.checkDelivered()
	live, made := r.checkKeys()
	secrets, places := r.checkNoSecretAtRest(delivered)
	r.checkStaffAndStarts()
	r.logSummary(summary{delivered: delivered, deliveries: deliveries, copies: copies, live: live, made: made, secrets: secrets, places: places})
}

// startWorld starts Dovecot, the SMTP sink, and one simulator per
// environment, each with the partner's account, so both number keys from
// key-001.
func (r *chaosRun) startWorld() {
	t := r.t
	imap, err := dovecottest.New(dovecottest.Options{Dovecot: r.s.dovecot})
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() { _ = imap.Close() })
	sink, err := demo.StartSink(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	r.imap, r.sink = imap, sink
	r.apis = map[keydesk.Environment]*chaosAPI{}
	r.managers = map[keydesk.Environment]fake.SeedKey{}
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
		r.apis[env], r.managers[env] = c, mgr
	}
}

// writeFiles writes the keys, partners, staff and one config per instance.
func (r *chaosRun) writeFiles() {
	t, dir, s := r.t, r.dir, r.s
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
`, contact.Fingerprint, r.managers[keydesk.Sandbox].APIKey, r.managers[keydesk.Sandbox].APISecret,
		r.managers[keydesk.Production].APIKey, r.managers[keydesk.Production].APISecret))
	r.token = addUser(t, filepath.Join(dir, "users.yaml"), "ada", "admin")
	// Production needs two approvers (review.four_eyes).
	r.approvers = []string{addUser(t, filepath.Join(dir, "users.yaml"), "alice", "approver"),
		addUser(t, filepath.Join(dir, "users.yaml"), "bob", "approver")}
	r.embeddedNATS = testenv.FreeAddr(t)
	for i := range s.instances {
		in := &chaosInstance{name: fmt.Sprintf("keydesk-%d", i+1), listen: testenv.FreeAddr(t), logs: &testenv.Buffer{}}
		in.dataDir = filepath.Join(dir, in.name+"-data")
		nats := fmt.Sprintf("{url: \"\", listen: %q}", r.embeddedNATS)
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
`, in.dataDir, nats, r.imap.Addr, r.imap.User, r.imap.Password, r.sink.Addr, demo.From, demo.Support,
			r.apis[keydesk.Sandbox].url, r.apis[keydesk.Production].url, cryptotest.Passphrase, demo.Authserv, demo.Domain, in.listen))
		r.ins = append(r.ins, in)
	}
}

// keepLogs kills what still runs at the end and, when the test failed,
// keeps each instance's log and shows its end.
func (r *chaosRun) keepLogs() {
	t, ins := r.t, r.ins
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
}
