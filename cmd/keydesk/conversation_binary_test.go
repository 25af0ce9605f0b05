package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/bmapi/fake"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/apiclient"
	"github.com/buildmarkets/keydesk/internal/demo"
	"github.com/buildmarkets/keydesk/internal/imaptest"
	"github.com/buildmarkets/keydesk/internal/mailsim"
	"github.com/buildmarkets/keydesk/internal/smtptest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/review"
)

// TestConversationBinary runs the real binary, every role with its
// embedded NATS, through a request's conversation as a partner and the
// support team live it. A partner asks for two production keys with
// trading:write and accounts:read, one email each, and answers each
// acknowledgement with "Scopes: accounts:read": no request is added, each
// one waits in pending_review with the change proposed, and the partner
// hears the correction is held. keydesk is killed (SIGKILL) and started
// again. Support accepts one change and refuses the other, two approvers
// approve both (production needs four eyes), the partner hears each
// outcome, and a batch creates the keys at the API: the accepted one with
// accounts:read alone, the refused one as first asked, each delivered
// encrypted to the technical contact. Throughout, the chat webhook gets
// one post each time a request enters review (new, then its proposed
// change), none of them twice across the kill.
func TestConversationBinary(t *testing.T) {
	bin, err := buildKeydesk()
	if err != nil {
		t.Fatal(err)
	}
	w := newConvWorld(t, bin)
	w.start()

	// a. Two requests, each acknowledged.
	accepted := w.ask("conv-accept", "trading-engine")
	refused := w.ask("conv-refuse", "risk-monitor")
	for _, c := range []*convRequest{accepted, refused} {
		c.ack = w.waitMail("the acknowledgement of "+c.label, func(m *convMail) bool {
			return m.kind == "acknowledgement" && m.to == "ada@acme.example" && m.header("In-Reply-To") == c.msgID && strings.Contains(m.text, "Label:       "+c.label)
		})
		c.id = w.requestByLabel(c.label).ID
		if !strings.Contains(c.ack.text, c.id) || !strings.Contains(c.ack.text, "trading:write") {
			t.Fatalf("the acknowledgement of %s does not name %s and its scopes:\n%s", c.label, c.id, c.ack.text)
		}
		w.hook.wait(t, c.id, false)
	}

	// b. The partner answers each acknowledgement, quoting it.
	for _, c := range []*convRequest{accepted, refused} {
		w.correct(c, "accounts:read")
	}
	for _, c := range []*convRequest{accepted, refused} {
		got := w.waitMail("the correction of "+c.label+" acknowledged", func(m *convMail) bool {
			return strings.Contains(m.header("Message-ID"), c.id+".correction.") && m.to == "ada@acme.example"
		})
		if got.header("In-Reply-To") != c.replyID || !strings.Contains(got.text, "We received your correction to request "+c.id) ||
			!strings.Contains(got.text, "on hold until a person") {
			t.Errorf("correction received for %s, In-Reply-To %s:\n%s", c.id, got.header("In-Reply-To"), got.text)
		}
		r := w.get(c.id)
		if r.State != keydesk.StatePendingReview || r.ProposedChange == nil || !slices.Equal(scopeStrings(r.ProposedChange.Scopes), []string{"accounts:read"}) {
			t.Fatalf("%s after the correction: %s, proposed %+v; want pending_review with scopes accounts:read proposed", c.id, r.State, r.ProposedChange)
		}
		if !sameScopes(r.Scopes, "accounts:read", "trading:write") || !slices.Contains(r.Flags, string(keydesk.FlagProposedChange)) {
			t.Errorf("%s: scopes %v flags %v before anyone decided; want the first scopes, flagged", c.id, r.Scopes, r.Flags)
		}
		if !w.threadHas(r, keydesk.ThreadEmailIn, c.replyID, "Scopes: accounts:read") || !w.threadHas(r, keydesk.ThreadEmailOut, c.ack.header("Message-ID"), "") {
			t.Errorf("%s: the thread lacks the acknowledgement or the reply: %+v", c.id, r.Thread)
		}
		w.hook.wait(t, c.id, true)
	}
	if reqs := w.list(); len(reqs) != 2 {
		t.Fatalf("%d requests after the replies, want the 2 first: a reply makes none", len(reqs))
	}

	// f. Killed after the posts; the instance started again posts none of
	// them again. Its notifier looks at the requests in review in order,
	// so a post for a request that comes after the restart shows that it
	// has looked at the earlier ones.
	w.kill()
	w.start()
	later := w.ask("conv-later", "audit-reader")
	w.waitMail("the acknowledgement of audit-reader", func(m *convMail) bool {
		return m.kind == "acknowledgement" && m.header("In-Reply-To") == later.msgID
	})
	later.id = w.requestByLabel(later.label).ID
	w.hook.wait(t, later.id, false)

	// c. Support decides each change, and two approvers approve.
	w.act("alice", accepted.id, "proposal/accept")
	// The other one through the CLI, as a person at a terminal would.
	w.cli("bob", "queue", "assign", refused.id, "bob")
	w.cli("bob", "queue", "note", refused.id, "Called Ada: risk-monitor trades, keep trading:write")
	if out := w.cli("bob", "queue", "refuse", refused.id); !strings.Contains(out, "Change refused") {
		t.Errorf("queue refuse:\n%s", out)
	}
	out := w.cli("alice", "queue", "show", refused.id)
	if miss := missing(out, "Assignee:     bob", "Called Ada: risk-monitor trades", "Sorry, we only need to read for now"); len(miss) > 0 {
		t.Errorf("queue show lacks %q:\n%s", miss, out)
	}
	for _, c := range []*convRequest{accepted, refused} {
		if r := w.get(c.id); r.State != keydesk.StatePendingReview || r.ProposedChange != nil || r.ApprovalsNeeded != 2 {
			t.Fatalf("%s after the decision: %s, proposal %+v, approvals needed %d", c.id, r.State, r.ProposedChange, r.ApprovalsNeeded)
		}
		w.act("alice", c.id, "approve")
		if r := w.get(c.id); r.State != keydesk.StatePendingReview || len(r.Approvals) != 1 {
			t.Fatalf("%s after one approval: %s with %d approvals; production wants a second approver", c.id, r.State, len(r.Approvals))
		}
		w.act("bob", c.id, "approve")
		if r := w.get(c.id); r.State != keydesk.StateApproved {
			t.Fatalf("%s after two approvals: %s", c.id, r.State)
		}
	}
	for _, tc := range []struct {
		c    *convRequest
		want string
	}{
		{accepted, "We have made the change you asked for"},
		{refused, "We have not made the change you asked for"},
	} {
		got := w.waitMail("the outcome for "+tc.c.label, func(m *convMail) bool {
			return strings.Contains(m.header("Message-ID"), tc.c.id+".proposal-outcome.") && m.to == "ada@acme.example"
		})
		if got.header("In-Reply-To") != tc.c.replyID || !strings.Contains(got.text, tc.want) {
			t.Errorf("outcome for %s, In-Reply-To %s:\n%s", tc.c.id, got.header("In-Reply-To"), got.text)
		}
	}

	// d, e. A batch, asked for now, makes each key with the scopes decided.
	if err := w.client("ada").Do(context.Background(), "POST", "/api/v1/batches", nil, nil); err != nil {
		t.Fatalf("run a batch: %v", err)
	}
	for _, c := range []*convRequest{accepted, refused} {
		w.waitState(c.id, keydesk.StateDelivered)
	}
	live := map[string]fake.KeyInfo{}
	for _, k := range w.api.LiveKeys("acme") {
		live[k.Label] = k
	}
	want := map[string][]string{accepted.label: {"accounts:read"}, refused.label: {"accounts:read", "trading:write"}}
	if len(live) != len(want) {
		t.Errorf("live keys at the API %+v, want one per request", live)
	}
	for label, scopes := range want {
		if k := live[label]; !sameScopes(scopeStrings(k.Scopes), scopes...) {
			t.Errorf("the key made for %s has scopes %v, want exactly %v", label, k.Scopes, scopes)
		}
	}
	for _, c := range []*convRequest{accepted, refused} {
		w.checkDelivery(c, live[c.label], want[c.label])
	}

	// f. One post per request and entry into review, in all.
	w.hook.check(t, map[string][2]int{accepted.id: {1, 1}, refused.id: {1, 1}, later.id: {1, 0}})
}

