package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/delivery"
	"github.com/buildmarkets/keydesk/queue"
)

func cmdOutbox(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("outbox", "dead|retry SEQ [--config keydesk.yaml] [--nats URL] [--json]",
		"'dead' lists the outbox's dead letters: messages refused for good by the mail server,\n"+
			"not accepted within delivery.retry_for, or malformed. 'retry SEQ' puts one back in the\n"+
			"outbox with a fresh retry period. With the embedded NATS server, run it while keydesk\n"+
			"is stopped, or set nats.listen so it can connect to the running one.")
	cfgPath := fs.String("config", "keydesk.yaml", "config `file`")
	natsURL := fs.String("nats", "", "NATS `URL` (default: nats.url, else nats.listen of the embedded server)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errUsage
	}
	verb := fs.Arg(0)
	var seq uint64
	switch verb {
	case "dead":
		if fs.NArg() != 1 {
			return errUsage
		}
	case "retry":
		if fs.NArg() != 2 {
			return errUsage
		}
		n, err := strconv.ParseUint(fs.Arg(1), 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("retry: %q is not a dead-letter number: 'keydesk outbox dead' lists them in the SEQ column", fs.Arg(1))
		}
		seq = n
	default:
		return errUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fmt.Errorf("config has problems; 'keydesk check --config %s' lists them all:\n%w", *cfgPath, err)
	}
	q, err := openQueueForCLI(ctx, cfg, *natsURL)
	if err != nil {
		return err
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch verb {
	case "dead":
		dead, err := delivery.DeadLetters(ctx, q)
		if err != nil {
			return err
		}
		return printDeadLetters(stdout, dead, *asJSON)
	default:
		o, err := delivery.Retry(ctx, q, seq)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dead letter %d (%s %s to %s) is back in the outbox\n", seq, o.Kind, o.ID, strings.Join(o.To, ", "))
		return nil
	}
}

// queueOptions are the nats section as queue options, files resolved,
// for a connection called name.
func queueOptions(cfg *config.Config, name string) queue.Options {
	return queue.Options{
		URL: cfg.NATS.URL, CredsFile: cfg.Path(cfg.NATS.CredsFile), Replicas: cfg.NATS.Replicas,
		DataDir: cfg.Path(cfg.DataDir), Name: name,
		TLSCAFile: cfg.Path(cfg.NATS.TLSCAFile), TLSCert: cfg.Path(cfg.NATS.TLSCert), TLSKey: cfg.Path(cfg.NATS.TLSKey),
		SkipSetup: cfg.NATS.SkipSetup, InboxPrefix: cfg.NATS.InboxPrefix, AuditMaxBytes: int64(cfg.NATS.AuditMaxBytes),
	}
}

// dialURL is where a command reaches keydesk's NATS: the cluster, or a
// running embedded server through nats.listen; empty when it can be
// reached in process only.
func dialURL(cfg *config.Config) string {
	if cfg.NATS.URL == "" && cfg.NATS.Listen != "" {
		return "nats://" + cfg.NATS.Listen
	}
	return cfg.NATS.URL
}

// openQueueForCLI connects to the cluster, or to a running embedded server
// through nats.listen, or else opens the embedded store itself (which a
// running keydesk holds locked).
func openQueueForCLI(ctx context.Context, cfg *config.Config, url string) (*queue.Conn, error) {
	o := queueOptions(cfg, "keydesk outbox")
	o.URL = url
	if o.URL == "" {
		o.URL = dialURL(cfg)
	}
	o.SkipSetup = o.URL != ""
	q, err := queue.Open(ctx, o)
	if err != nil && o.URL == "" {
		return nil, errors.Join(err, errors.New("outbox: with the embedded server, stop keydesk first or set nats.listen so this command can connect to it"))
	}
	return q, err
}

func printDeadLetters(w io.Writer, dead []delivery.DeadLetter, asJSON bool) error {
	if asJSON {
		if dead == nil {
			dead = []delivery.DeadLetter{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(dead)
	}
	if len(dead) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tWHEN\tKIND\tID\tTO\tWHY")
	for _, d := range dead {
		kind, id, to := string(d.Kind), d.ID, strings.Join(d.To, ",")
		if !d.Found {
			kind, id, to = "?", "(original not kept)", "?"
		}
		why := d.Why
		if len(why) > 120 {
			why = why[:117] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.At.UTC().Format("2006-01-02 15:04"), kind, id, to, why)
	}
	return tw.Flush()
}
