package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/buildmarkets/keydesk/config"
)

// shutdownGrace is how long roles get to finish in-flight work after a
// stop signal before their context is cancelled.
const shutdownGrace = 30 * time.Second

func cmdServe(ctx context.Context, args []string) error {
	fs := newFlags("serve", "--config keydesk.yaml [--roles intake,review,batch,delivery]",
		"Run the given roles (default: all) until SIGTERM or SIGINT. SIGHUP reloads partners.yaml.")
	cfgPath := fs.String("config", "keydesk.yaml", "config `file`")
	rolesFlag := fs.String("roles", strings.Join(roleOrder, ","), "comma-separated roles to run: "+strings.Join(roleOrder, ", "))
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	roles, err := parseRoles(*rolesFlag)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if cfg != nil {
		err = errors.Join(err, settingsProblems(cfg, roles))
	}
	if err != nil {
		return fmt.Errorf("config has problems; 'keydesk check --config %s' lists them all:\n%w", *cfgPath, err)
	}
	log := newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	return serveRoles(ctx, cfg, log, roles, nil)
}

func parseRoles(s string) ([]string, error) {
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(roleOrder, r) {
			return nil, fmt.Errorf("--roles: unknown role %q: the roles are %s", r, strings.Join(roleOrder, ", "))
		}
		if _, ok := findRole(r); !ok {
			return nil, fmt.Errorf("--roles: role %q is not built into this keydesk", r)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--roles: name at least one role")
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(roleOrder, a) - slices.Index(roleOrder, b) })
	return out, nil
}

// serveRoles runs roles until ctx ends, then shuts down in two phases:
// roles get shutdownGrace to finish what they are doing, then their
// context is cancelled; parts stop in reverse start order. ready, if not
// nil, is called with the app once everything runs (the demo uses it).
// The contacts' keys are checked (wire_crypto.go).
func serveRoles(ctx context.Context, cfg *config.Config, log *slog.Logger, roles []string, ready func(*app) error) error {
	return serveRolesKeys(ctx, cfg, log, registryKeyChecker{}, roles, ready)
}

// serveRolesKeys is serveRoles with the checker of the contacts' keys
// (nil: they are only read, for tests whose key files are placeholders).
func serveRolesKeys(ctx context.Context, cfg *config.Config, log *slog.Logger, keys config.ContactKeyChecker, roles []string, ready func(*app) error) error {
	a, err := newApp(ctx, cfg, log, keys)
	if err != nil {
		return err
	}
	a.webPending.Store(slices.Contains(roles, "review"))
	defer func() {
		if err := a.close(); err != nil {
			log.Warn("shutdown", "err", err)
		}
	}()

	// HTTP first: /healthz answers at once and /readyz says what the
	// instance waits for, so that an orchestrator does not kill an
	// instance that waits for a recovering cluster.
	addr, httpErr, stopHTTP, err := listenHTTP(cfg, a.mux, log)
	if err != nil {
		return err
	}
	defer stopHTTP()
	log.Info("keydesk starting", "roles", strings.Join(roles, ","), "http", addr, "instance", a.holder, "nats", natsDesc(cfg))
	// Not ready until every role runs, whatever the other checks say.
	a.addCheck("roles", func(context.Context) error { return errors.New("starting") })
	if err := a.connect(ctx); err != nil {
		if ctx.Err() != nil {
			// Told to stop before NATS was reached: a clean stop.
			log.Info("stopped before the queue was open", "err", err)
			return nil
		}
		return err
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Two phases: at the signal, roleCtx ends and each role stops taking
	// work, finishing the item in hand on a context of its own (bounded by
	// the role); if roles are still running after shutdownGrace, runCtx —
	// the parent of every role's context — is cancelled too.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	started, err := startRoles(ctx, a, roles)
	if err != nil {
		return err
	}
	log.Info("keydesk serving", "roles", strings.Join(roles, ","), "http", addr, "instance", a.holder)
	a.removeCheck("roles")

	var wg sync.WaitGroup
	roleCtx, cancelRoles := context.WithCancel(runCtx)
	defer cancelRoles()
	for _, r := range started {
		wg.Go(func() { a.supervise(roleCtx, r.name, r.run) })
	}
	if ready != nil {
		if err := ready(a); err != nil {
			cancelRoles()
			wg.Wait()
			return err
		}
	}
	runErr := a.serveUntilStopped(ctx, hup, httpErr)
	cancelRoles()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		log.Warn("roles did not stop within the grace period; cancelling")
		cancelRun()
		<-done
	}
	log.Info("stopped")
	return runErr
}

// listenHTTP serves mux on review.listen (TLS if configured) and returns
// the address, the server's error and the function that shuts it down.
func listenHTTP(cfg *config.Config, mux http.Handler, log *slog.Logger) (string, <-chan error, func(), error) {
	ln, err := net.Listen("tcp", cfg.Review.Listen)
	if err != nil {
		return "", nil, nil, fmt.Errorf("review.listen %s: %w", cfg.Review.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	httpErr := make(chan error, 1)
	go func() {
		if cfg.Review.TLSCert != "" {
			httpErr <- srv.ServeTLS(ln, cfg.Path(cfg.Review.TLSCert), cfg.Path(cfg.Review.TLSKey))
		} else {
			httpErr <- srv.Serve(ln)
		}
	}()
	stop := func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}
	return ln.Addr().String(), httpErr, stop, nil
}

// running is a started role.
type running struct {
	name string
	run  func(context.Context) error
}

// startRoles builds each role, in order; the first that fails stops it.
func startRoles(ctx context.Context, a *app, roles []string) ([]running, error) {
	var started []running
	for _, name := range roles {
		r, _ := findRole(name)
		run, err := r.start(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		started = append(started, running{name, run})
	}
	return started, nil
}

// serveUntilStopped reloads the partners at each SIGHUP until ctx ends
// (nil) or the HTTP server fails (its error).
func (a *app) serveUntilStopped(ctx context.Context, hup <-chan os.Signal, httpErr <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping: finishing work in hand", "grace", shutdownGrace)
			return nil
		case <-hup:
			_ = a.partners.Reload()
		case err := <-httpErr:
			return fmt.Errorf("http: %w", err)
		}
	}
}

// Backoff of a role that stopped with an error.
const (
	firstRoleRestart = time.Second
	maxRoleRestart   = 30 * time.Second
)

// supervise runs a role until ctx ends. A role that stops with an error
// (the cluster lost its leader, a connection broke) is logged, shown on
// /readyz and started again after a backoff, rather than taking the
// process and the other roles down with it: what stops a role at run time
// is almost always a condition that time cures.
func (a *app) supervise(ctx context.Context, name string, run func(context.Context) error) {
	check := "role " + name
	wait := firstRoleRestart
	for {
		startedAt := time.Now()
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped without an error")
		}
		if time.Since(startedAt) > maxRoleRestart {
			wait = firstRoleRestart // it ran well for a while: start over
		}
		a.log.Error("role stopped; starting it again", "role", name, "err", err, "wait", wait)
		a.addCheck(check, func(context.Context) error { return fmt.Errorf("restarting after: %w", err) })
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		a.removeCheck(check)
		wait = min(wait*2, maxRoleRestart)
	}
}
func natsDesc(cfg *config.Config) string {
	if cfg.NATS.URL == "" {
		return "embedded"
	}
	return cfg.NATS.URL
}
