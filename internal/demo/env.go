package demo

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
	dir       string
	IMAPAddr  string
	IMAPPass  string
	imapUser  *imapmemserver.User
	imapSrv   *imapserver.Server
	Sink      *Sink
	smtpSrv   *smtp.Server
	API       *fake.Server
	APIURL    string
	apiSrv    *http.Server
	contacts  []*contact
	signerPub string
	signerFpr string
	staff     []staffMember
	Emails    []seedEmail
	// SeedAccounts are the simulator's partner accounts and manager keys.
	SeedAccounts []fake.SeedAccount
}

func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StartEnv makes the keys and starts IMAP, SMTP and the API simulator.
func StartEnv(dir string, onMail func(m *SinkMessage)) (*Env, error) {
	e := &Env{dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	// Keys: one per technical contact, and keydesk's signing key.
	for _, c := range []*contact{
		{partner: "acme", name: "Acme Security", email: "sec@acme.example"},
		{partner: "globex", name: "Globex Platform Team", email: "platform-keys@globex.example"},
	} {
		c.passphrase = []byte(RandHex(8))
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
	signPass := RandHex(8)
	signPriv, signPub, signFpr, err := crypto.GenerateKey("keydesk demo", "support@"+Domain, crypto.Curve25519, []byte(signPass))
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
	for _, s := range []staffMember{{name: "alice", role: "admin"}, {name: "bob", role: "approver"}} {
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
			APIKey: "bm_key_" + p + "_manager", APISecret: "bm_secret_" + p + "_" + RandHex(8),
			Scopes: []keydesk.Scope{keydesk.ScopeKeysManage},
		}}})
	}
	e.SeedAccounts = seed.Accounts
	e.API, err = fake.New(fake.Options{Seed: seed})
	if err != nil {
		return nil, fmt.Errorf("demo: api simulator: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.APIURL = "http://" + ln.Addr().String()
	e.apiSrv = &http.Server{Handler: e.API, ReadHeaderTimeout: 10 * time.Second}
	go func(ln net.Listener) { _ = e.apiSrv.Serve(ln) }(ln)

	// The support mailbox, seeded with the demo's emails.
	e.IMAPPass = RandHex(12)
	mem := imapmemserver.New()
	e.imapUser = imapmemserver.NewUser(Mailbox, e.IMAPPass)
	for _, mb := range []string{"INBOX", "Processed", "Rejected"} {
		if err := e.imapUser.Create(mb, nil); err != nil {
			return nil, err
		}
	}
	mem.AddUser(e.imapUser)
	e.Emails = seedEmails(time.Now())
	for _, m := range e.Emails {
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
	e.IMAPAddr = ln.Addr().String()
	go func(ln net.Listener) { _ = e.imapSrv.Serve(ln) }(ln)

	// The outgoing mail sink.
	if e.Sink, e.smtpSrv, err = StartSink(onMail); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// bytesLiteral makes an IMAP literal of b (bytes.Reader has Size).
func bytesLiteral(b []byte) imap.LiteralReader { return bytes.NewReader(b) }

func (e *Env) Close() {
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
func (e *Env) mailboxCounts() (inbox, processed, rejected int) {
	n := func(mb string) int {
		d, err := e.imapUser.Status(mb, &imap.StatusOptions{NumMessages: true})
		if err != nil || d.NumMessages == nil {
			return -1
		}
		return int(*d.NumMessages)
	}
	return n("INBOX"), n("Processed"), n("Rejected")
}

// Sink is the outgoing mail server: it keeps what keydesk sends.
type Sink struct {
	Addr   string
	onMail func(m *SinkMessage)

	mu   sync.Mutex
	msgs []*SinkMessage
}

// SinkMessage is one email as it arrived.
type SinkMessage struct {
	From string
	To   []string
	Raw  []byte
}

// StartSink serves a sink on a loopback port; onMail, if set, sees each
// message as it arrives. Close the server to stop it.
func StartSink(onMail func(m *SinkMessage)) (*Sink, *smtp.Server, error) {
	sink := &Sink{onMail: onMail}
	srv := smtp.NewServer(sink)
	srv.Domain = "sink." + Domain
	srv.MaxMessageBytes = 8 << 20
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	sink.Addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	return sink, srv, nil
}

func (s *Sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }

func (s *Sink) Messages() []*SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*SinkMessage(nil), s.msgs...)
}

type sinkSession struct {
	sink *Sink
	m    SinkMessage
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.m = SinkMessage{From: from}
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
	m := &SinkMessage{From: ss.m.From, To: ss.m.To, Raw: raw}
	ss.sink.mu.Lock()
	ss.sink.msgs = append(ss.sink.msgs, m)
	ss.sink.mu.Unlock()
	if ss.sink.onMail != nil {
		ss.sink.onMail(m)
	}
	return nil
}

func (ss *sinkSession) Reset()        { ss.m = SinkMessage{} }
func (ss *sinkSession) Logout() error { return nil }
