package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/buildmarkets/keydesk"
)

const initArgs = "DIR [--yes] [--force] [--service-user NAME] [--listen ADDR] [answers as flags...]"

const initSummary = "Write a production configuration into DIR: keydesk.yaml, partners.yaml, users.yaml, batch.env,\n" +
	"keys/ (keydesk's new signing key, the partner's contact key), secrets/ and partner-credentials/.\n" +
	"On a terminal it asks for what it needs; every answer may be given as a flag instead, and with\n" +
	"--yes (or when stdin is not a terminal) it asks nothing and names the flag of each missing answer.\n" +
	"Secrets never go on the command line, where ps shows them: each comes from a prompt (no echo),\n" +
	"from the file its --*-file flag names, or from its environment variable:\n" +
	"  --imap-password-file            KEYDESK_IMAP_PASSWORD\n" +
	"  --smtp-password-file            KEYDESK_SMTP_PASSWORD\n" +
	"  --sandbox-api-secret-file       KEYDESK_SANDBOX_API_SECRET\n" +
	"  --production-api-secret-file    KEYDESK_PRODUCTION_API_SECRET\n" +
	"  --oidc-client-secret-file       KEYDESK_OIDC_CLIENT_SECRET\n" +
	"Secret files are mode 0600 in 0700 directories, owned by --service-user when given (as root).\n" +
	"It prints the first admin's password and token (once), the signing key's fingerprint and how\n" +
	"partners find and verify it, runs the checks of 'keydesk check' and says what comes next.\n" +
	"An existing file is never replaced without --force."

// maxAnswerBytes bounds one answer, typed or read from a file.
const maxAnswerBytes = 64 << 10

// initOptions are the flags of init that are not answers.
type initOptions struct {
	dir         string
	yes, force  bool
	serviceUser string
	owner       *fileOwner // the service user, looked up
}

// answers are what init was told: plain answers and secrets by question
// name, and what it derived from them.
type answers struct {
	v       map[string]string
	secrets map[string]keydesk.Secret
	// contactFPR is the fingerprint read from the contact's key file.
	contactFPR string
}

func (a *answers) get(name string) string { return a.v[name] }

// has reports a non-empty answer.
func (a *answers) has(name string) bool { return a.v[name] != "" || !a.secrets[name].IsZero() }

func (a *answers) wipe() {
	for _, s := range a.secrets {
		s.Wipe()
	}
}

func cmdInit(ctx context.Context, args []string) error {
	interactive := term.IsTerminal(int(os.Stdin.Fd()))
	var p *prompter
	if interactive {
		p = &prompter{in: bufio.NewReader(os.Stdin), out: os.Stderr, readSecret: func() ([]byte, error) {
			b, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(os.Stderr)
			return b, err
		}}
	}
	return runInit(ctx, initEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, prompter: p, now: time.Now(), euid: os.Geteuid()}, args)
}

// initEnv is what init talks to: a nil prompter asks nothing.
type initEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	prompter       *prompter
	now            time.Time
	euid           int // whose files init may give away: root's only
}

func runInit(ctx context.Context, env initEnv, args []string) error {
	fs := newFlags("init", initArgs, initSummary)
	fs.SetOutput(env.stderr)
	var o initOptions
	fs.BoolVar(&o.yes, "yes", false, "ask nothing: take every answer from flags, files, variables and defaults")
	fs.BoolVar(&o.force, "force", false, "replace files that exist (default: refuse, naming them)")
	fs.StringVar(&o.serviceUser, "service-user", "", "give the secrets to this `user` (and the other files to its group); needs root")
	given := registerQuestionFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errUsage
	}
	o.dir = fs.Arg(0)
	if o.serviceUser != "" {
		if env.euid != 0 {
			return fmt.Errorf("--service-user %s: giving files to another user needs root: run keydesk init as root, or leave --service-user out and chown the files yourself", o.serviceUser)
		}
		own, err := lookupOwner(o.serviceUser)
		if err != nil {
			return fmt.Errorf("--service-user: %w", err)
		}
		o.owner = own
	}
	if o.yes {
		env.prompter = nil
	}
	if err := refuseExisting(o, nil); err != nil {
		return err
	}
	a, err := gather(env, fs, given, o)
	defer a.wipe()
	if err != nil {
		return err
	}
	return initWrite(ctx, env, o, a)
}

// registerQuestionFlags adds a flag per question (a secret's is its
// file's), and returns where each value lands.
func registerQuestionFlags(fs *flag.FlagSet) map[string]*string {
	given := map[string]*string{}
	for _, q := range questions() {
		name, help := q.name, q.help
		if q.secretEnv != "" {
			name, help = q.name+"-file", "read "+help+" from this `file` (or $"+q.secretEnv+")"
		}
		given[q.name] = fs.String(name, "", help)
	}
	return given
}

