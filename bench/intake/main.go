// Command intake measures the intake path against a real Dovecot started on
// loopback (internal/dovecottest):
//
//   - throughput: a backlog of N request emails (written straight into the
//     Maildir) taken in by the poller — fetch, parse, authenticate, store,
//     enqueue the acknowledgement, move — as a ratio to a bare go-imap
//     client fetching the same mailbox (one UID FETCH 1:* BODY.PEEK[]
//     streamed to nowhere): the limit of that path. Goal: >= 0.5.
//
//   - memory: peak RSS of a poller process (embedded JetStream included)
//     taking in a backlog that holds 20 MB attachments. Goal: < 150 MB.
//
//   - latency: an email APPENDed to the inbox until its request is in the
//     queue, with IDLE. Goal: p50 < 0.5 s.
//
//     go run ./bench/intake -n 10000
//     go run ./bench/intake -n 500 -big 3 -latency-n 20   (a quick run)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/mailsim"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

var (
	workers   = flag.Int("workers", 0, "intake Workers (0: the default)")
	batchSize = flag.Int("batch", 0, "intake BatchSize (0: the default)")
)

func main() {
	n := flag.Int("n", 10000, "backlog size for the throughput run")
	big := flag.Int("big", 5, "20 MB emails in the memory run's backlog")
	small := flag.Int("small", 200, "ordinary emails in the memory run's backlog")
	latN := flag.Int("latency-n", 50, "emails appended one by one for the latency run")
	bigMB := flag.Int("big-mb", 20, "size of the large emails, in MB")
	child := flag.String("child", "", "internal: run a poller against host:port,user,password,datadir until the inbox is empty")
	flag.Parse()
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintln(os.Stderr, "bench/intake child:", err)
			os.Exit(1)
		}
		return
	}
	failed := false
	check := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/intake:", err)
			failed = true
		}
	}
	check(benchThroughput(*n))
	check(benchMemory(*small, *big, *bigMB))
	check(benchLatency(*latN))
	if failed {
		os.Exit(1)
	}
}

var partner = &keydesk.Partner{
	ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example"},
	TechnicalContact: keydesk.TechnicalContact{Email: "sec@acme.example"},
	Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
		keydesk.Sandbox: {APIKey: "mgr", AutoApprove: true},
	},
}

// requestEmail is a partner's request as our MTA stores it; pad adds a
// base64 attachment of about that many bytes.
func requestEmail(i int, pad int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Authentication-Results: mx.buildmarkets.ai;\r\n\tdkim=pass header.d=acme.example;\r\n\tspf=pass smtp.mailfrom=acme.example;\r\n\tdmarc=pass header.from=acme.example\r\n")
	fmt.Fprintf(&b, "From: Ada Lovelace <ada@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: Sandbox key %d\r\n", i)
	fmt.Fprintf(&b, "Date: Fri, 27 Nov 2026 08:30:00 +0000\r\nMessage-ID: <bench-%d-%d@acme.example>\r\nMIME-Version: 1.0\r\n", time.Now().UnixNano(), i)
	text := fmt.Sprintf("Hello,\r\n\r\nEnvironment: sandbox\r\nScopes: accounts:read, marketdata:read\r\nLabel: bot-%d\r\n\r\nThanks, Ada\r\n", i)
	if pad == 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n" + text)
		return []byte(b.String())
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text)
	b.WriteString("--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"logs.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9w", 2)[:76] + "\r\n"
	for n := 0; n < pad; n += len(line) {
		b.WriteString(line)
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

var benchMetrics = metrics.New()

func startDovecot() (*dovecottest.Server, error) {
	return dovecottest.New(dovecottest.Options{})
}

func imapConfig(d *dovecottest.Server, maxBytes int64) intake.Mailbox {
	return intake.Mailbox{
		MailServer: mailauth.MailServer{
			Address: d.Addr, Security: mailauth.SecurityNone, Username: d.User,
			Password: keydesk.SecretString(d.Password), Timeout: 60 * time.Second,
		},
		Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected",
		PollInterval: time.Minute, MaxMessageBytes: maxBytes,
	}
}

func newPoller(q *queue.Conn, cfg intake.Mailbox, spool string) (*intake.Poller, error) {
	tpl := templates.MustLoadEmbedded()
	reg := &keydesk.Registry{Partners: []*keydesk.Partner{partner}}
	next := time.Now().Add(time.Hour)
	h := intake.NewParseHandler(intake.ParseOptions{
		Registry: func() *keydesk.Registry { return reg },
		Parse: parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true,
			InternalDomains: []string{"buildmarkets.ai"}, MaxBytes: cfg.MaxMessageBytes},
		Reply: func(res *parse.Result) (*keydesk.Outgoing, error) { return reply.Build(res, tpl, next) },
	})
	return intake.New(intake.Options{IMAP: cfg, Queue: q, Handler: h, SpoolDir: spool, Metrics: benchMetrics,
		Workers: *workers, BatchSize: *batchSize,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: benchLevel}))})
}

