// Package demo runs keydesk's real roles against servers it starts in
// process (NATS, an IMAP mailbox seeded with partners' emails, an SMTP
// sink, the Buildmarkets API simulator) and, once, drives and checks the
// whole flow: 'keydesk demo'.
package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/internal/mailsim"
	"github.com/buildmarkets/keydesk/queue"
)

// Options configure Run.
type Options struct {
	// Serve runs the named roles on cfg until ctx ends, as 'keydesk
	// serve' does; ready, if not nil, is called with the queue once every
	// role runs. The command passes its own wiring: the demo runs the
	// production roles, not a copy of them.
	Serve func(ctx context.Context, cfg *config.Config, log *slog.Logger, roles []string, ready func(*queue.Conn) error) error
	// Setup makes the streams and buckets, as 'keydesk nats-setup' does (only
	// the cluster run needs it).
	Setup func(ctx context.Context, cfg *config.Config) error
	// Roles are every role, in start order.
	Roles []string

	Once    bool
	Listen  string
	Keep    bool
	Timeout time.Duration
	Out     io.Writer
	// started, if set, is called once the world runs and before the roles
	// start: tests use it to look at or break the world.
	Started func(e *Env)
	// cluster, if set, runs each role with its own connection to this NATS
	// cluster as its own least-privilege user (deploy/nats), after making
	// the streams as admin: the deployment's permissions, tried for real.
	Cluster *Cluster
}

// Cluster is a NATS cluster secured as deploy/nats is: TLSDir holds
// ca.pem and <user>.pem/<user>-key.pem for admin and each role.
type Cluster struct {
	URL, TLSDir string
}

// Summary is what --once found.
type Summary struct {
	Emails, EmailsRead  int
	Processed, Rejected int // mailbox folders
	Requests            map[keydesk.State]int
	KeysCreated         int
	KeyDeliveries       int
	Decrypted           int
	Acks, Rejections    int
	Notices, ToSupport  int
	Problems            []string
}

// OK reports whether everything expected happened.
func (s *Summary) OK() bool { return s != nil && len(s.Problems) == 0 }

// printer writes the demo's lines; mail arrives on other goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Run starts the world, runs the roles, and in once mode drives and
// checks the flow.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Serve == nil || len(o.Roles) == 0 || o.Cluster != nil && o.Setup == nil {
		return nil, errors.New("demo: Options need Serve, Roles (and Setup for a cluster): the command's role wiring")
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Timeout == 0 {
		o.Timeout = 50 * time.Second
	}
	start := time.Now()
	p := &printer{w: o.Out}
	dir, err := os.MkdirTemp("", "keydesk-demo-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		defer p.printf("\nThe demo's files are kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	p.printf("keydesk demo: making OpenPGP keys and starting IMAP, SMTP and the Buildmarkets API simulator...\n")

	env, err := startWorld(dir, o, p)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	listen, err := reviewAddr(o)
	if err != nil {
		return nil, err
	}
	schedule := "@every 30s"
	if o.Once {
		schedule = "@every 3s"
	}
	logPath := filepath.Join(dir, "keydesk.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var sum *Summary
	base := "http://" + listen
	ready := func(q *queue.Conn) error {
		p.printf("keydesk is running its real roles: intake, review, batch, delivery (log: %s)\n\n", logPath)
		if o.Once {
			go func() {
				defer stop()
				sum = env.drive(runCtx, q, p, base, o.Timeout)
			}()
			return nil
		}
		env.showWelcome(p, base)
		return nil
	}
	if o.Cluster != nil {
		err = env.serveOnCluster(runCtx, stop, o, listen, schedule, log, ready)
	} else {
		var cfg *config.Config
		if cfg, err = env.loadConfig("keydesk.yaml", listen, schedule, config.NATS{}); err != nil {
			return nil, err
		}
		err = o.Serve(runCtx, cfg, log, o.Roles, ready)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return sum, err
	}
	if o.Once {
		if sum == nil {
			return nil, errors.New("demo: stopped before the flow finished")
		}
		sum.print(p, time.Since(start))
	}
	return sum, nil
}

// startWorld starts the demo's servers; interactively, each email
// keydesk sends is shown as it arrives.
func startWorld(dir string, o Options, p *printer) (*Env, error) {
	var env *Env
	var envReady sync.WaitGroup
	envReady.Add(1)
	onMail := func(m mailsim.Message) {
		envReady.Wait()
		if !o.Once {
			env.showMail(p, m)
		}
	}
	env, err := StartEnv(dir, onMail)
	envReady.Done()
	if err != nil {
		return nil, err
	}
	if o.Started != nil {
		o.Started(env)
	}
	return env, nil
}

// reviewAddr is where the review UI listens: o.Listen, or 127.0.0.1:8080
// if free, else (and always with --once) a free port, picked now since the
// address is printed before the server listens.
func reviewAddr(o Options) (string, error) {
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:8080"
		if o.Once || !portFree(listen) {
			listen = "127.0.0.1:0"
		}
	}
	if host, port, err := net.SplitHostPort(listen); err == nil && port == "0" {
		return freeAddr(host)
	}
	return listen, nil
}

