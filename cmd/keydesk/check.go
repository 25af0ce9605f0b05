package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/config"
)

func init() {
	register(command{
		name: "check", args: "--config keydesk.yaml [--roles intake,review,batch,delivery]",
		summary: "validate config, partners and their PGP keys",
		run:     cmdCheck,
	})
}

func cmdCheck(_ context.Context, args []string) error {
	fs := newFlags("check", "--config keydesk.yaml [--roles intake,review,batch,delivery]",
		"Validate keydesk.yaml and partners.yaml, load every contact key and check it against its pinned\n"+
			"fingerprint, and print each partner with its contact, fingerprint and key expiry.\n"+
			"With --roles, check the config as those roles use it (default: all): the batch role needs\n"+
			"the signing key and every partner environment's API credentials; the others run without.\n"+
			"Exits 1 with every problem listed.")
	cfgPath := fs.String("config", "keydesk.yaml", "config `file`")
	rolesFlag := fs.String("roles", strings.Join(roleOrder, ","), "comma-separated roles the config is for: "+strings.Join(roleOrder, ", "))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errUsage
	}
	roles, err := parseRoles(*rolesFlag)
	if err != nil {
		return err
	}
	return runCheck(os.Stdout, os.Stderr, *cfgPath, roles, time.Now())
}

// runCheck checks cfgPath for roles (nil: every role).
func runCheck(stdout, stderr io.Writer, cfgPath string, roles []string, now time.Time) error {
	if roles == nil {
		roles = roleOrder
	}
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
		for _, r := range roles {
			for _, c := range roleChecks[r] {
				problems = append(problems, c(cfg))
			}
		}
		if slices.Contains(roles, "batch") {
			problems = append(problems, config.CheckCredentials(cfg.Path(cfg.PartnersFile), reg))
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
	if len(roles) < len(roleOrder) {
		fmt.Fprintf(stdout, "\n%s: ok for %s\n", cfgPath, strings.Join(roles, ", "))
		return nil
	}
	fmt.Fprintf(stdout, "\n%s: ok\n", cfgPath)
	return nil
}

// extraChecks are checks other parts add (contact keys, users.yaml), run
// for every config.
var extraChecks []func(cfg *config.Config) error

// roleChecks are checks of what one role alone needs (the batch role's
// schedule and signing key), run when check is asked for that role.
var roleChecks = map[string][]func(cfg *config.Config) error{}