// convWorld is one run of the binary with what it talks to: the support
// mailbox (go-imap's memory server), the outgoing mail server, the API
// simulator, and a chat webhook.
type convWorld struct {
	t                *testing.T
	bin, cfg, listen string
	imap             *mailsim.IMAPServer
	sink             *mailsim.SMTPServer
	api              *fake.Server
	hook             *hookSink
	tokens           map[string]string
	contact, signer  cryptotest.Key
	p                *proc
	procs            []*proc
	sent             int // emails put in the inbox, to number them
}

// convRequest is one request as the partner and the test know it.
type convRequest struct {
	label, msgID, replyID, id string
	ack                       *convMail
}

func newConvWorld(t *testing.T, bin string) *convWorld {
	w, dir, pass := newWorldServers(t, bin)
	mgr := fake.SeedKey{APIKey: "bm_key_acme_manager", APISecret: "bm_secret_acme_" + demo.RandHex(8), Scopes: []keydesk.Scope{keydesk.ScopeKeysManage}}
	var err error
	w.api, err = fake.New(fake.Options{Seed: &fake.Seed{Accounts: []fake.SeedAccount{{ID: "acme", ManagerKeys: []fake.SeedKey{mgr}}}}})
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(w.api)
	t.Cleanup(apiSrv.Close)
	w.configure(dir, pass, map[keydesk.Environment]worldAPI{
		keydesk.Sandbox:    {url: apiSrv.URL},
		keydesk.Production: {url: apiSrv.URL, key: mgr.APIKey, secret: mgr.APISecret},
	})
	return w
}