// gather takes each answer from its flag, file or variable, then from
// the prompter, then from its default; without a prompter every problem
// is listed at once, each naming its flag.
func gather(env initEnv, fs *flag.FlagSet, given map[string]*string, o initOptions) (*answers, error) {
	a := &answers{v: map[string]string{}, secrets: map[string]keydesk.Secret{}}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[strings.TrimSuffix(f.Name, "-file")] = true })
	var errs []error
	section := ""
	for _, q := range questions() {
		if q.when != nil && !q.when(a) {
			continue
		}
		if env.prompter != nil && q.section != section {
			section = q.section
			fmt.Fprintf(env.prompter.out, "\n%s\n", section)
		}
		err := answer(env, q, a, o, set[q.name], *given[q.name])
		if err != nil && env.prompter != nil {
			return a, err
		}
		errs = append(errs, err)
	}
	errs = append(errs, crossCheck(a))
	if err := errors.Join(errs...); err != nil {
		return a, fmt.Errorf("nothing written:\n%w", err)
	}
	return a, nil
}

// answer fills one question's answer: from its flag (or file, or
// variable) when given, else by asking, else from its default.
func answer(env initEnv, q question, a *answers, o initOptions, flagSet bool, flagVal string) error {
	if q.secretEnv != "" {
		return answerSecret(env, q, a, flagSet, flagVal)
	}
	def := ""
	if q.def != nil {
		def = q.def(a, o)
	}
	switch {
	case flagSet:
		return a.setChecked(q, strings.TrimSpace(flagVal), "--"+q.name)
	case env.prompter != nil:
		for range 5 {
			v, err := env.prompter.line(q.prompt, def)
			if err != nil {
				return fmt.Errorf("%s: %w", q.prompt, err)
			}
			if err := a.setChecked(q, v, ""); err != nil {
				fmt.Fprintf(env.prompter.out, "  %v\n", err)
				continue
			}
			if q.echo != nil {
				fmt.Fprintln(env.prompter.out, q.echo(a))
			}
			return nil
		}
		return fmt.Errorf("%s: no usable answer after 5 tries", q.prompt)
	default:
		return a.setChecked(q, def, "--"+q.name)
	}
}

// setChecked records v as q's answer if it is acceptable; the error is
// prefixed with where v came from.
func (a *answers) setChecked(q question, v, from string) error {
	if len(v) > maxAnswerBytes {
		return prefixed(from, fmt.Errorf("longer than %d bytes", maxAnswerBytes))
	}
	if v == "" && !q.optional {
		return prefixed(from, errors.New("is required: "+q.help))
	}
	if strings.Contains(v, "${") {
		return prefixed(from, errors.New("holds ${, which keydesk.yaml would expand as a variable"))
	}
	if v != "" && q.check != nil {
		if err := q.check(v, a); err != nil {
			return prefixed(from, err)
		}
	}
	a.v[q.name] = v
	return nil
}

func prefixed(from string, err error) error {
	if from == "" {
		return err
	}
	return fmt.Errorf("%s: %w", from, err)
}

// answerSecret reads a secret from its file, its variable or a prompt.
func answerSecret(env initEnv, q question, a *answers, flagSet bool, file string) error {
	name := "--" + q.name + "-file or $" + q.secretEnv
	var b []byte
	switch {
	case flagSet:
		data, err := readBounded(file)
		if err != nil {
			return fmt.Errorf("--%s-file: %w", q.name, err)
		}
		b = []byte(strings.TrimRight(string(data), "\r\n"))
		clear(data)
	case env.getenv(q.secretEnv) != "":
		b = []byte(env.getenv(q.secretEnv))
	case env.prompter != nil:
		v, err := env.prompter.secret(q.prompt)
		if err != nil {
			return fmt.Errorf("%s: %w", q.prompt, err)
		}
		b = v
	}
	if len(b) == 0 {
		if q.optional {
			return nil
		}
		return fmt.Errorf("%s: is required: %s", name, q.help)
	}
	if len(b) > maxAnswerBytes || strings.ContainsAny(string(b), "\r\n\x00") {
		clear(b)
		return fmt.Errorf("%s: must be one line of at most %d bytes", name, maxAnswerBytes)
	}
	a.secrets[q.name] = keydesk.NewSecret(b)
	return nil
}

// readBounded reads a file of at most maxAnswerBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAnswerBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAnswerBytes {
		clear(b)
		return nil, fmt.Errorf("larger than %d bytes", maxAnswerBytes)
	}
	return b, nil
}

// prompter asks on a terminal: a line with a default, or a secret
// without echo.
type prompter struct {
	in         *bufio.Reader
	out        io.Writer
	readSecret func() ([]byte, error)
}

func (p *prompter) line(prompt, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(p.out, "%s [%s]: ", prompt, def)
	} else {
		fmt.Fprintf(p.out, "%s: ", prompt)
	}
	s, err := p.in.ReadString('\n')
	if err != nil && (s == "" || !errors.Is(err, io.EOF)) {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no answer (end of input)")
		}
		return "", err
	}
	if s = strings.TrimSpace(s); s == "" {
		return def, nil
	}
	return s, nil
}

func (p *prompter) secret(prompt string) ([]byte, error) {
	fmt.Fprintf(p.out, "%s (not shown): ", prompt)
	return p.readSecret()
}
