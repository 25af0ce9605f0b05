package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/review"
)

func runMailCmd(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		return mailList(ctx, stdout, args, getenv)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: keydesk mail list [options]\nRun 'keydesk mail list --help' for its options."+apiHelp)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q: use list", sub)
}

func mailList(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("mail list", "[--outcome O] [--sender TEXT] [--limit N] [--all] [--json]",
		"List the emails intake took out of the inbox, newest first: sender, subject, outcome\n"+
			"and reason, the mailbox each went to, the requests each made."+apiHelp)
	outcome := fs.String("outcome", "", "only this outcome (accept, review, reject, ignore, malformed, too-large, poison)")
	sender := fs.String("sender", "", "only senders whose address contains this text")
	limit := fs.Int("limit", 100, "at most this many per page")
	all := fs.Bool("all", false, "follow every page")
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 0)
	if err != nil {
		return err
	}
	q := listQuery(*limit, map[string]string{"outcome": *outcome, "sender": *sender})
	var list review.MailList
	if _, err := apiclient.GetPages(ctx, c, "/api/v1/mail", q, *all, func(page *review.MailList) string {
		page.Mail = append(list.Mail, page.Mail...)
		list = *page
		return page.NextCursor
	}); err != nil {
		return err
	}
	if ok, err := af.print(stdout, list); ok {
		return err
	}
	if len(list.Mail) == 0 {
		fmt.Fprintln(stdout, "No mail matches.")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tSENDER\tSUBJECT\tOUTCOME\tMOVED TO\tREQUESTS\tREASON")
	for _, m := range list.Mail {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.At.UTC().Format("2006-01-02 15:04Z"),
			dash(cell(m.From, 50)), dash(cell(m.Subject, 50)), dash(cell(m.Outcome, 20)), dash(cell(m.MovedTo, 30)),
			dash(strings.Join(m.Requests, ",")), dash(cell(m.Reason, 80)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var counts []string
	for o, n := range list.Counts {
		counts = append(counts, fmt.Sprintf("%s %d", cell(o, 20), n))
	}
	slices.Sort(counts)
	fmt.Fprintf(stdout, "\n%d shown of %d matching; all mail: %d (%s)\n", len(list.Mail), list.Matched, list.Total, strings.Join(counts, ", "))
	if list.NextCursor != "" {
		fmt.Fprintln(stdout, "More mail: add --all, or --limit.")
	}
	return nil
}

// cell makes hostile text one bounded table cell: no control characters
// (a terminal escape in a subject stays inert), no tab or newline to break
// the columns, at most n characters.
func cell(s string, n int) string {
	s = clean(s)
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n-1]) + "…"
	}
	return s
}
