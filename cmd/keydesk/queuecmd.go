package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/review"
)

const apiHelp = "\nThe server is KEYDESK_URL (default http://127.0.0.1:8080) and the API token KEYDESK_TOKEN\n" +
	"(make one with 'keydesk users add'); --url, --token-file and --ca-file override them."

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

// clean makes text from a request safe on a terminal, on one line
// (keydesk.SafeLine): an escape sequence or a bidi override in a label or
// a subject must not reach the terminal as is.
func clean(s string) string {
	return keydesk.SafeLine(s, 0)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: keydesk queue list|show|approve|reject|cancel [ID] [options]\nRun 'keydesk queue SUBCOMMAND --help' for its options."+apiHelp)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q: use list, show, approve, reject or cancel", sub)
}

func queueList(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("queue list", "[--state S] [--partner P] [--environment E] [--limit N] [--all] [--json]",
		"List requests, newest first (pending_review by default)."+apiHelp)
	state := fs.String("state", "pending_review", "only this state (comma-separated for several; \"\" for all)")
	partner := fs.String("partner", "", "only this partner ID")
	env := fs.String("environment", "", "only sandbox or production")
	limit := fs.Int("limit", 500, "at most this many per page")
	all := fs.Bool("all", false, "follow every page")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	mk := clientFlags(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errUsage
	}
	c, err := mk()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *state != "" {
		q.Set("state", *state)
	}
	if *partner != "" {
		q.Set("partner", *partner)
	}
	if *env != "" {
		q.Set("environment", *env)
	}
	q.Set("limit", fmt.Sprint(*limit))
	var reqs []review.Request
	next, err := apiclient.GetPages(ctx, c, "/api/v1/requests", q, *all, func(page *review.RequestList) string {
		reqs = append(reqs, page.Requests...)
		return page.NextCursor
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, review.RequestList{Requests: reqs, NextCursor: next})
	}
	if len(reqs) == 0 {
		fmt.Fprintln(stdout, "No requests match.")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPARTNER\tENV\tSCOPES\tLABEL\tAPPROVALS\tFLAGS\tAGE")
	now := time.Now()
	for _, r := range reqs {
		appr := "-"
		if r.State == "pending_review" {
			appr = fmt.Sprintf("%d/%d", len(r.Approvals), r.ApprovalsNeeded)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.State, dash(clean(r.Partner)), dash(r.Environment),
			dash(clean(strings.Join(r.Scopes, ","))), dash(clean(r.Label)), appr, dash(strings.Join(r.Flags, ",")), age(now, r.CreatedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(stdout, "\nMore requests: add --all, or --limit.\n")
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func queueShow(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("queue show", "ID [--json]", "Show one request with its history."+apiHelp)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	mk := clientFlags(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var r review.Request
	if err := c.Do(ctx, "GET", "/api/v1/requests/"+url.PathEscape(fs.Arg(0)), nil, &r); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, r)
	}
	printRequest(stdout, &r)
	if len(r.History) > 0 {
		fmt.Fprintln(stdout, "\nHistory:")
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, h := range r.History {
			move := string(h.To)
			if h.From != "" && h.From != h.To {
				move = string(h.From) + " -> " + string(h.To)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", h.At.UTC().Format("2006-01-02 15:04:05Z"), clean(h.Actor), clean(h.Action), move, clean(h.Change))
		}
		_ = tw.Flush()
	}
	return nil
}

func printRequest(w io.Writer, r *review.Request) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Request:\t%s\n", r.ID)
	fmt.Fprintf(tw, "State:\t%s\n", r.State)
	fmt.Fprintf(tw, "Partner:\t%s\n", dash(clean(r.Partner)))
	fmt.Fprintf(tw, "Requester:\t%s\n", clean(r.Requester))
	fmt.Fprintf(tw, "Subject:\t%s\n", dash(clean(r.Subject)))
	fmt.Fprintf(tw, "Environment:\t%s\n", dash(r.Environment))
	fmt.Fprintf(tw, "Scopes:\t%s\n", dash(strings.Join(r.Scopes, ", ")))
	fmt.Fprintf(tw, "Label:\t%s\n", dash(clean(r.Label)))
	fmt.Fprintf(tw, "Flags:\t%s\n", dash(strings.Join(r.Flags, ", ")))
	var ap []string
	for _, a := range r.Approvals {
		ap = append(ap, clean(a.By)+" at "+a.At.UTC().Format("2006-01-02 15:04Z"))
	}
	fmt.Fprintf(tw, "Approvals:\t%s (%d needed)\n", dash(strings.Join(ap, "; ")), r.ApprovalsNeeded)
	if r.KeyID != "" {
		fmt.Fprintf(tw, "Key:\t%s\n", clean(r.KeyID))
	}
	if r.Problem != "" {
		fmt.Fprintf(tw, "Problem:\t%s\n", clean(r.Problem))
	}
	fmt.Fprintf(tw, "Created:\t%s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	_ = tw.Flush()
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
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	mk := clientFlags(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	if act == "reject" && strings.TrimSpace(*reason) == "" {
		return errors.New("--reason is required to reject: the requester is told it")
	}
	c, err := mk()
	if err != nil {
		return err
	}
	var r review.Request
	if err := c.Do(ctx, "POST", "/api/v1/requests/"+url.PathEscape(fs.Arg(0))+"/"+act, review.ActionBody{Reason: *reason}, &r); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "%s: %s\n%s\n", r.ID, r.State, clean(r.Message))
	return nil
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
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	mk := clientFlags(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errUsage
	}
	c, err := mk()
	if err != nil {
		return err
	}
	if sub == "run" {
		var b map[string]any
		if err := c.Do(ctx, "POST", "/api/v1/batches", nil, &b); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, b)
		}
		fmt.Fprintf(stdout, "Batch %v requested: a batch worker starts it shortly ('keydesk batch list' shows it).\n", b["id"])
		return nil
	}
	var bl review.BatchList
	if err := c.Do(ctx, "GET", "/api/v1/batches", nil, &bl); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, bl)
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
