package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/templates"
)

// expiringWithin is how close a contact key's expiry must be to flag its
// partner's requests contact-key-expiring; `keydesk check` warns at the same point.
const expiringWithin = 30 * 24 * time.Hour

func cmdParse(_ context.Context, args []string) error {
	fs := newFlags("parse", "[--config keydesk.yaml] [--json] [--reply] FILE.eml... (- for stdin)",
		"Parse request emails exactly as intake does and print the verdict, the sender, the partner,\n"+
			"each request with its ID, state and flags, and every reason and warning. Nothing is queued\n"+
			"or sent. Without --config the built-in example registry is used (partners acme and globex,\n"+
			"authserv-id mx.buildmarkets.ai, Microsoft 365 tenant "+parse.ExampleTenantID+",\n"+
			"DMARC required, internal domain buildmarkets.ai).")
	cfgPath := fs.String("config", "", "config `file`: use its partners, sender_auth and limits")
	asJSON := fs.Bool("json", false, "print one JSON object per email (JSON lines)")
	showReply := fs.Bool("reply", false, "also print the acknowledgement or rejection that would be sent")
	nowFlag := fs.String("now", "", "evaluate as of this `time` (RFC 3339); default: now")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errUsage
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return fmt.Errorf("--now: %v: write e.g. 2026-11-27T09:00:00Z", err)
		}
		now = t
	}
	return runParse(os.Stdin, os.Stdout, os.Stderr, parseRun{cfgPath: *cfgPath, json: *asJSON, reply: *showReply, now: now}, fs.Args())
}

type parseRun struct {
	cfgPath string
	json    bool
	reply   bool
	now     time.Time
}