// inboxCount asks the server how many messages the inbox holds.
func inboxCount(c *imapclient.Client) (int, error) {
	d, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0, err
	}
	return int(*d.NumMessages), nil
}

func dial(d *dovecottest.Server) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(d.Addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(d.User, d.Password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// bareFetch is the baseline: one client fetching every message's body.
func bareFetch(d *dovecottest.Server) (int, time.Duration, error) {
	start := time.Now()
	c, err := dial(d)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return 0, 0, err
	}
	set := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	n := 0
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		for {
			it := m.Next()
			if it == nil {
				break
			}
			if b, ok := it.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
				if _, err := io.Copy(io.Discard, b.Literal); err != nil {
					return n, 0, err
				}
			}
		}
		n++
	}
	if err := cmd.Close(); err != nil {
		return n, 0, err
	}
	return n, time.Since(start), nil
}

func fill(d *dovecottest.Server, n, pad int) error {
	for i := range n {
		if err := d.Deliver("INBOX", requestEmail(i, pad)); err != nil {
			return err
		}
	}
	return nil
}

func benchThroughput(n int) error {
	d, err := startDovecot()
	if err != nil {
		return err
	}
	defer d.Close()
	bare, err := bareBaseline(d, n)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "keydesk-bench-intake-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Options{DataDir: dir})
	if err != nil {
		return err
	}
	defer q.Close()
	took, err := intakeBacklog(ctx, d, q, dir)
	if err != nil {
		return err
	}
	reqs, err := q.List(ctx, queue.Filter{})
	if err != nil {
		return err
	}
	bareRate := float64(n) / bare.Seconds()
	rate := float64(n) / took.Seconds()
	ratio := rate / bareRate
	fmt.Printf("intake throughput: bare fetch %d msgs in %s (%.0f/s); intake %d msgs in %s (%.0f/s); %d requests queued\n",
		n, bare.Round(time.Millisecond), bareRate, n, took.Round(time.Millisecond), rate, len(reqs))
	verdict := "PASS"
	if ratio < 0.5 {
		verdict = "FAIL"
	}
	fmt.Printf("intake throughput ratio: %.3f (goal >= 0.5) %s\n", ratio, verdict)
	if len(reqs) != n {
		return fmt.Errorf("%d requests queued, want %d", len(reqs), n)
	}
	return nil
}

// bareBaseline fills the inbox with n request emails and times a bare
// fetch of them all: the baseline intake is measured against.
func bareBaseline(d *dovecottest.Server, n int) (time.Duration, error) {
	t0 := time.Now()
	if err := fill(d, n, 0); err != nil {
		return 0, err
	}
	fmt.Printf("intake throughput: %d emails written to the Maildir in %s\n", n, time.Since(t0).Round(time.Millisecond))
	// Dovecot indexes the new files on the first SELECT: do it before
	// timing either side, so neither pays for it.
	if _, _, err := bareFetch(d); err != nil {
		return 0, err
	}
	got, bare, err := bareFetch(d)
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, fmt.Errorf("bare fetch saw %d messages, want %d", got, n)
	}
	return bare, nil
}

