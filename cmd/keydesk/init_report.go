package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/buildmarkets/keydesk/crypto"
)

// initWrite generates what init makes, writes every file, says what the
// operator must keep and pass on, checks the result as `keydesk check`
// does, and lists the next steps.
func initWrite(ctx context.Context, env initEnv, o initOptions, a *answers) error {
	m, err := makeAll(a)
	if err != nil {
		return err
	}
	defer m.wipe()
	if err := refuseExisting(o, m.files); err != nil {
		return err
	}
	if err := writePlan(o, m.files); err != nil {
		return err
	}
	w := env.stdout
	var rels []string
	for _, f := range m.files {
		rels = append(rels, f.rel)
	}
	fmt.Fprintf(w, "Wrote %s: %s\n", o.dir, strings.Join(rels, ", "))
	if o.owner != nil {
		fmt.Fprintf(w, "Secrets (secrets/, partner-credentials/, the signing key) belong to %s, mode 0600; the rest to its group, read-only.\n", o.serviceUser)
	}
	printAdmin(w, m, a)
	printSigningKey(w, o, m)
	fmt.Fprintf(w, "\nPartner %s: the technical contact's key %s is pinned as\n  %s\n"+
		"Verify this fingerprint with the contact by phone (a number you already know) before the first delivery.\n",
		a.get("partner-id"), contactKeyFile(a), crypto.FormatFingerprint(a.contactFPR))
	cfgPath := filepath.Join(o.dir, initConfig)
	fmt.Fprintf(w, "\nChecking it as 'keydesk check --config %s' does:\n\n", cfgPath)
	checkErr := withBatchEnv(filepath.Join(o.dir, initBatchEnv), func() error {
		return check(ctx, w, env.stderr, checkOptions{config: cfgPath, now: env.now})
	})
	printNextSteps(w, o, a, cfgPath)
	return checkErr
}

func printAdmin(w io.Writer, m *made, a *answers) {
	if m.admin.Name != "" {
		fmt.Fprintf(w, "\nStaff member %s (admin), the local break-glass account. Shown once: keydesk keeps only hashes.\n\n", m.admin.Name)
		fmt.Fprintf(w, "  password (web UI):      %s\n", m.password)
		fmt.Fprintf(w, "  API token (CLI, API):   %s\n\n", m.token)
		fmt.Fprintf(w, "Keep them where your team keeps break-glass credentials. The CLI reads the token from\n"+
			"KEYDESK_TOKEN (and the server from KEYDESK_URL=%s).\n", a.get("base-url"))
	}
	if a.has("oidc-issuer") {
		fmt.Fprintf(w, "\nSingle sign-on: %s, client %s; members of %q are admins. Register the callback\n  %s/login/oidc/callback\n"+
			"at the identity provider, and map the viewer and approver groups in review.oidc.roles.\n",
			a.get("oidc-issuer"), a.get("oidc-client-id"), a.get("oidc-admin-group"), strings.TrimSuffix(a.get("base-url"), "/"))
	}
}

// printSigningKey shows keydesk's new signing key and how partners find
// and verify it: every delivery is signed with it, and a partner who
// checks the signature against this fingerprint knows the key pair came
// from Buildmarkets.
func printSigningKey(w io.Writer, o initOptions, m *made) {
	local, _, _ := strings.Cut(m.wkd.Direct[strings.Index(m.wkd.Direct, "?l=")+3:], "&")
	fmt.Fprintf(w, "\nkeydesk's signing key (new): every key delivery is signed with it.\n\n")
	fmt.Fprintf(w, "  fingerprint:  %s\n", crypto.FormatFingerprint(m.signFPR))
	fmt.Fprintf(w, "  public key:   %s\n\n", filepath.Join(o.dir, initSigningPub))
	fmt.Fprintf(w, "Partners verify deliveries against this fingerprint. Let them find the key and check it:\n")
	fmt.Fprintf(w, "  - Web Key Directory (mail clients look it up by the From address): publish\n"+
		"    %s (the key, binary) at\n      %s   (advanced method)\n    or\n      %s   (direct method)\n"+
		"    with an empty policy file beside hu/ (…/openpgpkey/<domain>/policy, or …/openpgpkey/policy).\n"+
		"    The name is the z-base-32 SHA-1 of the lower-cased local part %q.\n",
		filepath.Join(o.dir, "keys/wkd", m.wkd.Hash), m.wkd.Advanced, m.wkd.Direct, local)
	fmt.Fprintf(w, "  - a keyserver:\n      gpg --import %s\n      gpg --keyserver hkps://keys.openpgp.org --send-keys %s\n"+
		"    (keys.openpgp.org then mails a confirmation link to the From address).\n",
		filepath.Join(o.dir, initSigningPub), m.signFPR)
	fmt.Fprintf(w, "  - read the fingerprint to them by phone: a partner who compares it needs to trust neither.\n")
}

func printNextSteps(w io.Writer, o initOptions, a *answers, cfgPath string) {
	fmt.Fprintf(w, "\nNext steps:\n")
	n := 1
	step := func(format string, args ...any) {
		fmt.Fprintf(w, "  %d. %s\n", n, fmt.Sprintf(format, args...))
		n++
	}
	step("set -a; . %s; set +a   # the batch role's environment (systemd: EnvironmentFile=)", filepath.Join(o.dir, initBatchEnv))
	if a.has("nats-url") {
		step("keydesk nats-setup --config %s   # as the NATS admin: creates the streams and buckets", cfgPath)
	}
	step("keydesk check --config %s --connect   # logs in to IMAP, SMTP, NATS and each partner environment's API", cfgPath)
	step("keydesk serve --config %s   # or under systemd or in containers: docs/operations.md", cfgPath)
	step("open %s and sign in; add staff with 'keydesk users add NAME --role approver --write %s'",
		a.get("base-url"), filepath.Join(o.dir, initUsers))
}

// withBatchEnv runs fn with the variables of a batch.env file set, as
// the batch role's environment would have them, and restores the
// environment afterwards.
func withBatchEnv(path string, fn func() error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	vars := parseEnvFile(data)
	old := map[string]*string{}
	for k, v := range vars {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		_ = os.Setenv(k, v)
	}
	defer func() {
		for k, v := range old {
			if v == nil {
				_ = os.Unsetenv(k)
			} else {
				_ = os.Setenv(k, *v)
			}
		}
	}()
	return fn()
}

// parseEnvFile reads KEY=VALUE lines, skipping comments and blank lines.
func parseEnvFile(data []byte) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return vars
}
