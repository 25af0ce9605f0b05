package demo

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/internal/mailsim"
	"github.com/buildmarkets/keydesk/review/users"
)

// The demo's world: everything keydesk talks to, started in process on
// loopback ports, with keys made at start. Nothing here is a shortcut
// through keydesk: the roles reach these servers as they would real ones.

const (
	Domain      = "buildmarkets.example"
	Authserv    = "mx." + Domain
	Mailbox     = "keydesk@" + Domain
	Support     = "api-support@" + Domain
	From        = "Buildmarkets Support <support@" + Domain + ">"
	maxMsgBytes = 1 << 20
)

// contact is a partner's technical contact, whose private key the demo
// holds so it can show that a delivery opens.
type contact struct {
	partner, name, email string
	priv, pub, fpr       string
	passphrase           []byte
}

// staffMember is a review login.
type staffMember struct {
	name, role, password, token string
}

// Env is the running world.
type Env struct {
	dir      string
	IMAPAddr string
	IMAPPass string
	IMAP     *mailsim.IMAPServer
	Sink     *mailsim.SMTPServer
	// API and APIURL are the sandbox's simulator, ProdAPI and
	// ProdAPIURL production's: two servers, since the API numbers keys
	// per account and environment (both hold a key-001).
	API        *fake.Server
	APIURL     string
	ProdAPI    *fake.Server
	ProdAPIURL string
	apiSrvs    []*http.Server
	contacts   []*contact
	signerPub  string
	signerFpr  string
	staff      []staffMember
	Emails     []seedEmail
	// SeedAccounts are the simulator's partner accounts and manager keys.
	SeedAccounts []fake.SeedAccount
}

func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StartEnv makes the keys and starts IMAP, SMTP and the API simulator.
func StartEnv(dir string, onMail func(m mailsim.Message)) (*Env, error) {
	e := &Env{dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	for _, phase := range []func() error{e.makeKeys, e.makeStaff, e.startAPI, e.startMailbox} {
		if err := phase(); err != nil {
			return nil, err
		}
	}
	var err error
	if e.Sink, err = StartSink(onMail); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// makeKeys makes a key per technical contact, and keydesk's signing key.
func (e *Env) makeKeys() error {
	for _, c := range []*contact{
		{partner: "acme", name: "Acme Security", email: "sec@acme.example"},
		{partner: "globex", name: "Globex Platform Team", email: "platform-keys@globex.example"},
	} {
		c.passphrase = []byte(RandHex(8))
		var err error
		c.priv, c.pub, c.fpr, err = crypto.GenerateKey(c.name, c.email, crypto.Curve25519, c.passphrase)
		if err != nil {
			return fmt.Errorf("demo: contact key: %w", err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, c.partner+".asc"), []byte(c.pub), 0o600); err != nil {
			return err
		}
		e.contacts = append(e.contacts, c)
	}
	signPass := RandHex(8)
	signPriv, signPub, signFpr, err := crypto.GenerateKey("keydesk demo", "support@"+Domain, crypto.Curve25519, []byte(signPass))
	if err != nil {
		return fmt.Errorf("demo: signing key: %w", err)
	}
	e.signerPub, e.signerFpr = signPub, signFpr
	if err := os.WriteFile(filepath.Join(e.dir, "signing.asc"), []byte(signPriv), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.dir, "signing.pass"), []byte(signPass), 0o600)
}

// makeStaff makes two approvers, since production requests need four eyes.
func (e *Env) makeStaff() error {
	for _, s := range []staffMember{{name: "alice", role: "admin"}, {name: "bob", role: "approver"}} {
		var err error
		s.password, s.token, err = users.NewCredentials()
		if err != nil {
			return err
		}
		e.staff = append(e.staff, s)
	}
	return nil
}

// startAPI starts the Buildmarkets API simulators, one per environment,
// with each partner's manager keys.
func (e *Env) startAPI() error {
	seed := &fake.Seed{}
	for _, p := range []string{"acme", "globex"} {
		seed.Accounts = append(seed.Accounts, fake.SeedAccount{ID: p, ManagerKeys: []fake.SeedKey{{
			APIKey: "bm_key_" + p + "_manager", APISecret: "bm_secret_" + p + "_" + RandHex(8),
			Scopes: []keydesk.Scope{keydesk.ScopeKeysManage},
		}}})
	}
	e.SeedAccounts = seed.Accounts
	start := func() (*fake.Server, string, error) {
		api, err := fake.New(fake.Options{Seed: seed})
		if err != nil {
			return nil, "", fmt.Errorf("demo: api simulator: %w", err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
		e.apiSrvs = append(e.apiSrvs, srv)
		go func() { _ = srv.Serve(ln) }()
		return api, "http://" + ln.Addr().String(), nil
	}
	var err error
	if e.API, e.APIURL, err = start(); err != nil {
		return err
	}
	if e.ProdAPI, e.ProdAPIURL, err = start(); err != nil {
		return err
	}
	return nil
}

// startMailbox starts the support mailbox, seeded with the demo's emails.
func (e *Env) startMailbox() error {
	e.IMAPPass = RandHex(12)
	var err error
	if e.IMAP, err = mailsim.ServeIMAP(Mailbox, e.IMAPPass, mailsim.IMAPOptions{Mailboxes: []string{"Processed", "Rejected"}}); err != nil {
		return err
	}
	e.IMAPAddr = e.IMAP.Addr
	e.Emails = seedEmails(time.Now())
	for _, m := range e.Emails {
		if _, err := e.IMAP.User.Append("INBOX", bytesLiteral([]byte(m.raw)), &imap.AppendOptions{Time: time.Now()}); err != nil {
			return fmt.Errorf("demo: seed mailbox: %w", err)
		}
	}
	return nil
}

// bytesLiteral makes an IMAP literal of b (bytes.Reader has Size).
func bytesLiteral(b []byte) imap.LiteralReader { return bytes.NewReader(b) }

func (e *Env) Close() {
	if e.IMAP != nil {
		e.IMAP.Close()
	}
	if e.Sink != nil {
		e.Sink.Close()
	}
	for _, srv := range e.apiSrvs {
		_ = srv.Close()
	}
}

// mailboxCounts says how many messages each folder holds.
func (e *Env) mailboxCounts() (inbox, processed, rejected int) {
	n := func(mb string) int {
		d, err := e.IMAP.User.Status(mb, &imap.StatusOptions{NumMessages: true})
		if err != nil || d.NumMessages == nil {
			return -1
		}
		return int(*d.NumMessages)
	}
	return n("INBOX"), n("Processed"), n("Rejected")
}

// StartSink serves the outgoing mail server on a loopback port: it keeps
// what keydesk sends; onMail, if set, sees each message as it arrives.
// Close it to stop it.
func StartSink(onMail func(m mailsim.Message)) (*mailsim.SMTPServer, error) {
	return mailsim.ServeSMTP(mailsim.SMTPOptions{Domain: "sink." + Domain, MaxMessageBytes: 8 << 20, OnMessage: onMail})
}