// loadConfig writes a config and loads it as keydesk would.
func (e *Env) loadConfig(name, listen, schedule string, nats config.NATS) (*config.Config, error) {
	path, err := e.WriteConfigAs(name, listen, schedule, nats)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("demo: generated config: %w", err)
	}
	return cfg, nil
}

// serveOnCluster makes the streams as admin, then runs each role in its
// own app, connected as its own NATS user; review serves on listen.
func (e *Env) serveOnCluster(ctx context.Context, stop func(), o Options, listen, schedule string, log *slog.Logger, ready func(*queue.Conn) error) error {
	c := o.Cluster
	natsFor := func(user string, skip bool) config.NATS {
		// Each user may subscribe to its own inbox prefix only (deploy/nats).
		return config.NATS{URL: c.URL, Replicas: 3, TLSCAFile: filepath.Join(c.TLSDir, "ca.pem"),
			TLSCert: filepath.Join(c.TLSDir, user+".pem"), TLSKey: filepath.Join(c.TLSDir, user+"-key.pem"),
			SkipSetup: skip, InboxPrefix: "_INBOX_" + user}
	}
	adminCfg, err := e.loadConfig("admin.yaml", listen, schedule, natsFor("admin", false))
	if err != nil {
		return err
	}
	if err := o.Setup(ctx, adminCfg); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(o.Roles))
	for _, r := range o.Roles {
		l, rready := listen, ready
		if r != "review" {
			// Every app serves /healthz and /metrics; only review's is the UI.
			if l, err = freeAddr("127.0.0.1"); err != nil {
				return err
			}
			rready = nil
		}
		cfg, err := e.loadConfig(r+".yaml", l, schedule, natsFor(r, true))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Serve(ctx, cfg, log.With("app", r), []string{r}, rready); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", r, err)
				stop()
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func freeAddr(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// showWelcome tells the visitor what to do.
func (e *Env) showWelcome(p *printer, base string) {
	p.printf("Review UI:  %s/\n", base)
	for _, s := range e.staff {
		p.printf("  login %-6s password %s   (%s)\n", s.name, s.password, s.role)
	}
	p.printf("\nThe support mailbox holds %d emails from partners:\n", len(e.Emails))
	for _, m := range e.Emails {
		p.printf("  - %s, from %s\n", m.name, m.from)
	}
	p.printf("\nApprove the pending requests (production needs both alice and bob), then wait for the\n"+
		"next batch (every 30s) or press \"Run batch now\" on the Batches page as alice. Every email\n"+
		"keydesk sends shows below; key deliveries are opened with the contact's demo key as proof.\n"+
		"The API, for scripts:  curl -H 'Authorization: Bearer %s' %s/api/v1/requests\n\n"+
		"Press Ctrl-C to stop.\n\n", e.staff[0].token, base)
}

// MailKind names an email keydesk sent, from its Message-ID (derived from
// the outbox ID: <request>.ack, .rejection, .notice.<attempt>, .key.<attempt>).
func MailKind(raw []byte) (kind string, msg *mail.Message) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return "unreadable", nil
	}
	id := msg.Header.Get("Message-ID")
	switch {
	case strings.Contains(id, ".key."):
		return "key delivery", msg
	case strings.Contains(id, ".notice."):
		return "delivery notice", msg
	case strings.Contains(id, ".ack@"):
		return "acknowledgement", msg
	case strings.Contains(id, ".rejection@"):
		return "rejection", msg
	}
	return "to support", msg
}