// intakeBacklog runs a poller until the inbox is empty and says how long
// that took.
func intakeBacklog(ctx context.Context, d *dovecottest.Server, q *queue.Conn, dir string) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := newPoller(q, imapConfig(d, 10<<20), dir+"/spool")
	if err != nil {
		return 0, err
	}
	c, err := dial(d)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for {
		left, err := inboxCount(c)
		if err != nil {
			return 0, err
		}
		if left == 0 {
			break
		}
		select {
		case err := <-done:
			return 0, fmt.Errorf("poller stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	took := time.Since(start)
	if os.Getenv("BENCH_METRICS") != "" {
		benchMetrics.Write(os.Stderr)
	}
	cancel()
	<-done
	return took, nil
}

func benchMemory(small, big, bigMB int) error {
	d, err := startDovecot()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := fill(d, small, 0); err != nil {
		return err
	}
	for i := range big {
		// Spread the large ones through the backlog.
		if err := d.Deliver("INBOX", requestEmail(small+i, bigMB*1000*1000)); err != nil {
			return err
		}
		if err := fill(d, 10, 0); err != nil {
			return err
		}
	}
	total := small + big*11
	dir, err := os.MkdirTemp("", "keydesk-bench-intake-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-child", strings.Join([]string{d.Addr, d.User, d.Password, dir}, ","))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("poller process: %w", err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return errors.New("no rusage")
	}
	peak := float64(ru.Maxrss) / 1024 // KiB on Linux
	verdict := "PASS"
	if peak >= 150 {
		verdict = "FAIL"
	}
	fmt.Printf("intake memory: %d emails (%d of %d MB) taken in by a poller process in %s; peak RSS %.0f MiB (goal < 150) %s\n",
		total, big, bigMB, time.Since(start).Round(time.Millisecond), peak, verdict)
	return nil
}

// runChild runs a poller with its own embedded JetStream until the inbox
// is empty: the process whose peak RSS the memory run reports.
func runChild(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 4 {
		return errors.New("-child wants host:port,user,password,datadir")
	}
	d := &dovecottest.Server{Addr: parts[0], User: parts[1], Password: parts[2]}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{DataDir: parts[3]})
	if err != nil {
		return err
	}
	defer q.Close()
	p, err := newPoller(q, imapConfig(d, 32<<20), parts[3]+"/spool")
	if err != nil {
		return err
	}
	c, err := dial(d)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for {
		left, err := inboxCount(c)
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		select {
		case err := <-done:
			return fmt.Errorf("poller stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	<-done
	return nil
}

// mailServer is where the latency run appends: Dovecot, or go-imap's
// in-memory server, which notifies IDLE at once (Dovecot waits 500 ms
// after a change before telling IDLE sessions, NOTIFY_DELAY_MSECS in its
// mailbox-watch.c), to show keydesk's own share.
type mailServer struct {
	name, addr, user, pass string
}

func benchLatency(n int) error {
	d, err := startDovecot()
	if err != nil {
		return err
	}
	defer d.Close()
	if err := latency(mailServer{"Dovecot", d.Addr, d.User, d.Password}, n); err != nil {
		return err
	}
	mem, err := mailsim.ServeIMAP("keydesk", "bench", mailsim.IMAPOptions{})
	if err != nil {
		return err
	}
	defer mem.Close()
	return latency(mailServer{"go-imap in-memory server", mem.Addr, "keydesk", "bench"}, n)
}

// latency appends n emails one at a time, each once the poller is idle
// again (in IDLE, the inbox empty), and times each until its request is in
// the queue.
func latency(ms mailServer, n int) error {
	d := &dovecottest.Server{Addr: ms.addr, User: ms.user, Password: ms.pass}
	dir, err := os.MkdirTemp("", "keydesk-bench-intake-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := queue.Open(ctx, queue.Options{DataDir: dir})
	if err != nil {
		return err
	}
	defer q.Close()
	p, err := newPoller(q, imapConfig(d, 10<<20), dir+"/spool")
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	c, err := dial(d)
	if err != nil {
		return err
	}
	defer c.Close()
	var lat []time.Duration
	for i := range n {
		// Wait until the previous email is moved and the poller is back
		// in IDLE, so that only IDLE can bring the next one in.
		for {
			left, err := inboxCount(c)
			if err != nil {
				return err
			}
			if left == 0 && p.Ready(ctx) == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(150 * time.Millisecond)
		raw := requestEmail(i, 0)
		start := time.Now()
		cmd := c.Append("INBOX", int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		if _, err := cmd.Wait(); err != nil {
			return err
		}
		for {
			reqs, err := q.List(ctx, queue.Filter{})
			if err != nil {
				return err
			}
			if len(reqs) == i+1 {
				break
			}
			if time.Since(start) > 30*time.Second {
				return fmt.Errorf("email %d not queued within 30s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	cancel()
	<-done
	slices.Sort(lat)
	p50, p95 := lat[len(lat)/2], lat[len(lat)*95/100]
	verdict := "PASS"
	if p50 >= 500*time.Millisecond {
		verdict = "FAIL"
	}
	fmt.Printf("intake latency (APPEND to queued, IDLE, %s): n=%d p50 %s p95 %s max %s (goal p50 < 0.5s) %s\n",
		ms.name, n, p50.Round(time.Millisecond), p95.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), verdict)
	return nil
}

var benchLevel = func() slog.Level {
	if os.Getenv("BENCH_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}()