// newWorldServers starts what a whole-binary world talks to besides the
// API (the IMAP and SMTP servers, the chat webhook) and returns the world
// with its folder and the mailbox password.
func newWorldServers(t *testing.T, bin string) (w *convWorld, dir, imapPass string) {
	w = &convWorld{t: t, bin: bin, tokens: map[string]string{}}
	dir, imapPass = t.TempDir(), demo.RandHex(12)
	w.imap = imaptest.Start(t, demo.Mailbox, imapPass, imaptest.Options{Mailboxes: []string{"Processed", "Rejected"}})
	w.sink = smtptest.Start(t, smtptest.Options{})
	w.hook = startHookSink(t)
	return w, dir, imapPass
}

// worldAPI is one environment's API as a world's keydesk sees it: its
// address and, when the partner has credentials there, keydesk's
// keys:manage key.
type worldAPI struct{ url, key, secret string }

// configure writes the keys, partners.yaml (acme, with credentials in
// the environments that have a key), users.yaml (two approvers and an
// admin: production needs four eyes) and keydesk.yaml into dir. The
// leases are short, so that an instance started after a kill takes the
// mailbox, the batch and the notifications within seconds; the schedule
// is once a year, so that whatever happens within a test happens
// because of an approval, a reply or a batch asked for.
func (w *convWorld) configure(dir, imapPass string, apis map[keydesk.Environment]worldAPI) {
	t := w.t
	w.contact, w.signer = cryptotest.Contact(t, crypto.Curve25519), cryptotest.SigningKey(t)
	cryptotest.WriteFile(t, dir, "acme.asc", w.contact.Public)
	cryptotest.WriteFile(t, dir, "signing.asc", w.signer.Private)
	var envs strings.Builder
	for _, env := range keydesk.Environments {
		if a := apis[env]; a.key != "" {
			fmt.Fprintf(&envs, "      %s: {api_key: %q, api_secret: %q}\n", env, a.key, a.secret)
		}
	}
	cryptotest.WriteFile(t, dir, "partners.yaml", fmt.Sprintf(`partners:
  - id: acme
    name: Acme Capital
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: %q}
    allowed_scopes: [accounts:read, trading:read, trading:write, marketdata:read]
    environments:
%s`, w.contact.Fingerprint, envs.String()))
	for _, u := range [][2]string{{"alice", "approver"}, {"bob", "approver"}, {"ada", "admin"}} {
		w.tokens[u[0]] = addUser(t, filepath.Join(dir, "users.yaml"), u[0], u[1])
	}
	w.listen = testenv.FreeAddr(t)
	w.cfg = cryptotest.WriteFile(t, dir, "keydesk.yaml", fmt.Sprintf(`data_dir: data
imap: {address: %q, security: none, username: %q, password: %q, poll_interval: 1s, timeout: 10s, lease_ttl: 2s}
smtp: {address: %q, security: none, auth: none, from: %q, support_address: %s, helo_name: keydesk.test, timeout: 10s}
api:
  sandbox: {base_url: %q, timeout: 5s, rate_limit: 100}
  production: {base_url: %q, timeout: 5s, rate_limit: 100}
signing_key: {file: signing.asc, passphrase: %q}
sender_auth: {trusted_authserv_ids: [%s], require_dmarc: true, internal_domains: [%s]}
batch: {schedule: "CRON_TZ=UTC 0 3 1 1 *", lease_ttl: 2s}
review: {listen: %q, users_file: users.yaml, base_url: "https://keydesk.example"}
notify: {webhook_url: %q, lease_ttl: 2s}
log: {level: info, format: json}
partners_file: partners.yaml
`, w.imap.Addr, demo.Mailbox, imapPass, w.sink.Addr, demo.From, demo.Support, apis[keydesk.Sandbox].url, apis[keydesk.Production].url,
		cryptotest.Passphrase, demo.Authserv, demo.Domain, w.listen, w.hook.url))

	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, p := range w.procs {
			l := p.logs.String()
			t.Logf("--- keydesk start %d, log (last 24 KiB):\n%s", i+1, l[max(0, len(l)-24<<10):])
		}
	})
}