// openDelivery decrypts a key delivery with the contact's demo key and
// checks keydesk's signature on it.
func (e *Env) openDelivery(m mailsim.Message) (contact *contact, inner []byte, err error) {
	for _, c := range e.contacts {
		if slices.ContainsFunc(m.To, func(t string) bool { return strings.EqualFold(t, c.email) }) {
			contact = c
		}
	}
	if contact == nil {
		return nil, nil, fmt.Errorf("sent to %v, not to a registered technical contact", m.To)
	}
	inner, err = crypto.DecryptAndVerify(m.Data, contact.priv, contact.passphrase, e.signerPub)
	return contact, inner, err
}

// showMail prints an email as it arrives at the sink.
func (e *Env) showMail(p *printer, m mailsim.Message) {
	kind, msg := MailKind(m.Data)
	subject := ""
	if msg != nil {
		subject = msg.Header.Get("Subject")
	}
	p.printf("[%s] %s to %s: %q\n", time.Now().Format("15:04:05"), kind, strings.Join(m.To, ", "), subject)
	if kind != "key delivery" {
		return
	}
	if i := bytes.Index(m.Data, []byte("-----BEGIN PGP MESSAGE-----")); i >= 0 {
		line, _, _ := bytes.Cut(m.Data[i:], []byte("\n-----END"))
		if len(line) > 160 {
			line = line[:160]
		}
		p.printf("    on the wire it is ciphertext:\n      %s...\n", strings.ReplaceAll(strings.TrimSpace(string(line)), "\n", "\n      "))
	}
	c, inner, err := e.openDelivery(m)
	if err != nil {
		p.printf("    !! it does not open with the contact's key: %v\n", err)
		return
	}
	p.printf("    opened with %s's key (%s); signature by keydesk (%s) verified. Inside:\n", c.email, crypto.FormatFingerprint(c.fpr), crypto.FormatFingerprint(e.signerFpr))
	for _, l := range innerSummary(inner) {
		p.printf("      %s\n", l)
	}
}

// InnerKeyFile reads the JSON attachment of a decrypted delivery: the key
// pair as the contact imports it.
func InnerKeyFile(inner []byte) (*crypto.KeyFile, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(inner))
	if err != nil {
		return nil, err
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return nil, fmt.Errorf("the decrypted entity is %q, not multipart", mt)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			return nil, fmt.Errorf("no JSON attachment: %w", err)
		}
		if pt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); pt != "application/json" {
			continue
		}
		var body io.Reader = part
		if strings.EqualFold(part.Header.Get("Content-Transfer-Encoding"), "base64") {
			body = base64.NewDecoder(base64.StdEncoding, part)
		}
		var kf crypto.KeyFile
		if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&kf); err != nil {
			return nil, fmt.Errorf("the JSON attachment: %w", err)
		}
		return &kf, nil
	}
}

// innerSummary is what the demo shows of a decrypted delivery: the key's
// ID, label and API key, and that the secret is there, but not the secret
// itself (the demo's secrets are throwaway; the habit is not).
func innerSummary(inner []byte) []string {
	kf, err := InnerKeyFile(inner)
	if err != nil {
		return []string{fmt.Sprintf("(%d bytes of MIME; %v)", len(inner), err)}
	}
	return []string{
		fmt.Sprintf("key_id %s, label %s, %s, scopes %s", kf.KeyID, kf.Label, kf.Environment, strings.Join(kf.Scopes, " ")),
		fmt.Sprintf("api_key %s, api_secret (%d characters, not shown here)", kf.APIKey, len(kf.APISecret)),
	}
}

