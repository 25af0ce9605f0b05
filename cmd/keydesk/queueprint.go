package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/review"
)

// The queue commands' output: the request table of 'queue list', the
// detail and history of 'queue show', and JSON for scripts. Every text
// that came from a request goes through clean first.

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

// printRequestTable prints list's table, or says none match; next says
// there are more pages than were fetched.
func printRequestTable(w io.Writer, reqs []review.Request, next string) error {
	if len(reqs) == 0 {
		fmt.Fprintln(w, "No requests match.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
		fmt.Fprintf(w, "\nMore requests: add --all, or --limit.\n")
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

func printRequest(w io.Writer, r *review.Request) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Request:\t%s\n", r.ID)
	fmt.Fprintf(tw, "State:\t%s\n", r.State)
	fmt.Fprintf(tw, "Kind:\t%s\n", dash(string(r.Kind)))
	fmt.Fprintf(tw, "Assignee:\t%s\n", dash(clean(r.Assignee)))
	if r.DuplicateOf != "" {
		fmt.Fprintf(tw, "Duplicate of:\t%s\n", clean(r.DuplicateOf))
	}
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
	if r.ReplacesKeyID != "" {
		fmt.Fprintf(tw, "Replaces key:\t%s\n", clean(r.ReplacesKeyID))
	}
	if len(r.KeyCandidates) > 0 {
		fmt.Fprintf(tw, "Key candidates:\t%s (pick one: POST /api/v1/requests/%s/key, or on its page)\n", clean(strings.Join(r.KeyCandidates, ", ")), r.ID)
	}
	if r.Reason != "" {
		fmt.Fprintf(tw, "Reason:\t%s\n", clean(r.Reason))
	}
	if rot := r.Rotation; rot != nil {
		var parts []string
		if !rot.Due.IsZero() {
			parts = append(parts, "old key revoked by "+rot.Due.UTC().Format("2006-01-02 15:04Z"))
		}
		if !rot.ConfirmedAt.IsZero() {
			parts = append(parts, "confirmed by "+clean(rot.ConfirmedBy))
		}
		if !rot.OldRevokedAt.IsZero() {
			parts = append(parts, "old key revoked "+rot.OldRevokedAt.UTC().Format("2006-01-02 15:04Z"))
		}
		fmt.Fprintf(tw, "Rotation:\t%s\n", dash(strings.Join(parts, "; ")))
	}
	if r.Problem != "" {
		fmt.Fprintf(tw, "Problem:\t%s\n", clean(r.Problem))
	}
	fmt.Fprintf(tw, "Created:\t%s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	_ = tw.Flush()
}

// printHistory prints show's history of a request, in the order the API gives it.
func printHistory(w io.Writer, history []review.HistoryEvent) {
	if len(history) > 0 {
		fmt.Fprintln(w, "\nHistory:")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, h := range history {
			move := string(h.To)
			if h.From != "" && h.From != h.To {
				move = string(h.From) + " -> " + string(h.To)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", h.At.UTC().Format("2006-01-02 15:04:05Z"), clean(h.Actor), clean(h.Action), move, clean(h.Change))
		}
		_ = tw.Flush()
	}
}

// printProposal prints the partner's proposed change of 'queue show' as
// a diff of its fields.
func printProposal(w io.Writer, p *review.ProposedChange) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "\nProposed change from %s (%s): 'keydesk queue accept|refuse ID' decides it\n", clean(p.From), p.At.UTC().Format("2006-01-02 15:04Z"))
	if len(p.Diff) == 0 {
		fmt.Fprintln(w, "  (it changes nothing)")
	}
	for _, c := range p.Diff {
		fmt.Fprintf(w, "  %s:\n    - %s\n    + %s\n", clean(c.Field), dash(clean(c.From)), dash(clean(c.To)))
	}
}

// printThread prints the conversation of 'queue show', oldest first,
// each text made inert for the terminal and indented under its entry.
func printThread(w io.Writer, th []keydesk.ThreadEntry) {
	if len(th) == 0 {
		return
	}
	fmt.Fprintln(w, "\nConversation:")
	for _, e := range th {
		who := clean(e.From)
		if e.To != "" {
			who += " -> " + clean(e.To)
		}
		fmt.Fprintf(w, "\n  %s  %s  %s\n", e.At.UTC().Format("2006-01-02 15:04:05Z"), strings.ReplaceAll(string(e.Kind), "_", " "), dash(who))
		if e.Subject != "" {
			fmt.Fprintf(w, "    Subject: %s\n", clean(e.Subject))
		}
		if e.Text != "" {
			for l := range strings.SplitSeq(strings.TrimRight(keydesk.SafeText(e.Text), "\n"), "\n") {
				fmt.Fprintf(w, "    | %s\n", l)
			}
		}
		if e.Truncated {
			fmt.Fprintf(w, "    (longer than the thread keeps%s)\n", map[bool]string{true: "; the whole email is in the mail store: " + clean(e.MailRef), false: ""}[e.MailRef != ""])
		}
	}
}

// printAction prints what a staff action did to a request: as JSON for
// scripts, or its ID and state, the server's message and any warning.
func printAction(stdout io.Writer, r *review.Request, asJSON bool) error {
	if asJSON {
		return printJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "%s: %s\n%s\n", r.ID, r.State, clean(r.Message))
	if r.Warning != "" {
		fmt.Fprintf(stdout, "Warning: %s\n", clean(r.Warning))
	}
	return nil
}