// start starts `keydesk serve` with every role and waits until it is ready.
func (w *convWorld) start() {
	w.t.Helper()
	w.p = startProc(w.t, w.bin, w.listen, "serve", "--config", w.cfg)
	w.procs = append(w.procs, w.p)
	w.p.waitOK(w.t, "/readyz", 30*time.Second)
}

// kill ends the running instance with SIGKILL.
func (w *convWorld) kill() {
	w.t.Helper()
	if err := w.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		w.t.Fatal(err)
	}
	select {
	case err := <-w.p.done:
		if !killed(err) {
			w.t.Fatalf("keydesk ended with %v, want the SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		w.t.Fatal("keydesk still runs 10s after SIGKILL")
	}
}

// deliver puts an email from ada@acme.example in the support inbox, as
// the partner's mail server hands it over (DMARC checked by our MTA), and
// returns its Message-ID.
func (w *convWorld) deliver(id, subject, extra, body string) string {
	w.t.Helper()
	w.sent++
	raw := demo.Message(time.Now().Add(time.Duration(w.sent)*time.Second), id, "Ada Lovelace <ada@acme.example>", subject, extra, body)
	if _, err := w.imap.User.Append("INBOX", bytes.NewReader([]byte(raw)), &imap.AppendOptions{Time: time.Now()}); err != nil {
		w.t.Fatal(err)
	}
	return "<" + id + "@mail.acme.example>"
}

// ask sends a request for a production key with trading:write and
// accounts:read.
func (w *convWorld) ask(id, label string) *convRequest {
	c := &convRequest{label: label}
	c.msgID = w.deliver(id, "Production key for "+label, "", "Hello support,\n\nPlease create a production key for our "+label+".\n\n"+
		"Environment: production\nScopes: trading:write, accounts:read\nLabel: "+label+"\n\nThanks,\nAda\n")
	return c
}

// correct answers the request's acknowledgement as a mail client does:
// In-Reply-To and References, the new scopes on top, the
// acknowledgement quoted below.
func (w *convWorld) correct(c *convRequest, scopes string) {
	ackID := c.ack.header("Message-ID")
	var quoted strings.Builder
	for line := range strings.Lines(c.ack.text) {
		quoted.WriteString("> " + line)
	}
	c.replyID = w.deliver("re-"+c.label, "Re: "+c.ack.header("Subject"),
		"In-Reply-To: "+ackID+"\r\nReferences: "+c.msgID+" "+ackID+"\r\n",
		"Sorry, we only need to read for now. Please make it:\n\nScopes: "+scopes+"\n\nAda\n\n"+
			"On "+c.ack.header("Date")+", Buildmarkets Support wrote:\n"+quoted.String())
}

// convMail is one email at the outgoing mail server.
type convMail struct {
	kind, to string
	msg      *mail.Message
	text     string // the decoded text body; empty for PGP/MIME
	raw      []byte
}

func (m *convMail) header(k string) string { return m.msg.Header.Get(k) }

func readConvMail(m mailsim.Message) (*convMail, error) {
	kind, msg := demo.MailKind(m.Data)
	if msg == nil {
		return nil, fmt.Errorf("an unreadable email to %v", m.To)
	}
	out := &convMail{kind: kind, to: strings.Join(m.To, ","), msg: msg, raw: m.Data}
	if strings.HasPrefix(msg.Header.Get("Content-Type"), "text/plain") {
		var body io.Reader = msg.Body
		if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		out.text = strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	return out, nil
}

// waitMail waits for the one email that match says is the one.
func (w *convWorld) waitMail(what string, match func(*convMail) bool) *convMail {
	w.t.Helper()
	var found []*convMail
	if err := testenv.Poll(30*time.Second, what, func() bool {
		found = nil
		for _, m := range w.sink.Messages() {
			cm, err := readConvMail(m)
			if err != nil {
				w.t.Fatal(err)
			}
			if match(cm) {
				found = append(found, cm)
			}
		}
		return len(found) > 0
	}); err != nil {
		w.t.Fatal(err)
	}
	if len(found) != 1 {
		w.t.Fatalf("%s: %d emails, want one", what, len(found))
	}
	return found[0]
}

func (w *convWorld) client(user string) *apiclient.Client {
	return &apiclient.Client{Base: "http://" + w.listen, Token: w.tokens[user], HC: &http.Client{Timeout: 20 * time.Second}}
}

// cli runs the binary's support CLI as user, against the running
// instance, and returns what it printed.
func (w *convWorld) cli(user string, args ...string) string {
	w.t.Helper()
	cmd := exec.Command(w.bin, args...)
	cmd.Env = append(os.Environ(), "KEYDESK_URL=http://"+w.listen, "KEYDESK_TOKEN="+w.tokens[user])
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("keydesk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (w *convWorld) get(id string) *review.Request {
	w.t.Helper()
	var r review.Request
	if err := w.client("alice").Do(context.Background(), "GET", "/api/v1/requests/"+id, nil, &r); err != nil {
		w.t.Fatalf("GET %s: %v", id, err)
	}
	return &r
}

func (w *convWorld) list() []review.Request {
	w.t.Helper()
	var l review.RequestList
	if err := w.client("alice").Do(context.Background(), "GET", "/api/v1/requests?limit=500", nil, &l); err != nil {
		w.t.Fatalf("list requests: %v", err)
	}
	return l.Requests
}

func (w *convWorld) requestByLabel(label string) review.Request {
	w.t.Helper()
	var found []review.Request
	for _, r := range w.list() {
		if r.Label == label {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		w.t.Fatalf("%d requests labelled %s, want one", len(found), label)
	}
	return found[0]
}

func (w *convWorld) act(user, id, action string) {
	w.t.Helper()
	if _, err := w.client(user).Act(context.Background(), id, action, review.ActionBody{}); err != nil {
		w.t.Fatalf("%s: %s %s: %v", user, action, id, err)
	}
}

func (w *convWorld) waitState(id string, s keydesk.State) {
	w.t.Helper()
	var got keydesk.State
	if err := testenv.Poll(30*time.Second, id+" "+string(s), func() bool {
		got = w.get(id).State
		return got == s
	}); err != nil {
		w.t.Fatalf("%v: it is %s", err, got)
	}
}

// threadHas reports whether r's thread holds an entry of kind with that
// Message-ID whose text contains text.
func (w *convWorld) threadHas(r *review.Request, kind keydesk.ThreadKind, msgID, text string) bool {
	return slices.ContainsFunc(r.Thread, func(e keydesk.ThreadEntry) bool {
		return e.Kind == kind && keydesk.NormalizeMessageID(e.MessageID) == keydesk.NormalizeMessageID(msgID) && strings.Contains(e.Text, text)
	})
}

// checkDelivery: the key pair of c reached the technical contact, once,
// PGP/MIME that opens with the contact's key, signed by keydesk, and
// holds the key the API made, with the scopes decided.
func (w *convWorld) checkDelivery(c *convRequest, k fake.KeyInfo, scopes []string) {
	w.t.Helper()
	var got []mailsim.Message
	for _, m := range w.sink.To("sec@acme.example") {
		if kind, msg := demo.MailKind(m.Data); kind == "key delivery" && strings.HasPrefix(strings.Trim(msg.Header.Get("Message-ID"), "<"), c.id+".key.") {
			got = append(got, m)
		}
	}
	if len(got) != 1 || !slices.Equal(got[0].To, []string{"sec@acme.example"}) {
		w.t.Fatalf("key deliveries of %s to the contact: %d, want one, to sec@acme.example alone", c.id, len(got))
	}
	inner, err := crypto.DecryptAndVerify(got[0].Data, w.contact.Private, w.contact.Passphrase, w.signer.Public)
	if err != nil {
		w.t.Fatalf("the delivery of %s does not open as the contact opens it: %v", c.id, err)
	}
	kf, err := demo.InnerKeyFile(inner)
	if err != nil {
		w.t.Fatal(err)
	}
	if kf.RequestID != c.id || kf.KeyID != k.ID || kf.APIKey != k.APIKey || kf.Label != c.label || !sameScopes(kf.Scopes, scopes...) || kf.APISecret == "" {
		w.t.Errorf("the delivery of %s holds %s %s %s %v, want %s %s %s %v and a secret", c.id, kf.RequestID, kf.KeyID, kf.Label, kf.Scopes, c.id, k.ID, c.label, scopes)
	}
	if !w.api.Authenticate(kf.APIKey, []byte(kf.APISecret)) {
		w.t.Errorf("the pair delivered for %s does not authenticate at the API", c.id)
	}
}

func scopeStrings(s []keydesk.Scope) []string {
	out := make([]string, len(s))
	for i, sc := range s {
		out[i] = string(sc)
	}
	return out
}

// sameScopes reports whether got holds exactly want, in any order.
func sameScopes(got []string, want ...string) bool {
	g, wt := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(wt)
	return slices.Equal(g, wt)
}

// hookSink is a chat service's incoming webhook: it keeps every post.
type hookSink struct {
	url   string
	mu    sync.Mutex
	posts []hookPost
}

type hookPost struct {
	id       string
	proposal bool // about a proposed change; else a new request
	text     string
}

func startHookSink(t *testing.T) *hookSink {
	h := &hookSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body struct {
			Text string `json:"text"`
		}
		if r.URL.Path != "/hooks/T0KEN" || json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body) != nil {
			http.Error(rw, "bad", http.StatusBadRequest)
			return
		}
		id, rest, _ := strings.Cut(body.Text, " ")
		h.mu.Lock()
		h.posts = append(h.posts, hookPost{id: id, proposal: strings.HasPrefix(rest, "needs review: a proposed change"), text: body.Text})
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/hooks/T0KEN"
	return h
}

// count returns the posts about request id: new, and proposed change.
func (h *hookSink) count(id string) (fresh, proposal int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.posts {
		switch {
		case p.id != id:
		case p.proposal:
			proposal++
		default:
			fresh++
		}
	}
	return fresh, proposal
}

// wait waits for a post about request id: for its proposed change, or
// for it as a new request.
func (h *hookSink) wait(t *testing.T, id string, proposal bool) {
	t.Helper()
	what := "a webhook post about the new request " + id
	if proposal {
		what = "a webhook post about the change proposed to " + id
	}
	testenv.Eventually(t, 60*time.Second, what, func() bool {
		f, p := h.count(id)
		return proposal && p > 0 || !proposal && f > 0
	})
}

// check wants exactly the posts of want (request → new, proposed change)
// and no other, each linking to its request's page.
func (h *hookSink) check(t *testing.T, want map[string][2]int) {
	t.Helper()
	for id, n := range want {
		if f, p := h.count(id); f != n[0] || p != n[1] {
			t.Errorf("webhook posts about %s: %d as new, %d for a proposed change; want %d and %d", id, f, p, n[0], n[1])
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.posts {
		if _, ok := want[p.id]; !ok {
			t.Errorf("a webhook post about no request of the story: %q", p.text)
		}
		if !strings.Contains(p.text, "https://keydesk.example/requests/"+p.id) {
			t.Errorf("a webhook post without the link to its request: %q", p.text)
		}
	}
}