// drive runs the --once flow: wait for intake, approve and reject as the
// demo reviewers through the JSON API, ask for a batch, wait for the
// deliveries, then check everything.
func (e *Env) drive(ctx context.Context, q *queue.Conn, p *printer, base string, timeout time.Duration) *Summary {
	sum := &Summary{Emails: len(e.Emails), Requests: map[keydesk.State]int{}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reqs, err := e.awaitIntake(ctx, q, p)
	if err == nil {
		err = e.review(ctx, q, p, base, reqs)
	}
	if err == nil {
		err = e.askBatch(ctx, p, base)
	}
	if err == nil {
		err = e.awaitEnds(ctx, q, p)
	}
	if err != nil {
		sum.Problems = append(sum.Problems, err.Error())
	}
	e.check(ctx, q, sum)
	return sum
}

// awaitIntake waits for intake to read the mailbox and queue every
// request the emails hold, and returns them.
func (e *Env) awaitIntake(ctx context.Context, q *queue.Conn, p *printer) ([]*keydesk.Request, error) {
	wantRequests := 0
	for _, m := range e.Emails {
		wantRequests += m.requests
	}
	last := -1
	err := waitUntil(ctx, func() bool {
		inbox, _, _ := e.mailboxCounts()
		if read := len(e.Emails) - inbox; read != last {
			last = read
			p.printf("intake:   %d of %d emails read\n", read, len(e.Emails))
		}
		return inbox == 0
	})
	if err != nil {
		return nil, errors.New("intake did not read every email in time")
	}
	var reqs []*keydesk.Request
	err = waitUntil(ctx, func() bool {
		reqs, err = q.List(ctx, queue.Filter{})
		return err == nil && len(reqs) >= wantRequests
	})
	if err != nil {
		return nil, fmt.Errorf("%d requests in the queue, want %d", len(reqs), wantRequests)
	}
	p.printf("queue:    %s\n", StateCounts(reqs))
	return reqs, nil
}

// review decides as the demo reviewers, through the JSON API as a person
// would in the UI: the unknown sender's request is rejected, every other
// pending one approved, by bob too where four eyes are needed.
func (e *Env) review(ctx context.Context, q *queue.Conn, p *printer, base string, reqs []*keydesk.Request) error {
	alice, bob := e.staff[0], e.staff[1]
	for _, r := range reqs {
		if r.State != keydesk.StatePendingReview {
			continue
		}
		if r.HasFlag(keydesk.FlagUnknownSender) {
			if err := apiCall(ctx, base, alice.token, "POST", "/api/v1/requests/"+r.ID+"/reject", `{"reason":"not a registered partner"}`); err != nil {
				return fmt.Errorf("reject %s: %v", r.ID, err)
			}
			p.printf("review:   alice rejected %s from unknown sender %s\n", r.ID, r.Requester)
			continue
		}
		if err := apiCall(ctx, base, alice.token, "POST", "/api/v1/requests/"+r.ID+"/approve", ""); err != nil {
			return fmt.Errorf("approve %s as alice: %v", r.ID, err)
		}
		who := "alice"
		cur, err := q.Get(ctx, r.ID)
		if err == nil && cur.State == keydesk.StatePendingReview {
			if err := apiCall(ctx, base, bob.token, "POST", "/api/v1/requests/"+r.ID+"/approve", ""); err != nil {
				return fmt.Errorf("approve %s as bob: %v", r.ID, err)
			}
			who = "alice and bob (four eyes)"
		}
		p.printf("review:   %s approved %s (%s, %s)\n", who, r.ID, r.Environment, r.Label)
	}
	return nil
}

// askBatch asks for a batch now, rather than waiting for the schedule.
func (e *Env) askBatch(ctx context.Context, p *printer, base string) error {
	if err := apiCall(ctx, base, e.staff[0].token, "POST", "/api/v1/batches", ""); err != nil {
		return fmt.Errorf("run a batch: %v", err)
	}
	p.printf("batch:    alice asked for a batch now\n")
	return nil
}

// awaitEnds waits until every request has reached an end and every
// delivery's notice has been sent.
func (e *Env) awaitEnds(ctx context.Context, q *queue.Conn, p *printer) error {
	lastLine := ""
	err := waitUntil(ctx, func() bool {
		reqs, err := q.List(ctx, queue.Filter{})
		if err != nil {
			return false
		}
		if l := StateCounts(reqs); l != lastLine {
			lastLine = l
			p.printf("queue:    %s\n", l)
		}
		for _, r := range reqs {
			switch r.State {
			case keydesk.StateDelivered, keydesk.StateRejected, keydesk.StateCancelled:
			default:
				return false
			}
		}
		// And the notices that follow each delivery.
		notices := 0
		for _, m := range e.Sink.Messages() {
			if k, _ := MailKind(m.Data); k == "delivery notice" {
				notices++
			}
		}
		return notices >= count(reqs, keydesk.StateDelivered)
	})
	if err != nil {
		return fmt.Errorf("not every request reached an end in time (%s)", lastLine)
	}
	return nil
}

func count(reqs []*keydesk.Request, s keydesk.State) int {
	n := 0
	for _, r := range reqs {
		if r.State == s {
			n++
		}
	}
	return n
}

// check fills the summary from what the mailbox, the queue, the simulator
// and the sink hold, and lists what is not as expected.
func (e *Env) check(ctx context.Context, q *queue.Conn, sum *Summary) {
	bad := func(format string, args ...any) { sum.Problems = append(sum.Problems, fmt.Sprintf(format, args...)) }
	byAPIKey := e.countState(ctx, q, sum, bad)
	want := e.expected()
	opened, gotRejection := e.countMail(sum, byAPIKey, want.unknown, bad)
	if n := sum.Requests[keydesk.StateDelivered]; n != want.delivered {
		bad("%d requests delivered, want %d", n, want.delivered)
	}
	if sum.KeysCreated != want.delivered {
		bad("%d keys live at the API, want %d (one per delivered request)", sum.KeysCreated, want.delivered)
	}
	if sum.Decrypted != want.delivered || opened != want.delivered {
		bad("%d deliveries decrypted and verified, want %d", sum.Decrypted, want.delivered)
	}
	for from := range want.rejectedMail {
		if !gotRejection[from] {
			bad("%s was not told why its request was refused", from)
		}
	}
	if sum.Acks != want.acks {
		bad("%d acknowledgements sent, want %d (one per accepted email)", sum.Acks, want.acks)
	}
	if sum.Notices != want.delivered {
		bad("%d delivery notices sent, want %d", sum.Notices, want.delivered)
	}
	if sum.Rejections != len(want.rejectedMail) {
		bad("%d rejections sent, want %d", sum.Rejections, len(want.rejectedMail))
	}
}

// countState counts what the mailbox, the queue and the simulator hold,
// and returns the requests by the API key they were given.
func (e *Env) countState(ctx context.Context, q *queue.Conn, sum *Summary, bad func(string, ...any)) map[string]*keydesk.Request {
	inbox, processed, rejected := e.mailboxCounts()
	sum.EmailsRead, sum.Processed, sum.Rejected = len(e.Emails)-inbox, processed, rejected
	if inbox != 0 {
		bad("%d emails still in the inbox", inbox)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	reqs, err := q.List(cctx, queue.Filter{})
	if err != nil {
		bad("list requests: %v", err)
	}
	byAPIKey := map[string]*keydesk.Request{}
	for _, r := range reqs {
		sum.Requests[r.State]++
		if r.APIKey != "" {
			byAPIKey[r.APIKey] = r
		}
	}
	for _, acct := range e.SeedAccounts {
		sum.KeysCreated += len(e.API.LiveKeys(acct.ID)) + len(e.ProdAPI.LiveKeys(acct.ID))
	}
	return byAPIKey
}

// expectation is what the seeded emails should lead to.
type expectation struct {
	delivered, acks int
	// rejectedMail and unknown are senders, lower case.
	rejectedMail, unknown map[string]bool
}

// expected says what the seeded emails should lead to. Each accepted
// email is acknowledged once; a refused one gets a rejection; the
// auto-reply nothing (else it would count as one more acknowledgement);
// the unknown sender nothing at all (no backscatter).
func (e *Env) expected() expectation {
	x := expectation{rejectedMail: map[string]bool{}, unknown: map[string]bool{}}
	for _, m := range e.Emails {
		switch m.want {
		case "delivered":
			x.delivered += m.requests
			x.acks++
		case "rejected":
			x.rejectedMail[m.from] = true
		case "review-reject":
			x.unknown[m.from] = true
		}
	}
	return x
}

// countMail counts what the sink holds by kind, opens each key delivery,
// and returns how many requests' deliveries opened and who got a
// rejection.
func (e *Env) countMail(sum *Summary, byAPIKey map[string]*keydesk.Request, unknown map[string]bool, bad func(string, ...any)) (opened int, gotRejection map[string]bool) {
	openedIDs := map[string]bool{}
	gotRejection = map[string]bool{}
	for _, m := range e.Sink.Messages() {
		kind, _ := MailKind(m.Data)
		switch kind {
		case "key delivery":
			sum.KeyDeliveries++
			id, err := e.openKeyDelivery(m, byAPIKey)
			if err != nil {
				bad("%v", err)
				continue
			}
			openedIDs[id] = true
			sum.Decrypted++
		case "delivery notice":
			sum.Notices++
		case "acknowledgement":
			sum.Acks++
		case "rejection":
			sum.Rejections++
			for _, t := range m.To {
				gotRejection[strings.ToLower(t)] = true
			}
		default:
			sum.ToSupport++
		}
		for _, t := range m.To {
			if unknown[strings.ToLower(t)] {
				bad("the unknown sender %s got mail (%s): no backscatter", t, kind)
			}
		}
	}
	return len(openedIDs), gotRejection
}

// openKeyDelivery opens a key delivery and returns the ID of the request
// whose key pair it holds.
func (e *Env) openKeyDelivery(m mailsim.Message, byAPIKey map[string]*keydesk.Request) (string, error) {
	_, inner, err := e.openDelivery(m)
	if err != nil {
		return "", fmt.Errorf("a key delivery to %v does not open: %v", m.To, err)
	}
	kf, err := InnerKeyFile(inner)
	if err != nil {
		return "", fmt.Errorf("a key delivery to %v: %v", m.To, err)
	}
	r := byAPIKey[kf.APIKey]
	if r == nil || r.ID != kf.RequestID || r.KeyID != kf.KeyID || kf.APISecret == "" {
		return "", fmt.Errorf("a key delivery to %v holds no key pair of a delivered request (%s)", m.To, kf.RequestID)
	}
	return r.ID, nil
}

func (s *Summary) print(p *printer, took time.Duration) {
	p.printf("\nSummary (%s)\n", took.Round(100*time.Millisecond))
	p.printf("  emails read:            %d of %d (%d processed, %d set aside)\n", s.EmailsRead, s.Emails, s.Processed, s.Rejected)
	var states []string
	for st, n := range s.Requests {
		states = append(states, fmt.Sprintf("%s %d", st, n))
	}
	sort.Strings(states)
	p.printf("  requests by outcome:    %s\n", strings.Join(states, ", "))
	p.printf("  keys created:           %d\n", s.KeysCreated)
	p.printf("  deliveries:             %d sent encrypted, %d decrypted with the contact's key and signature verified\n", s.KeyDeliveries, s.Decrypted)
	p.printf("  replies to partners:    %s, %s, %s\n", plural(s.Acks, "acknowledgement"), plural(s.Rejections, "rejection"), plural(s.Notices, "delivery notice"))
	p.printf("  to support:             %d (batch reports, alerts)\n", s.ToSupport)
	if s.OK() {
		p.printf("\nOK: everything expected happened.\n")
		return
	}
	p.printf("\nFAILED:\n")
	for _, pr := range s.Problems {
		p.printf("  - %s\n", pr)
	}
}

func StateCounts(reqs []*keydesk.Request) string {
	m := map[keydesk.State]int{}
	for _, r := range reqs {
		m[r.State]++
	}
	var parts []string
	for st, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", st, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d requests: %s", len(reqs), strings.Join(parts, ", "))
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// apiCall calls the review JSON API as a staff member.
func apiCall(ctx context.Context, base, token, method, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, e.Error)
	}
	return nil
}

// plural writes "1 rejection", "3 rejections".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
