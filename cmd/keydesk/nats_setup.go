package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/queue"
)

// natsSetupArgs is the usage of nats-setup (and of its old name).
const natsSetupArgs = "--config admin.yaml"

// cmdSetupAlias is the old name of nats-setup, kept for one release so
// that scripts and deployments written for it go on working while they
// are changed.
func cmdSetupAlias(ctx context.Context, args []string) error {
	fmt.Fprintln(os.Stderr, "keydesk: 'keydesk setup' is now 'keydesk nats-setup' (what it does: create NATS streams and buckets); the old name goes in the next release")
	return cmdNATSSetup(ctx, args)
}

func cmdNATSSetup(ctx context.Context, args []string) error {
	fs := newFlags("nats-setup", natsSetupArgs,
		"Connect to NATS as the config says and create (or update to this version's settings) every\n"+
			"stream and bucket keydesk uses, with nats.replicas replicas, then list them and exit.\n"+
			"On a cluster with least-privilege role users (deploy/nats), run it with the admin user's\n"+
			"certificate before the roles start, and after each upgrade; the roles run with\n"+
			"nats.skip_setup: true. nats.skip_setup is ignored here.")
	cfgPath := fs.String("config", "keydesk.yaml", "config `file`")
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("config has problems; 'keydesk check --config %s' lists them all:\n%w", *cfgPath, err)
	}
	return runNATSSetup(ctx, os.Stdout, cfg)
}

func runNATSSetup(ctx context.Context, w io.Writer, cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	qo := queueOptions(cfg, "keydesk nats-setup")
	qo.SkipSetup = false // making them is what setup is for
	q, err := queue.Open(ctx, qo)
	if err != nil {
		return fmt.Errorf("nats-setup: %w", err)
	}
	defer q.Close()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tREPLICAS\tMESSAGES\tBYTES")
	names := []string{queue.StreamAudit, queue.StreamOutbox, queue.StreamDeadLetter, "OBJ_" + queue.ObjectMail}
	for _, b := range []string{queue.BucketRequests, queue.BucketLocks, queue.BucketBatches, queue.BucketDeliveries, queue.BucketIntake, queue.BucketSessions} {
		names = append(names, "KV_"+b)
	}
	for _, n := range names {
		info, err := q.StreamInfo(ctx, n)
		if err != nil {
			return fmt.Errorf("nats-setup: stream %s: %w", n, err)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", n, info.Replicas, info.Msgs, info.Bytes)
	}
	return tw.Flush()
}
