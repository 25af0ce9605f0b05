package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
)

func init() {
	register(command{
		name: "check", args: "--config keydesk.yaml",
		summary: "validate config, partners and their PGP keys",
		run:     cmdCheck,
	})
}

func cmdCheck(_ context.Context, args []string) error {
	fs := newFlags("check", "--config keydesk.yaml",
		"Validate keydesk.yaml and partners.yaml, load every contact key and check it against its pinned\n"+
			"fingerprint, and print each partner with its contact, fingerprint and key expiry.\n"+
			"Exits 1 with every problem listed.")
	cfgPath := fs.String("config", "keydesk.yaml", "config `file`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errUsage
	}
	return runCheck(os.Stdout, os.Stderr, *cfgPath, time.Now())
}

func runCheck(stdout, stderr io.Writer, cfgPath string, now time.Time) error {
	var problems []error
	cfg, err := config.Load(cfgPath)
	if err != nil {
		problems = append(problems, err)
	}
	var reg *keydesk.Registry
	if cfg != nil {
		var checker config.ContactKeyChecker
		if contactKeyChecker != nil {
			checker = contactKeyChecker()
		}
		reg, err = config.LoadPartners(cfg.Path(cfg.PartnersFile), checker, now)
		if err != nil {
			problems = append(problems, err)
		}
		for _, c := range extraChecks {
			problems = append(problems, c(cfg))
		}
	}
	if reg != nil {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTNER\tCONTACT\tFINGERPRINT\tKEY EXPIRES\tENVIRONMENTS")
		for _, p := range reg.Partners {
			exp := "never"
			if !p.TechnicalContact.KeyExpires.IsZero() {
				exp = p.TechnicalContact.KeyExpires.UTC().Format("2006-01-02")
				if days := p.TechnicalContact.KeyExpires.Sub(now).Hours() / 24; days < 30 {
					exp += fmt.Sprintf(" (in %.0f days!)", days)
				}
			}
			var envs []string
			for _, e := range keydesk.Environments {
				if pe, ok := p.Environments[e]; ok {
					s := string(e)
					if pe.AutoApprove {
						s += "(auto)"
					}
					envs = append(envs, s)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.TechnicalContact.Email, p.TechnicalContact.Fingerprint, exp, strings.Join(envs, ","))
		}
		_ = tw.Flush()
	}
	err = errors.Join(problems...)
	if err != nil {
		n := strings.Count(err.Error(), "\n") + 1
		fmt.Fprintf(stderr, "%s\n\n%d problem(s) found.\n", err, n)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "\n%s: ok\n", cfgPath)
	return nil
}

// extraChecks are checks other parts add (the signing key, users.yaml).
var extraChecks []func(cfg *config.Config) error
