package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/review/users"
)

// The files init writes, relative to DIR. Secrets follow one convention
// shared with the examples and the deploy kit: relative *_file paths
// under secrets/ (keydesk's own) and partner-credentials/ (the partners'
// API secrets, named to partners.yaml by batch.env).
const (
	initConfig      = "keydesk.yaml"
	initPartners    = "partners.yaml"
	initUsers       = "users.yaml"
	initBatchEnv    = "batch.env"
	initSigningKey  = "keys/keydesk-signing.asc"
	initSigningPub  = "keys/keydesk-signing.pub.asc"
	initSecrets     = "secrets"
	initCredentials = "partner-credentials"
)

// fixedInitFiles are written whatever the answers: init refuses to start
// asking when one exists (without --force).
var fixedInitFiles = []string{initConfig, initPartners, initUsers, initBatchEnv, initSigningKey, initSigningPub, initSecrets + "/signing-passphrase"}

// plannedFile is one file init writes. A secret one is mode 0600 and
// belongs to the service user; the others belong to whoever runs init,
// with the service user's group, so the service reads them and cannot
// change them.
type plannedFile struct {
	rel    string
	data   []byte
	mode   os.FileMode
	secret bool
}

// plannedDir is a directory init makes; a secret one is 0700 and the
// service user's.
type plannedDir struct {
	rel    string
	mode   os.FileMode
	secret bool
}

// initDirs are made before the files, DIR itself first (left as it is
// when it exists).
var initDirs = []plannedDir{
	{rel: ".", mode: 0o750},
	{rel: "keys", mode: 0o750},
	{rel: "keys/wkd", mode: 0o755},
	{rel: initSecrets, mode: 0o700, secret: true},
	{rel: initCredentials, mode: 0o700, secret: true},
}

// made is what init generated: shown once, then wiped or dropped.
type made struct {
	signFPR, signPub string
	wkd              crypto.WKD
	wkdKey           []byte
	admin            users.User
	password, token  string
	files            []plannedFile
}

func (m *made) wipe() {
	for _, f := range m.files {
		if f.secret {
			clear(f.data)
		}
	}
}

// credentialVar is the batch.env variable naming a partner environment's
// API secret file, e.g. ACME_PRODUCTION_SECRET_FILE.
func credentialVar(partner string, env keydesk.Environment) string {
	v := strings.ToUpper(strings.NewReplacer("-", "_").Replace(partner)) + "_" + strings.ToUpper(string(env)) + "_SECRET_FILE"
	if v[0] >= '0' && v[0] <= '9' {
		v = "P" + v // a variable name cannot start with a digit
	}
	return v
}

// credentialFile is a partner environment's API secret file, relative to DIR.
func credentialFile(partner string, env keydesk.Environment) string {
	return initCredentials + "/" + partner + "-" + string(env) + "-secret"
}

// makeAll generates the signing key and the admin's credentials and
// renders every file.
func makeAll(a *answers) (*made, error) {
	m := &made{}
	pass := make([]byte, 32)
	_, _ = rand.Read(pass)
	passText := []byte(base64.RawURLEncoding.EncodeToString(pass))
	clear(pass)
	from, err := mail.ParseAddress(a.get("smtp-from"))
	if err != nil {
		return nil, fmt.Errorf("--smtp-from: %w", err)
	}
	name := from.Name
	if name == "" {
		name = "keydesk"
	}
	priv, pub, fpr, err := crypto.GenerateKey(name, from.Address, crypto.Curve25519, passText)
	if err != nil {
		return nil, err
	}
	m.signFPR, m.signPub = fpr, pub
	if m.wkd, err = crypto.WKDFor(from.Address); err != nil {
		return nil, err
	}
	if m.wkdKey, err = crypto.BinaryPublicKey([]byte(pub)); err != nil {
		return nil, err
	}
	if err := m.makeAdmin(a); err != nil {
		return nil, err
	}
	m.files, err = renderFiles(a, m, []byte(priv), passText)
	return m, err
}

func (m *made) makeAdmin(a *answers) error {
	if !a.has("admin") {
		return nil
	}
	var err error
	m.admin, m.password, m.token, err = users.NewAccount(a.get("admin"), users.Admin)
	return err
}

