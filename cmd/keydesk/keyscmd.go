package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/buildmarkets/keydesk/review"
)

// maxKeysListed bounds what 'keys list' asks the API for.
const maxKeysListed = 5000

func runKeysCmd(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		return keysList(ctx, stdout, args, getenv)
	case "revoke", "rotate":
		return keysAsk(ctx, stdout, sub, args, getenv)
	case "refresh":
		return keysRefresh(ctx, stdout, args, getenv)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: keydesk keys list|revoke|rotate|refresh [KEY_ID] [options]\n"+
			"A key is named by its partner, environment and key ID: key IDs repeat across them.\n"+
			"Run 'keydesk keys SUBCOMMAND --help' for its options."+apiHelp)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q: use list, revoke, rotate or refresh", sub)
}

func keysList(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("keys list", "[--partner P] [--environment E] [--live] [--json]",
		"List the partners' API keys as the batch role last listed them, with their age, who made\n"+
			"them and whether the rotation policy calls for a rotation."+apiHelp)
	partner := fs.String("partner", "", "only this partner ID")
	env := fs.String("environment", "", "only sandbox or production")
	live := fs.Bool("live", false, "only keys that are not revoked")
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 0)
	if err != nil {
		return err
	}
	q := listQuery(maxKeysListed, map[string]string{"partner": *partner, "environment": *env})
	var kl review.KeyList
	if err := c.Do(ctx, "GET", "/api/v1/keys?"+q.Encode(), nil, &kl); err != nil {
		return err
	}
	if *live {
		keys := kl.Keys[:0]
		for _, k := range kl.Keys {
			if k.RevokedAt == nil {
				keys = append(keys, k)
			}
		}
		kl.Keys = keys
	}
	if ok, err := af.print(stdout, kl); ok {
		return err
	}
	return printKeyTable(stdout, kl)
}

func printKeyTable(w io.Writer, kl review.KeyList) error {
	if len(kl.Keys) == 0 {
		fmt.Fprintln(w, "No keys match.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTNER\tENV\tKEY\tLABEL\tSCOPES\tAGE\tMADE BY\tSTATUS")
		for _, k := range kl.Keys {
			status := "live"
			if k.RevokedAt != nil {
				status = "revoked " + k.RevokedAt.UTC().Format("2006-01-02")
			}
			if k.RotationDue {
				status += ", due for rotation"
			}
			made := clean(k.MadeBy)
			if k.RequestID != "" {
				made += " " + clean(k.RequestID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%dd\t%s\t%s\n", clean(k.Partner), k.Environment, clean(k.KeyID), dash(clean(k.Label)),
				dash(clean(strings.Join(k.Scopes, ","))), k.AgeDays, dash(made), status)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, l := range kl.Listings {
		if l.Problem != "" {
			fmt.Fprintf(w, "\n%s/%s: the last listing failed: %s (the keys shown are those of the listing before)\n", clean(l.Partner), l.Environment, clean(l.Problem))
		}
	}
	return nil
}

func keysAsk(ctx context.Context, stdout io.Writer, act string, args []string, getenv func(string) string) error {
	summary := map[string]string{
		"revoke": "Ask to revoke one key. The request waits for approval (four eyes as review.four_eyes says);\n" +
			"once approved, the batch role revokes the key at once.",
		"rotate": "Ask to rotate one key: a new key with its label and scopes, delivered as an issued key is;\n" +
			"the old key is revoked when the contact confirms, or at the end of rotation.grace.",
	}[act]
	fs := newFlags("keys "+act, "--partner P --environment E KEY_ID --reason TEXT [--json]", summary+apiHelp)
	partner := fs.String("partner", "", "the key's partner ID (required)")
	env := fs.String("environment", "", "the key's environment: sandbox or production (required)")
	reason := fs.String("reason", "", "why (required; the approvers read it and the audit trail keeps it)")
	af := newAPIFlags(fs, getenv)
	if err := af.parseArgs(args, 1); err != nil {
		return err
	}
	switch {
	case *partner == "" || *env == "":
		return errors.New("--partner and --environment are required: key IDs repeat across partners and environments")
	case strings.TrimSpace(*reason) == "":
		return fmt.Errorf("--reason is required to %s a key", act)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var r review.Request
	body := review.KeyActionBody{Partner: *partner, Environment: *env, KeyID: fs.Arg(0), Reason: *reason}
	if err := c.Do(ctx, "POST", "/api/v1/keys/"+act, body, &r); err != nil {
		return err
	}
	return printAction(stdout, &r, *af.asJSON)
}

func keysRefresh(ctx context.Context, stdout io.Writer, args []string, getenv func(string) string) error {
	fs := newFlags("keys refresh", "[--json]", "Ask the batch role to list every partner's keys now."+apiHelp)
	af := newAPIFlags(fs, getenv)
	c, err := af.parse(args, 0)
	if err != nil {
		return err
	}
	var b map[string]any
	if err := c.Do(ctx, "POST", "/api/v1/keys/refresh", nil, &b); err != nil {
		return err
	}
	if ok, err := af.print(stdout, b); ok {
		return err
	}
	fmt.Fprintf(stdout, "Listing %v requested: a batch worker lists the keys shortly ('keydesk keys list' shows them).\n", b["id"])
	return nil
}
