package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/queue"
)

func cmdDemo(ctx context.Context, args []string) error {
	fs := newFlags("demo", "[--once] [--listen 127.0.0.1:8080] [--keep]",
		"Run keydesk's real roles (intake, review, batch, delivery) against servers the demo starts in\n"+
			"process: NATS JetStream, an IMAP mailbox seeded with partners' emails, an SMTP sink and the\n"+
			"Buildmarkets API simulator, with OpenPGP keys made at start. It prints the review UI's address\n"+
			"and logins; approve requests there, and watch the encrypted deliveries arrive and open.\n\n"+
			"With --once it approves as the demo reviewers itself, prints a summary and exits 0 only if\n"+
			"everything expected happened.")
	once := fs.Bool("once", false, "run the whole flow without a person, print a summary, exit")
	listen := fs.String("listen", "", "review UI address (default 127.0.0.1:8080, or a free port if that is taken; --once: a free port)")
	keep := fs.Bool("keep", false, "keep the demo's directory (config, keys, NATS data, log) after it ends")
	timeout := fs.Duration("timeout", 50*time.Second, "--once: how long the whole flow may take")
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	sum, err := demo.Run(ctx, demoWiring(demo.Options{Once: *once, Listen: *listen, Keep: *keep, Timeout: *timeout, Out: os.Stdout}))
	if err != nil {
		return err
	}
	if *once && !sum.OK() {
		return exitError{1}
	}
	return nil
}

// demoWiring gives the demo this command's wiring: it runs the
// production roles through serveRoles and runNATSSetup.
func demoWiring(o demo.Options) demo.Options {
	o.Roles = roleOrder
	o.Serve = func(ctx context.Context, cfg *config.Config, log *slog.Logger, roles []string, ready func(*queue.Conn) error) error {
		var onReady func(*app) error
		if ready != nil {
			onReady = func(a *app) error { return ready(a.q) }
		}
		return serveRoles(ctx, cfg, log, roles, onReady)
	}
	o.Setup = func(ctx context.Context, cfg *config.Config) error { return runNATSSetup(ctx, io.Discard, cfg) }
	return o
}
