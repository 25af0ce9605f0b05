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

const checkArgs = "--config keydesk.yaml [--roles intake,review,batch,delivery] [--strict] [--connect [--timeout 10s]]"

// checkOptions are the flags of `keydesk check`.
type checkOptions struct {
	config string
	roles  []string // nil: every role
	now    time.Time
	// strict fails on warnings too.
	strict bool
	// connect logs in to IMAP, SMTP, NATS and each partner environment's
	// API, each within timeout.
	connect bool
	timeout time.Duration
}

func cmdCheck(ctx context.Context, args []string) error {
	fs := newFlags("check", checkArgs,
		"Validate keydesk.yaml and partners.yaml, load every contact key and check it against its pinned\n"+
			"fingerprint, and print each partner with its contact, fingerprint and key expiry.\n"+
			"With --roles, check the config as those roles use it (default: all): the batch role needs\n"+
			"the signing key and every partner environment's API credentials; the others run without.\n"+
			"WARNING lines name what runs but must not stay so (the published example signing key,\n"+
			"passwords and users); --strict fails on them too. --connect then logs in to the IMAP, SMTP\n"+
			"and NATS servers and lists each partner environment's API keys, one line each.\n"+
			"Exits 1 with every problem listed.")
	cfgPath := fs.String("config", "keydesk.yaml", "config `file`")
	rolesFlag := fs.String("roles", strings.Join(roleOrder, ","), "comma-separated roles the config is for: "+strings.Join(roleOrder, ", "))
	strict := fs.Bool("strict", false, "fail on warnings too (e.g. in CI or before going live)")
	connect := fs.Bool("connect", false, "log in to IMAP, SMTP, NATS and each partner environment's API (GET /v1/keys)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each --connect check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *timeout <= 0 {
		return errUsage
	}
	roles, err := parseRoles(*rolesFlag)
	if err != nil {
		return err
	}
	return check(ctx, os.Stdout, os.Stderr, checkOptions{
		config: *cfgPath, roles: roles, now: time.Now(), strict: *strict, connect: *connect, timeout: *timeout,
	})
}

// runCheck checks cfgPath for roles (nil: every role), offline.
func runCheck(stdout, stderr io.Writer, cfgPath string, roles []string, now time.Time) error {
	return check(context.Background(), stdout, stderr, checkOptions{config: cfgPath, roles: roles, now: now})
}

// check prints the partners, every problem and warning, and with
// --connect a line per server; it returns exitError{1} when anything
// failed.
func check(ctx context.Context, stdout, stderr io.Writer, o checkOptions) error {
	if o.roles == nil {
		o.roles = roleOrder
	}
	cfg, reg, problems := checkFiles(o)
	if reg != nil {
		printPartners(stdout, reg, o.now)
	}
	failed := 0
	if o.connect && cfg != nil {
		fmt.Fprintln(stdout)
		failed = runProbes(ctx, stdout, cfg, reg, o)
	}
	errs, warns := splitWarnings(errors.Join(problems...))
	for _, w := range warns {
		fmt.Fprintf(stderr, "WARNING %s\n", w)
	}
	for _, e := range errs {
		fmt.Fprintln(stderr, e)
	}
	var summary []string
	if len(errs) > 0 {
		summary = append(summary, fmt.Sprintf("%d problem(s) found.", len(errs)))
	}
	if len(warns) > 0 {
		summary = append(summary, fmt.Sprintf("%d warning(s): keydesk runs, but fix them before real use (--strict fails on them).", len(warns)))
	}
	if failed > 0 {
		summary = append(summary, fmt.Sprintf("%d connection check(s) failed.", failed))
	}
	if len(summary) > 0 {
		fmt.Fprintf(stderr, "\n%s\n", strings.Join(summary, "\n"))
	}
	if len(errs) > 0 || failed > 0 || o.strict && len(warns) > 0 {
		return exitError{1}
	}
	if len(o.roles) < len(roleOrder) {
		fmt.Fprintf(stdout, "\n%s: ok for %s\n", o.config, strings.Join(o.roles, ", "))
		return nil
	}
	fmt.Fprintf(stdout, "\n%s: ok\n", o.config)
	return nil
}

// checkFiles loads keydesk.yaml and partners.yaml and runs every check of
// o.roles on them. Problems of one file never hide those of another.
func checkFiles(o checkOptions) (*config.Config, *keydesk.Registry, []error) {
	var problems []error
	cfg, err := config.Load(o.config)
	if err != nil {
		problems = append(problems, err)
	}
	if cfg == nil {
		return nil, nil, problems
	}
	partnersPath := cfg.Path(cfg.PartnersFile)
	reg, err := config.LoadPartners(partnersPath, registryKeyChecker{}, o.now)
	if err != nil {
		problems = append(problems, err)
	}
	for _, c := range configChecks {
		problems = append(problems, c(cfg))
	}
	for _, r := range o.roles {
		for _, c := range roleChecks[r] {
			problems = append(problems, c(cfg))
		}
	}
	if slices.Contains(o.roles, "batch") {
		problems = append(problems, config.CheckCredentials(partnersPath, reg))
	}
	problems = append(problems, config.ExampleSecrets(cfg, partnersPath, reg))
	return cfg, reg, problems
}

// splitWarnings flattens a joined error into its lines, warnings apart.
func splitWarnings(err error) (errs, warns []string) {
	var walk func(err error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if w := (*config.Warning)(nil); errors.As(err, &w) {
			warns = append(warns, err.Error())
			return
		}
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	walk(err)
	return errs, warns
}

// printPartners is the table of partners, their contacts and keys.
func printPartners(w io.Writer, reg *keydesk.Registry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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

// configChecks look beyond what the config loader validates (contact
// keys, users.yaml), for every config.
var configChecks = []func(cfg *config.Config) error{checkUsersFile, checkContactKeys}

// roleSettings is each role's look at its settings: the Options serve
// starts the role with (built by the same function), judged by the
// role's package (Options.Validate), each problem naming the file and
// key. serve refuses to start roles whose settings have problems.
var roleSettings = map[string]func(cfg *config.Config) error{
	"intake":   checkIntake,
	"review":   checkNotify,
	"batch":    checkBatch,
	"delivery": checkDelivery,
}

// roleChecks are what check looks at for one role beyond the config
// loader: the role's settings (roleSettings), and the batch role's
// signing key.
var roleChecks = map[string][]func(cfg *config.Config) error{
	"intake":   {checkIntake},
	"review":   {checkNotify},
	"batch":    {checkBatch, checkSigningKey},
	"delivery": {checkDelivery},
}

// settingsProblems reports every problem of the settings of roles, as
// their packages judge them: what serve refuses to start with.
func settingsProblems(cfg *config.Config, roles []string) error {
	var errs []error
	for _, r := range roles {
		if c := roleSettings[r]; c != nil {
			errs = append(errs, c(cfg))
		}
	}
	return errors.Join(errs...)
}
