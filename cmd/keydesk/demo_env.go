package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/review/users"
)

// The demo's world: everything keydesk talks to, started in process on
// loopback ports, with keys made at start. Nothing here is a shortcut
// through keydesk: the roles reach these servers as they would real ones.

const (
	demoDomain      = "buildmarkets.example"
	demoAuthserv    = "mx." + demoDomain
	demoMailbox     = "keydesk@" + demoDomain
	demoSupport     = "api-support@" + demoDomain
	demoFrom        = "Buildmarkets Support <support@" + demoDomain + ">"
	demoMaxMsgBytes = 1 << 20
)

// demoContact is a partner's technical contact, whose private key the demo
// holds so it can show that a delivery opens.
type demoContact struct {
	partner, name, email string
	priv, pub, fpr       string
	passphrase           []byte
}

// demoStaff is a review login.
type demoStaff struct {
	name, role, password, token string
}

// demoEnv is the running world.
type demoEnv struct {
	dir       string
	imapAddr  string
	imapPass  string
	imapUser  *imapmemserver.User
	imapSrv   *imapserver.Server
	sink      *demoSink
	smtpSrv   *smtp.Server
	api       *fake.Server
	apiURL    string
	apiSrv    *http.Server
	contacts  []*demoContact
	signerPub string
	signerFpr string
	staff     []demoStaff
	emails    []demoEmail
	// seedAccounts are the simulator's partner accounts and manager keys.
	seedAccounts []fake.SeedAccount
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startDemoEnv makes the keys and starts IMAP, SMTP and the API simulator.
func startDemoEnv(dir string, onMail func(m *sinkMessage)) (*demoEnv, error) {
	e := &demoEnv{dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	// Keys: one per technical contact, and keydesk's signing key.
	for _, c := range []*demoContact{
		{partner: "acme", name: "Acme Security", email: "sec@acme.example"},
		{partner: "globex", name: "Globex Platform Team", email: "platform-keys@globex.example"},
	} {
		c.passphrase = []byte(randHex(8))
		var err error
		c.priv, c.pub, c.fpr, err = crypto.GenerateKey(c.name, c.email, crypto.Curve25519, c.passphrase)
		if err != nil {
			return nil, fmt.Errorf("demo: contact key: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, c.partner+".asc"), []byte(c.pub), 0o600); err != nil {
			return nil, err
		}
		e.contacts = append(e.contacts, c)
	}
	signPass := randHex(8)
	signPriv, signPub, signFpr, err := crypto.GenerateKey("keydesk demo", "support@"+demoDomain, crypto.Curve25519, []byte(signPass))
	if err != nil {
		return nil, fmt.Errorf("demo: signing key: %w", err)
	}
	e.signerPub, e.signerFpr = signPub, signFpr
	if err := os.WriteFile(filepath.Join(dir, "signing.asc"), []byte(signPriv), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "signing.pass"), []byte(signPass), 0o600); err != nil {
		return nil, err
	}

	// Staff: two approvers, since production requests need four eyes.
	for _, s := range []demoStaff{{name: "alice", role: "admin"}, {name: "bob", role: "approver"}} {
		s.password, s.token, err = users.NewCredentials()
		if err != nil {
			return nil, err
		}
		e.staff = append(e.staff, s)
	}

	// The Buildmarkets API simulator with each partner's manager keys.
	seed := &fake.Seed{}
	for _, p := range []string{"acme", "globex"} {
		seed.Accounts = append(seed.Accounts, fake.SeedAccount{ID: p, ManagerKeys: []fake.SeedKey{{
			APIKey: "bm_key_" + p + "_manager", APISecret: "bm_secret_" + p + "_" + randHex(8),
			Scopes: []keydesk.Scope{keydesk.ScopeKeysManage},
		}}})
	}
	e.seedAccounts = seed.Accounts
	e.api, err = fake.New(fake.Options{Seed: seed})
	if err != nil {
		return nil, fmt.Errorf("demo: api simulator: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.apiURL = "http://" + ln.Addr().String()
	e.apiSrv = &http.Server{Handler: e.api, ReadHeaderTimeout: 10 * time.Second}
	go func(ln net.Listener) { _ = e.apiSrv.Serve(ln) }(ln)

	// The support mailbox, seeded with the demo's emails.
	e.imapPass = randHex(12)
	mem := imapmemserver.New()
	e.imapUser = imapmemserver.NewUser(demoMailbox, e.imapPass)
	for _, mb := range []string{"INBOX", "Processed", "Rejected"} {
		if err := e.imapUser.Create(mb, nil); err != nil {
			return nil, err
		}
	}
	mem.AddUser(e.imapUser)
	e.emails = demoEmails(time.Now())
	for _, m := range e.emails {
		raw := []byte(m.raw)
		if _, err := e.imapUser.Append("INBOX", bytesLiteral(raw), &imap.AppendOptions{Time: time.Now()}); err != nil {
			return nil, fmt.Errorf("demo: seed mailbox: %w", err)
		}
	}
	e.imapSrv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true, // loopback only
	})
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.imapAddr = ln.Addr().String()
	go func(ln net.Listener) { _ = e.imapSrv.Serve(ln) }(ln)

	// The outgoing mail sink.
	if e.sink, e.smtpSrv, err = startSink(onMail); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// bytesLiteral makes an IMAP literal of b (bytes.Reader has Size).
func bytesLiteral(b []byte) imap.LiteralReader { return bytes.NewReader(b) }

func (e *demoEnv) close() {
	if e.imapSrv != nil {
		_ = e.imapSrv.Close()
	}
	if e.smtpSrv != nil {
		_ = e.smtpSrv.Close()
	}
	if e.apiSrv != nil {
		_ = e.apiSrv.Close()
	}
}

// mailboxCounts says how many messages each folder holds.
func (e *demoEnv) mailboxCounts() (inbox, processed, rejected int) {
	n := func(mb string) int {
		d, err := e.imapUser.Status(mb, &imap.StatusOptions{NumMessages: true})
		if err != nil || d.NumMessages == nil {
			return -1
		}
		return int(*d.NumMessages)
	}
	return n("INBOX"), n("Processed"), n("Rejected")
}

// writeConfigAs writes a keydesk config called name, with the given nats
// section (a YAML flow mapping), and partners.yaml and users.yaml beside
// it, and returns the config's path.
func (e *demoEnv) writeConfigAs(name, listen, schedule, nats string) (string, error) {
	var partners strings.Builder
	partners.WriteString("partners:\n")
	for _, c := range e.contacts {
		name := map[string]string{"acme": "Acme Capital", "globex": "Globex Markets"}[c.partner]
		reqs := map[string]string{"acme": `["*@acme.example"]`, "globex": `["*@globex.example"]`}[c.partner]
		var mgr fake.SeedKey
		for _, a := range e.seedAccounts {
			if a.ID == c.partner {
				mgr = a.ManagerKeys[0]
			}
		}
		fmt.Fprintf(&partners, `  - id: %s
    name: %s
    requesters: %s
    technical_contact: {email: %s, pgp_key_file: %s.asc, fingerprint: %q}
    environments:
      sandbox: {api_key: %q, api_secret: %q, auto_approve: %t}
      production: {api_key: %q, api_secret: %q}
`, c.partner, name, reqs, c.email, c.partner, c.fpr, mgr.APIKey, mgr.APISecret, c.partner == "acme", mgr.APIKey, mgr.APISecret)
	}
	var staff strings.Builder
	staff.WriteString("users:\n")
	for _, s := range e.staff {
		hash, err := users.HashPassword(s.password, users.DefaultParams)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&staff, "  - {name: %s, role: %s, password_hash: %q, token_sha256: %s}\n", s.name, s.role, hash, users.TokenDigest(s.token))
	}
	cfg := fmt.Sprintf(`# Generated by 'keydesk demo': every server here is the demo's own, on loopback.
data_dir: data
nats: %s
imap:
  address: %s
  security: none
  username: %s
  password: %q
  poll_interval: 1s
  max_message_bytes: %d
  timeout: 10s
smtp:
  address: %s
  security: none
  auth: none
  from: %q
  support_address: %s
  helo_name: keydesk.demo
  timeout: 10s
api:
  sandbox: {base_url: %q, timeout: 10s, rate_limit: 50}
  production: {base_url: %q, timeout: 10s, rate_limit: 50}
signing_key: {file: signing.asc, passphrase_file: signing.pass}
sender_auth:
  trusted_authserv_ids: [%s]
  require_dmarc: true
  internal_domains: [%s]
batch: {schedule: %q, concurrency: 4}
review: {listen: %q, users_file: users.yaml}
delivery: {retry_for: 1m, revoke_undelivered_after: 10m}
log: {level: info, format: text}
partners_file: partners.yaml
`, nats, e.imapAddr, demoMailbox, e.imapPass, demoMaxMsgBytes, e.sink.addr, demoFrom, demoSupport,
		e.apiURL, e.apiURL, demoAuthserv, demoDomain, schedule, listen)
	for name, content := range map[string]string{
		name: cfg, "partners.yaml": partners.String(), "users.yaml": staff.String(),
	} {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content), 0o600); err != nil {
			return "", err
		}
	}
	return filepath.Join(e.dir, name), nil
}

