package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/review"
)

const apiHelp = "\nThe server is KEYDESK_URL (default http://127.0.0.1:8080) and the API token KEYDESK_TOKEN\n" +
	"(make one with 'keydesk users add'); --url, --token-file and --ca-file override them."

// apiFlags are the flags every command that calls the review JSON API
// shares: the connection (clientFlags) and --json.
type apiFlags struct {
	fs     *flag.FlagSet
	asJSON *bool
	client func() (*apiclient.Client, error)
}

func newAPIFlags(fs *flag.FlagSet, getenv func(string) string) *apiFlags {
	return &apiFlags{fs: fs, asJSON: fs.Bool("json", false, "print JSON for scripts"), client: clientFlags(fs, getenv)}
}

// parseArgs parses args, which must leave nargs arguments.
func (f *apiFlags) parseArgs(args []string, nargs int) error {
	return parseArgs(f.fs, args, nargs)
}

// parse is parseArgs, then the client the flags say.
func (f *apiFlags) parse(args []string, nargs int) (*apiclient.Client, error) {
	if err := f.parseArgs(args, nargs); err != nil {
		return nil, err
	}
	return f.client()
}

// print prints v as JSON with --json and says so; otherwise the caller
// prints its table.
func (f *apiFlags) print(w io.Writer, v any) (bool, error) {
	if !*f.asJSON {
		return false, nil
	}
	return true, printJSON(w, v)
}

// listQuery is a list command's API query: its filters, those left empty
// left out, and the page size.
func listQuery(limit int, filters map[string]string) url.Values {
	q := url.Values{}
	for k, v := range filters {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", fmt.Sprint(limit))
	return q
}

// clientFlags adds the connection flags to fs and returns a constructor
// to call after parsing.
func clientFlags(fs *flag.FlagSet, getenv func(string) string) func() (*apiclient.Client, error) {
	u := fs.String("url", "", "keydesk review `URL` (default $KEYDESK_URL or http://127.0.0.1:8080)")
	tokenFile := fs.String("token-file", "", "read the API token from `file` instead of $KEYDESK_TOKEN")
	caFile := fs.String("ca-file", "", "trust this CA `file` for an https URL (default $KEYDESK_CA_FILE)")
	return func() (*apiclient.Client, error) {
		base := *u
		if base == "" {
			base = getenv("KEYDESK_URL")
		}
		if base == "" {
			base = "http://127.0.0.1:8080"
		}
		pu, err := url.Parse(base)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("KEYDESK_URL %q is not an http(s) URL such as https://keydesk.internal:8080", base)
		}
		token := strings.TrimSpace(getenv("KEYDESK_TOKEN"))
		if *tokenFile != "" {
			b, err := os.ReadFile(*tokenFile)
			if err != nil {
				return nil, fmt.Errorf("--token-file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		if token == "" {
			return nil, errors.New("no API token: set KEYDESK_TOKEN (or --token-file); 'keydesk users add' makes one")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		ca := *caFile
		if ca == "" {
			ca = getenv("KEYDESK_CA_FILE")
		}
		if ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", ca)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		return &apiclient.Client{Base: strings.TrimRight(base, "/"), Token: token, HC: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
	}
}

func runQueueCmd(ctx context.Context, stdout, stderr io.Writer, args []string, getenv func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		return queueList(ctx, stdout, args, getenv)
	case "show":
		return queueShow(ctx, stdout, args, getenv)
	case "approve", "reject", "cancel":
		return queueAct(ctx, stdout, sub, args, getenv)
	case "note", "reply":
		return queueWrite(ctx, stdout, sub, args, getenv)
	case "assign":
		return queueAssign(ctx, stdout, args, getenv)
	case "accept", "refuse":
		return queueDecide(ctx, stdout, sub, args, getenv)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: keydesk queue list|show|approve|reject|cancel|note|reply|assign|accept|refuse [ID] [options]\nRun 'keydesk queue SUBCOMMAND --help' for its options."+apiHelp)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q: use list, show, approve, reject, cancel, note, reply, assign, accept or refuse", sub)
}

func queueList(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("queue list", "[--state S] [--partner P] [--environment E] [--kind K] [--assignee USER|me] [--q TEXT] [--limit N] [--all] [--json]",
		"List requests, newest first (pending_review by default)."+apiHelp)
	state := fs.String("state", "pending_review", "only this state (comma-separated for several; \"\" for all)")
	partner := fs.String("partner", "", "only this partner ID")
	env := fs.String("environment", "", "only sandbox or production")
	kind := fs.String("kind", "", "only issue, revoke or rotate requests")
	assignee := fs.String("assignee", "", "only requests assigned to this staff member (me: you)")
	find := fs.String("q", "", "only requests whose ID, label, sender or partner contains this text (any case)")
	limit := fs.Int("limit", 500, "at most this many per page")
	all := fs.Bool("all", false, "follow every page")
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 0)
	if err != nil {
		return err
	}
	q := listQuery(*limit, map[string]string{"state": *state, "partner": *partner, "environment": *env,
		"kind": *kind, "assignee": *assignee, "q": *find})
	var reqs []review.Request
	next, err := apiclient.GetPages(ctx, c, "/api/v1/requests", q, *all, func(page *review.RequestList) string {
		reqs = append(reqs, page.Requests...)
		return page.NextCursor
	})
	if err != nil {
		return err
	}
	if ok, err := af.print(stdout, review.RequestList{Requests: reqs, NextCursor: next}); ok {
		return err
	}
	return printRequestTable(stdout, reqs, next)
}

func queueShow(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("queue show", "ID [--json]", "Show one request with its proposed change, history and conversation (oldest first)."+apiHelp)
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 1)
	if err != nil {
		return err
	}
	var r review.Request
	if err := c.Do(ctx, "GET", "/api/v1/requests/"+url.PathEscape(fs.Arg(0)), nil, &r); err != nil {
		return err
	}
	if ok, err := af.print(stdout, r); ok {
		return err
	}
	printRequest(stdout, &r)
	printProposal(stdout, r.ProposedChange)
	printHistory(stdout, r.History)
	printThread(stdout, r.Thread)
	return nil
}

