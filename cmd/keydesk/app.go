package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/observe"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// app holds what the roles are built from. It is made once per serve (or
// demo) and passed to each role's constructor: there are no globals.
type app struct {
	cfg      *config.Config
	log      *slog.Logger
	q        *queue.Conn
	metrics  *metrics.Registry
	partners *partnerSource
	// mux serves /healthz, /readyz and /metrics, and the review UI and API
	// when that role runs (through web).
	mux *http.ServeMux
	// web is the review role's handler, set when it starts; until then
	// the review paths answer 503 "starting" if the role is to run here.
	web        atomic.Pointer[http.Handler]
	webPending atomic.Bool
	// holder names this instance in leases and audit events.
	holder string

	mu     sync.Mutex
	checks map[string]func(ctx context.Context) error
	// closers run after the roles stop, in reverse order.
	closers []func() error
}

// role is one of intake, review, batch, delivery. start builds it and
// returns the function that runs it until ctx ends.
type role struct {
	name  string
	start func(ctx context.Context, a *app) (run func(ctx context.Context) error, err error)
}

// roleTable is every role, in the order they start (and stop in
// reverse). A new role is a file with its start function and one line here.
func roleTable() []role {
	return []role{
		{name: "delivery", start: startDelivery},
		{name: "batch", start: startBatch},
		{name: "review", start: startReview},
		{name: "intake", start: startIntake},
	}
}

// roleOrder is the roles' names in the order they start.
var roleOrder = []string{"delivery", "batch", "review", "intake"}

// findRole returns the role of that name.
func findRole(name string) (role, bool) {
	for _, r := range roleTable() {
		if r.name == name {
			return r, true
		}
	}
	return role{}, false
}

// addCheck registers a readiness check shown on /readyz.
func (a *app) addCheck(name string, fn func(ctx context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks[name] = fn
}

// removeCheck drops a readiness check.
func (a *app) removeCheck(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.checks, name)
}

// onClose runs fn when the app shuts down, after the roles have stopped.
func (a *app) onClose(fn func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closers = append(a.closers, fn)
}

func instanceName() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "keydesk"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

// newApp loads the partners and sets up /healthz, /readyz and /metrics.
// It does not reach NATS: connect does, so that an instance can answer
// its health probe while the cluster is still recovering. keys checks the
// contacts' keys (nil: they are only read, for tests whose key files are
// placeholders).
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, keys config.ContactKeyChecker) (*app, error) {
	a := &app{
		cfg: cfg, log: log, metrics: metrics.New(), mux: http.NewServeMux(),
		holder: instanceName(), checks: map[string]func(context.Context) error{},
	}
	ps, err := newPartnerSource(cfg, log, keys)
	if err != nil {
		return nil, err
	}
	a.partners = ps
	a.setWaiting(errors.New("connecting"))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	a.mux.HandleFunc("GET /readyz", a.serveReady)
	a.mux.Handle("GET /metrics", a.metrics)
	a.mux.HandleFunc("/", a.serveWeb)
	a.metrics.Gauge("keydesk_up", "1 while keydesk runs.").Set(1)
	return a, nil
}

// setWaiting makes /readyz say why the queue is not there yet.
func (a *app) setWaiting(err error) {
	a.addCheck("nats", func(context.Context) error {
		return fmt.Errorf("waiting for the NATS cluster: %w", err)
	})
}

// Backoff of connect: the first retry comes quickly (a leader election
// takes seconds), later ones no more often than maxConnectWait.
const (
	firstConnectWait = 500 * time.Millisecond
	maxConnectWait   = 15 * time.Second
)

// connect opens the queue, trying again with backoff for as long as the
// failure is one that time cures (no servers, no stream leader, a
// timeout), until ctx ends: an instance started while the cluster
// recovers waits for it instead of exiting. /readyz shows the reason
// meanwhile. A configuration mistake, or an embedded server that cannot
// start, ends it at once. Once the queue is open, the gauges and alerts
// that concern the whole deployment start.
func (a *app) connect(ctx context.Context) error {
	cfg := a.cfg
	o := queueOptions(cfg, "keydesk "+a.holder)
	o.Listen, o.Logger = cfg.NATS.Listen, a.log
	wait := firstConnectWait
	for try := 1; ; try++ {
		q, err := queue.Open(ctx, o)
		if err == nil {
			a.q = q
			a.addCheck("nats", q.Ready)
			if try > 1 {
				a.log.Info("nats ready", "tries", try)
			}
			a.startObserve()
			return nil
		}
		if cfg.NATS.URL == "" || errors.Is(err, queue.ErrConfig) || ctx.Err() != nil {
			return err
		}
		a.setWaiting(err)
		a.log.Warn("nats not ready; trying again", "err", err, "try", try, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for the NATS cluster: %w", err)
		case <-time.After(wait):
		}
		wait = min(wait*2, maxConnectWait)
	}
}

// serveWeb hands a request to the review role, or says why it cannot: a
// client that reached an instance still starting (waiting for NATS) is
// told to try again, not that the page does not exist.
func (a *app) serveWeb(w http.ResponseWriter, r *http.Request) {
	if h := a.web.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	if !a.webPending.Load() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Retry-After", "2")
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"error": "keydesk is starting (waiting for its store): try again in a few seconds", "code": "starting"}`)
		return
	}
	http.Error(w, "keydesk is starting (waiting for its store): try again in a few seconds", http.StatusServiceUnavailable)
}

func (a *app) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	// A copy: a role that stops removes its check meanwhile.
	a.mu.Lock()
	names := make([]string, 0, len(a.checks))
	checks := make(map[string]func(context.Context) error, len(a.checks))
	for n, c := range a.checks {
		names = append(names, n)
		checks[n] = c
	}
	a.mu.Unlock()
	sort.Strings(names)
	var b strings.Builder
	ok := true
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			ok = false
			fmt.Fprintf(&b, "%s: %v\n", n, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", n)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}

// close runs the closers in reverse and closes the queue last.
func (a *app) close() error {
	a.mu.Lock()
	closers := a.closers
	a.closers = nil
	a.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	if a.q != nil {
		errs = append(errs, a.q.Close())
	}
	return errors.Join(errs...)
}

// startObserve runs the deployment's gauges and alerts (package observe)
// until the app closes.
func (a *app) startObserve() {
	tpl, err := templates.Load(a.cfg.Path(a.cfg.Templates.Dir))
	if err != nil {
		a.log.Error("observability: templates: contact key alerts are off", "err", err)
	}
	o := observe.New(observe.Options{
		Queue: a.q, Partners: a.partners.Current, SupportAddress: a.cfg.SMTP.SupportAddress, Templates: tpl,
		Metrics: a.metrics, Log: a.log.With("part", "observability"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.Run(ctx)
	}()
	a.onClose(func() error {
		cancel()
		<-done
		return nil
	})
}
