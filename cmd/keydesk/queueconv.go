package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/buildmarkets/keydesk/review"
)

// The queue commands of a request's conversation: a note, a reply to the
// requester, the assignee, and the partner's proposed change.

// maxTextFile bounds a reply or note read from a file: the API takes at
// most 64 KiB a request.
const maxTextFile = 60 << 10

// queueWrite is 'queue note' and 'queue reply'.
func queueWrite(ctx context.Context, stdout io.Writer, act string, args []string, getenv func(string) string) error {
	summary := map[string]string{
		"note":  "Add an internal note to a request's conversation. Notes are for staff: they are never sent.",
		"reply": "Send an email to the request's requester (only to them), with the request's facts added.\nText that holds a secret (a bm_secret_ value, a private key) is refused.",
	}[act]
	fs := newFlags("queue "+act, "ID TEXT... | ID --file FILE [--json]", summary+apiHelp)
	file := fs.String("file", "", "read the text from `FILE` instead of the arguments")
	af := newAPIFlags(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || (*file == "") == (fs.NArg() < 2) {
		return errUsage
	}
	text := strings.Join(fs.Args()[1:], " ")
	if *file != "" {
		b, err := readTextFile(*file)
		if err != nil {
			return err
		}
		text = b
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	path := map[string]string{"note": "notes", "reply": "reply"}[act]
	r, err := c.Act(ctx, fs.Arg(0), path, review.ActionBody{Text: text})
	if err != nil {
		return err
	}
	return printAction(stdout, r, *af.asJSON)
}

func readTextFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("--file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTextFile+1))
	if err != nil {
		return "", fmt.Errorf("--file: %w", err)
	}
	if len(b) > maxTextFile {
		return "", fmt.Errorf("--file %s is over %d KiB: keep a note or reply shorter", name, maxTextFile>>10)
	}
	return string(b), nil
}

// queueAssign is 'queue assign ID USER'.
func queueAssign(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("queue assign", "ID USER | ID --unassign [--json]",
		"Assign a request to a staff member of users.yaml (\"\" or --unassign: to nobody)."+apiHelp)
	unassign := fs.Bool("unassign", false, "assign the request to nobody")
	af := newAPIFlags(fs, getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var user string
	switch {
	case *unassign && fs.NArg() == 1:
	case !*unassign && fs.NArg() == 2:
		user = fs.Arg(1)
	default:
		return errUsage
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	r, err := c.Act(ctx, fs.Arg(0), "assign", review.ActionBody{User: &user})
	if err != nil {
		return err
	}
	return printAction(stdout, r, *af.asJSON)
}

// queueDecide is 'queue accept' and 'queue refuse' of a proposed change.
func queueDecide(ctx context.Context, stdout io.Writer, act string, args []string, getenv func(string) string) error {
	summary := map[string]string{
		"accept": "Accept the change the partner proposed in a reply: the request's fields become the proposed ones,\nit stays pending review for approval, and the requester is told. A change that widens access\nis marked as yours: you then cannot approve the request.",
		"refuse": "Refuse the change the partner proposed in a reply: the fields are kept, the request stays\npending review, and the requester is told.",
	}[act]
	fs := newFlags("queue "+act, "ID [--json]", summary+apiHelp)
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 1)
	if err != nil {
		return err
	}
	r, err := c.Act(ctx, fs.Arg(0), "proposal/"+act, review.ActionBody{})
	if err != nil {
		return err
	}
	return printAction(stdout, r, *af.asJSON)
}
