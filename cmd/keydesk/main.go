// Command keydesk fulfils Buildmarkets API key requests sent by email.
//
// Each subcommand lives in its own file; commandTable lists them all, and
// main parses the first word and runs the command it names.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"golang.org/x/term"
)

// command is one subcommand.
type command struct {
	name    string
	args    string // usage after the name
	summary string
	// hidden keeps an old name out of the usage: it still runs.
	hidden bool
	// run gets the arguments after the name. Returning errUsage prints the
	// command's usage and exits 2.
	run func(ctx context.Context, args []string) error
}

var errUsage = errors.New("usage")

// exitError carries an exit code without further output.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// commandTable is every subcommand. A new command is a file with its run
// function and one line here.
func commandTable() []command {
	return []command{
		{name: "batch", args: "run|list [options]",
			summary: "run one batch now, or list batches (over the JSON API)",
			run: func(ctx context.Context, args []string) error {
				return runBatchCmd(ctx, os.Stdout, os.Stderr, args, os.Getenv)
			}},
		{name: "check", args: checkArgs,
			summary: "validate config, partners and their PGP keys; --connect logs in to every server",
			run:     cmdCheck},
		{name: "demo", args: "[--once] [--listen 127.0.0.1:8080] [--keep]",
			summary: "run keydesk end to end, everything embedded",
			run:     cmdDemo},
		{name: "fakeapi", args: "--listen ADDR --seed seed.json [--state file] [--latency 20ms] [--rate-limit 50]",
			summary: "run the Buildmarkets keys API simulator",
			run: func(ctx context.Context, args []string) error {
				return runFakeapi(ctx, os.Stdout, os.Stderr, args)
			}},
		{name: "init", args: initArgs,
			summary: "write a production configuration: keydesk.yaml, partners, staff, signing key, secrets",
			run:     cmdInit},
		{name: "keys", args: "list|revoke|rotate|refresh [KEY_ID] [options]",
			summary: "list the partners' keys; ask to revoke or rotate one (over the JSON API)",
			run: func(ctx context.Context, args []string) error {
				return runKeysCmd(ctx, os.Stdout, args, os.Getenv)
			}},
		{name: "mail", args: "list [options]",
			summary: "list the emails intake took in and what became of each (over the JSON API)",
			run: func(ctx context.Context, args []string) error {
				return runMailCmd(ctx, os.Stdout, args, os.Getenv)
			}},
		{name: "nats-setup", args: natsSetupArgs,
			summary: "create or update keydesk's NATS streams and buckets, then exit",
			run:     cmdNATSSetup},
		{name: "outbox", args: "dead|retry SEQ [--config keydesk.yaml] [--nats URL] [--json]",
			summary: "list outgoing mail that could not be sent, and send it again",
			run:     func(ctx context.Context, args []string) error { return cmdOutbox(ctx, args, os.Stdout) }},
		{name: "parse", args: "[--config keydesk.yaml] [--json] [--reply] FILE.eml... (- for stdin)",
			summary: "show what keydesk understands from request emails",
			run:     cmdParse},
		{name: "queue", args: "list|show|approve|reject|cancel [ID] [options]",
			summary: "review the request queue from a terminal (over the JSON API)",
			run: func(ctx context.Context, args []string) error {
				return runQueueCmd(ctx, os.Stdout, os.Stderr, args, os.Getenv)
			}},
		{name: "serve", args: "--config keydesk.yaml [--roles intake,review,batch,delivery]",
			summary: "run keydesk's roles",
			run:     cmdServe},
		{name: "setup", args: natsSetupArgs, hidden: true,
			summary: "the old name of nats-setup (says so, then runs it)",
			run:     cmdSetupAlias},
		{name: "users", args: "add NAME --role viewer|approver|admin [--write users.yaml [--owner USER[:GROUP]]]",
			summary: "make a staff account for the review UI and API",
			run:     cmdUsers},
		{name: "version", summary: "print the version", run: cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "keydesk fulfils Buildmarkets API key requests that partners send by email.\n\nUsage:\n")
	for _, c := range commandTable() {
		if c.hidden {
			continue
		}
		fmt.Fprintf(w, "  keydesk %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'keydesk COMMAND --help' for a command's options.\n")
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	commands := commandTable()
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(os.Stderr, "keydesk: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	c := commands[i]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal forces exit: shutdown is bounded, but a person
		// pressing ^C twice means it.
		<-ctx.Done()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		fmt.Fprintln(os.Stderr, "keydesk: second signal: exiting now")
		os.Exit(130)
	}()
	err := c.run(ctx, args[1:])
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "usage: keydesk %s %s\nRun 'keydesk %s --help' for details.\n", c.name, c.args, c.name)
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(os.Stderr, "keydesk %s: %v\n", c.name, err)
		return 1
	}
}

// newFlags returns a flag set whose --help prints the command's usage,
// summary and options.
func newFlags(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: keydesk %s %s\n\n%s\n", name, args, summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(fs.Output(), "\nOptions:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs is parseFlags for a command that takes exactly n arguments.
func parseArgs(fs *flag.FlagSet, args []string, n int) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != n {
		return errUsage
	}
	return nil
}

// parseFlags parses args, allowing flags after positional arguments too
// (keydesk parse a.eml --json).
func parseFlags(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// newLogger logs as text on a terminal and JSON otherwise.
func newLogger(w *os.File, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "" {
		format = "json"
		if term.IsTerminal(int(w.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