// renderFiles lays out every file init writes.
func renderFiles(a *answers, m *made, signingKey, passphrase []byte) ([]plannedFile, error) {
	cfg, err := renderTemplate(keydeskYAML, initData(a))
	if err != nil {
		return nil, err
	}
	partners, err := renderTemplate(partnersYAML, initData(a))
	if err != nil {
		return nil, err
	}
	files := []plannedFile{
		{rel: initConfig, data: cfg, mode: 0o640},
		{rel: initPartners, data: partners, mode: 0o640},
		{rel: initUsers, data: renderUsers(m), mode: 0o640},
		{rel: initBatchEnv, data: renderBatchEnv(a), mode: 0o640},
		{rel: initSigningKey, data: signingKey, mode: 0o600, secret: true},
		{rel: initSigningPub, data: []byte(m.signPub), mode: 0o644},
		{rel: "keys/wkd/" + m.wkd.Hash, data: m.wkdKey, mode: 0o644},
		{rel: contactKeyFile(a), data: nil, mode: 0o640}, // filled below
		{rel: initSecrets + "/signing-passphrase", data: passphrase, mode: 0o600, secret: true},
	}
	key, err := readBounded(a.get("contact-key"))
	if err != nil {
		return nil, fmt.Errorf("--contact-key: %w", err)
	}
	files[7].data = key
	for _, s := range []struct{ answer, rel string }{
		{"imap-password", initSecrets + "/imap-password"},
		{"smtp-password", initSecrets + "/smtp-password"},
		{"oidc-client-secret", initSecrets + "/oidc-client-secret"},
		{"sandbox-api-secret", credentialFile(a.get("partner-id"), keydesk.Sandbox)},
		{"production-api-secret", credentialFile(a.get("partner-id"), keydesk.Production)},
	} {
		if sec := a.secrets[s.answer]; !sec.IsZero() {
			b := append([]byte(nil), sec.RevealBytes()...)
			files = append(files, plannedFile{rel: s.rel, data: append(b, '\n'), mode: 0o600, secret: true})
		}
	}
	return files, nil
}

func contactKeyFile(a *answers) string { return "keys/" + a.get("partner-id") + ".asc" }

// refuseExisting names every file init would replace, unless --force.
// With no files, it looks at those written whatever the answers.
func refuseExisting(o initOptions, files []plannedFile) error {
	if o.force {
		return nil
	}
	rels := fixedInitFiles
	if files != nil {
		rels = nil
		for _, f := range files {
			rels = append(rels, f.rel)
		}
	}
	var there []string
	for _, rel := range rels {
		if exists(filepath.Join(o.dir, rel)) {
			there = append(there, filepath.Join(o.dir, rel))
		}
	}
	if len(there) > 0 {
		return fmt.Errorf("refusing to replace what exists (--force replaces it): %s", strings.Join(there, ", "))
	}
	return nil
}

// writePlan makes the directories and writes the files, each with its
// mode and owner: secrets to the service user, the rest to the caller
// with the service user's group.
func writePlan(o initOptions, files []plannedFile) error {
	var group *fileOwner
	if o.owner != nil {
		group = &fileOwner{uid: os.Geteuid(), gid: o.owner.gid, name: fmt.Sprintf("%d:%s", os.Geteuid(), o.serviceUser)}
	}
	ownerOf := func(secret bool) *fileOwner {
		if secret {
			return o.owner
		}
		return group
	}
	dirExisted := exists(o.dir)
	for _, d := range initDirs {
		p := filepath.Join(o.dir, d.rel)
		if d.rel == "." && dirExisted {
			continue // the operator's own directory keeps its mode and owner
		}
		if err := os.MkdirAll(p, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
		if err := chownPath(p, ownerOf(d.secret)); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(o.dir, f.rel), f.data, f.mode, ownerOf(f.secret)); err != nil {
			return fmt.Errorf("write %s: %w", f.rel, err)
		}
	}
	return nil
}

func renderUsers(m *made) []byte {
	var b bytes.Buffer
	b.WriteString(`# users.yaml — the support staff who sign in with a password or an API token.
# password_hash is a PHC argon2id hash (the web login); token_sha256 is the
# hex SHA-256 of the API token. Add someone with:
#   keydesk users add NAME --role viewer|approver|admin --write users.yaml
# (the review role picks the change up within seconds). With single sign-on
# (review.oidc), people sign in at the identity provider instead; keep one
# local admin here as break-glass, and API tokens for scripts.
`)
	if m.admin.Name == "" {
		b.WriteString("users: []\n")
		return b.Bytes()
	}
	b.WriteString("users:\n")
	b.WriteString(indentLines(users.Entry(m.admin), "  "))
	return b.Bytes()
}

func renderBatchEnv(a *answers) []byte {
	var b bytes.Buffer
	b.WriteString(`# batch.env — the batch role's environment: where each partner's keys:manage
# API secret is. partners.yaml reads api_secret_file from these variables, so
# a role started without this file (intake, review, delivery) holds no
# partner secret. Relative paths are relative to partners.yaml. Give it to
# the batch role only (systemd EnvironmentFile, compose env_file). Add a
# line here with each partner environment you add.
`)
	id := a.get("partner-id")
	for _, e := range keydesk.Environments {
		if a.has(string(e) + "-api-key") {
			fmt.Fprintf(&b, "%s=%s\n", credentialVar(id, e), credentialFile(id, e))
		}
	}
	return b.Bytes()
}

// yamlQuote writes s as a double-quoted YAML scalar (JSON's quoting is
// YAML's).
func yamlQuote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// yamlList writes items as a flow sequence of quoted strings.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = yamlQuote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func renderTemplate(text string, data any) ([]byte, error) {
	t, err := template.New("").Funcs(template.FuncMap{"q": yamlQuote, "list": yamlList}).Parse(text)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