func queueAct(ctx context.Context, stdout io.Writer, act string, args []string, getenv func(string) string) error {
	usage := "ID [--json]"
	summary := map[string]string{
		"approve": "Approve a request. Under four eyes, the first approval is recorded and a second, different\napprover completes it.",
		"reject":  "Reject a request; the requester is told the reason (unless the sender is unknown).",
		"cancel":  "Cancel a request that no key has been made for yet.",
	}[act]
	if act != "approve" {
		usage = "ID --reason TEXT [--json]"
	}
	fs := newFlags("queue "+act, usage, summary+apiHelp)
	reason := fs.String("reason", "", "why (required to reject; the requester reads it)")
	af := newAPIFlags(fs, getenv)
	if err := af.parseArgs(args, 1); err != nil {
		return err
	}
	if act == "reject" && strings.TrimSpace(*reason) == "" {
		return errors.New("--reason is required to reject: the requester is told it")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	r, err := c.Act(ctx, fs.Arg(0), act, review.ActionBody{Reason: *reason})
	if err != nil {
		return err
	}
	return printAction(stdout, r, *af.asJSON)
}

func runBatchCmd(ctx context.Context, stdout, stderr io.Writer, args []string, getenv func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	sub, args := args[0], args[1:]
	if sub != "run" && sub != "list" {
		if sub == "-h" || sub == "--help" {
			fmt.Fprintln(stdout, "usage: keydesk batch run|list [--json]"+apiHelp)
			return nil
		}
		return fmt.Errorf("unknown subcommand %q: use run or list", sub)
	}
	fs := newFlags("batch "+sub, "[--json]", map[string]string{
		"run":  "Ask for a batch to run now (admin role); a batch worker starts it within seconds.",
		"list": "List the latest batches with their outcome counts, and the next scheduled run.",
	}[sub]+apiHelp)
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 0)
	if err != nil {
		return err
	}
	if sub == "run" {
		var b map[string]any
		if err := c.Do(ctx, "POST", "/api/v1/batches", nil, &b); err != nil {
			return err
		}
		if ok, err := af.print(stdout, b); ok {
			return err
		}
		fmt.Fprintf(stdout, "Batch %v requested: a batch worker starts it shortly ('keydesk batch list' shows it).\n", b["id"])
		return nil
	}
	var bl review.BatchList
	if err := c.Do(ctx, "GET", "/api/v1/batches", nil, &bl); err != nil {
		return err
	}
	if ok, err := af.print(stdout, bl); ok {
		return err
	}
	if bl.NextRun != nil {
		fmt.Fprintf(stdout, "Next scheduled run: %s\n\n", bl.NextRun.Format("2006-01-02 15:04 MST"))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tTRIGGER\tBY\tSTATE\tREQUESTED\tOUTCOMES")
	for _, b := range bl.Batches {
		var counts []string
		for _, k := range slices.Sorted(maps.Keys(b.Counts)) {
			counts = append(counts, fmt.Sprintf("%s=%d", clean(k), b.Counts[k]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.ID, b.Trigger, dash(clean(b.By)), b.State, b.Requested.UTC().Format("2006-01-02 15:04Z"), dash(strings.Join(counts, " ")))
	}
	return tw.Flush()
}