func runParse(stdin io.Reader, stdout, stderr io.Writer, pr parseRun, files []string) error {
	o, schedule, tdir, err := parseOptions(pr.cfgPath, pr.now)
	if err != nil {
		return err
	}
	var tmpl *templates.Set
	var nextBatch time.Time
	if pr.reply {
		if tmpl, err = templates.Load(tdir); err != nil {
			return err
		}
		if s, err := cron.ParseStandard(schedule); err == nil {
			nextBatch = s.Next(pr.now)
		}
	}
	failed := 0
	for _, name := range files {
		res, err := parseFile(stdin, name, o)
		if err != nil {
			fmt.Fprintf(stderr, "keydesk parse: %v\n", err)
			failed++
			continue
		}
		label := name
		if name != "-" {
			label = filepath.Base(name)
		}
		if pr.json {
			line, err := res.Summary(label).JSONLine()
			if err != nil {
				return err
			}
			if _, err := stdout.Write(line); err != nil {
				return err
			}
		} else {
			printResult(stdout, name, res)
		}
		if pr.reply {
			out, err := reply.Build(res, tmpl, nextBatch)
			if err != nil {
				return err
			}
			printReply(stdout, pr.json, out)
		}
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

func parseFile(stdin io.Reader, name string, o parse.Options) (*parse.Result, error) {
	if name == "-" {
		return parse.Parse(stdin, o)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := parse.Parse(f, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return res, nil
}

// parseOptions builds the parser's options from the config, as the intake
// role does, or the example options without one.
func parseOptions(cfgPath string, now time.Time) (o parse.Options, schedule, templateDir string, err error) {
	if cfgPath == "" {
		return parse.ExampleOptions(now), config.Default().Batch.Schedule, "", nil
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return o, "", "", err
	}
	reg, err := config.LoadPartners(cfg.Path(cfg.PartnersFile), registryKeyChecker{}, now)
	if err != nil {
		return o, "", "", fmt.Errorf("%w\n(run keydesk check --config %s for details)", err, cfgPath)
	}
	o = parseOptionsFromConfig(cfg, reg, func() time.Time { return now })
	dir := cfg.Templates.Dir
	if dir != "" {
		dir = cfg.Path(dir)
	}
	return o, cfg.Batch.Schedule, dir, nil
}

// parseOptionsFromConfig is the parser's configuration as keydesk.yaml
// states it: sender_auth, imap.hard_max_message_bytes (refused past it),
// imap.max_message_bytes (kept up to it), and the contact-key
// checks on the loaded registry, the same for `keydesk parse` and the intake
// role (an unusable key rejects; one expiring within 30 days is flagged).
func parseOptionsFromConfig(cfg *config.Config, reg *keydesk.Registry, now func() time.Time) parse.Options {
	return parse.Options{
		Registry:             reg,
		TrustedAuthservIDs:   cfg.SenderAuth.TrustedAuthservIDs,
		RequireDMARC:         cfg.SenderAuth.DMARCRequired(),
		InternalDomains:      cfg.SenderAuth.InternalDomains,
		RelationshipManagers: cfg.SenderAuth.RelationshipManagers,
		Microsoft365TenantID: cfg.SenderAuth.Microsoft365.TenantID,
		MaxBytes:             int64(cfg.IMAP.HardMaxMessageBytes),
		KeepBytes:            int64(cfg.IMAP.MaxMessageBytes),
		Now:                  now,
		// The full check, the one the batch makes before a key is created:
		// expired, revoked, sign-only or too weak, the key cannot be used.
		ContactKeyProblem: func(p *keydesk.Partner) error { return crypto.CheckPartnerKey(p, now()) },
		ExpiringSoon: func(p *keydesk.Partner) bool {
			exp := p.TechnicalContact.KeyExpires
			return !exp.IsZero() && exp.Sub(now()) < expiringWithin
		},
	}
}

func printResult(w io.Writer, name string, r *parse.Result) {
	partner := "no partner"
	if r.Partner != nil {
		partner = "partner " + r.Partner.ID
	}
	// Everything printed came in the email: inert on the terminal.
	sender := keydesk.SafeLine(r.From, 0)
	if sender == "" {
		sender = "unknown sender"
	}
	fmt.Fprintf(w, "%s: %s — %s, %s", name, strings.ToUpper(string(r.Verdict)), sender, partner)
	if r.Via != "" {
		fmt.Fprintf(w, ", forwarded by %s", keydesk.SafeLine(r.Via, 0))
	}
	fmt.Fprintln(w)
	if r.Subject != "" {
		fmt.Fprintf(w, "  subject:    %s\n", keydesk.SafeLine(r.Subject, 0))
	}
	if r.MessageID != "" {
		fmt.Fprintf(w, "  message-id: %s\n", keydesk.SafeLine(r.MessageID, 0))
	}
	for _, q := range r.Requests {
		env := string(q.Environment)
		if env == "" {
			env = "?"
		}
		var scopes []string
		for _, s := range q.Scopes {
			scopes = append(scopes, string(s))
		}
		fmt.Fprintf(w, "  %s  %-14s %-10s label %q  scopes %s", q.ID, q.State, env, q.Label, strings.Join(scopes, ","))
		if len(q.Flags) > 0 {
			var fl []string
			for _, f := range q.Flags {
				fl = append(fl, string(f))
			}
			fmt.Fprintf(w, "  [%s]", strings.Join(fl, " "))
		}
		fmt.Fprintln(w)
	}
	for _, rs := range r.Reasons {
		fmt.Fprintf(w, "  reason:  %s: %s", rs.Code, keydesk.SafeLine(rs.Message, 0))
		if rs.Suggestion != "" {
			fmt.Fprintf(w, " (%s)", rs.Suggestion)
		}
		fmt.Fprintln(w)
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", keydesk.SafeLine(s, 0))
	}
	if r.ReplyTo != "" {
		fmt.Fprintf(w, "  reply to: %s\n", keydesk.SafeLine(r.ReplyTo, 0))
	} else {
		fmt.Fprintf(w, "  no reply\n")
	}
}

func printReply(w io.Writer, asJSON bool, o *keydesk.Outgoing) {
	if asJSON {
		return // JSON lines stay one object per email; --reply adds only to the readable form
	}
	if o == nil {
		return
	}
	fmt.Fprintf(w, "  ---- %s %s to %s\n  Subject: %s\n\n", o.Kind, o.ID, strings.Join(o.To, ", "), o.Subject)
	for _, l := range strings.Split(strings.TrimRight(o.Text, "\n"), "\n") {
		fmt.Fprintf(w, "  | %s\n", l)
	}
	fmt.Fprintln(w)
}