// demoSink is the outgoing mail server: it keeps what keydesk sends.
type demoSink struct {
	addr   string
	onMail func(m *sinkMessage)

	mu   sync.Mutex
	msgs []*sinkMessage
}

// sinkMessage is one email as it arrived.
type sinkMessage struct {
	From string
	To   []string
	Raw  []byte
}

// startSink serves a sink on a loopback port; onMail, if set, sees each
// message as it arrives. Close the server to stop it.
func startSink(onMail func(m *sinkMessage)) (*demoSink, *smtp.Server, error) {
	sink := &demoSink{onMail: onMail}
	srv := smtp.NewServer(sink)
	srv.Domain = "sink." + demoDomain
	srv.MaxMessageBytes = 8 << 20
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	sink.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	return sink, srv, nil
}

func (s *demoSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }

func (s *demoSink) messages() []*sinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*sinkMessage(nil), s.msgs...)
}

type sinkSession struct {
	sink *demoSink
	m    sinkMessage
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.m = sinkMessage{From: from}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.m.To = append(ss.m.To, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(io.LimitReader(r, 8<<20))
	if err != nil {
		return err
	}
	if len(ss.m.To) == 0 {
		return errors.New("no recipients")
	}
	m := &sinkMessage{From: ss.m.From, To: ss.m.To, Raw: raw}
	ss.sink.mu.Lock()
	ss.sink.msgs = append(ss.sink.msgs, m)
	ss.sink.mu.Unlock()
	if ss.sink.onMail != nil {
		ss.sink.onMail(m)
	}
	return nil
}

func (ss *sinkSession) Reset()        { ss.m = sinkMessage{} }
func (ss *sinkSession) Logout() error { return nil }
