package intake

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/intake/reply"
	"github.com/buildmarkets/keydesk/internal/dovecottest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

func conversationRegistry() *keydesk.Registry {
	return &keydesk.Registry{Partners: []*keydesk.Partner{{
		ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: "sec@acme.example"},
		AllowedScopes:    []keydesk.Scope{"accounts:read", "marketdata:read", "trading:read", "trading:write"},
		Environments: map[keydesk.Environment]keydesk.PartnerEnvironment{
			keydesk.Sandbox:    {APIKey: "k", AutoApprove: true},
			keydesk.Production: {APIKey: "k"},
		},
	}, {
		ID: "globex", Name: "Globex Markets", Requesters: []string{"*@globex.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: "sec@globex.example"},
		AllowedScopes:    []keydesk.Scope{"accounts:read"},
		Environments:     map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Sandbox: {APIKey: "k"}},
	}, {
		// Initech's technical contact is no requester: only a rotation's
		// confirmation is read from that address.
		ID: "initech", Name: "Initech", Requesters: []string{"ops@initech.example"},
		TechnicalContact: keydesk.TechnicalContact{Email: "keys@initech-sec.example"},
		AllowedScopes:    []keydesk.Scope{"accounts:read"},
		Environments:     map[keydesk.Environment]keydesk.PartnerEnvironment{keydesk.Production: {APIKey: "k"}},
	}}}
}

// world is the intake role with the real parser, reply builder and
// conversations, reading a real mailbox (Dovecot, or go-imap's memory
// server), storing in an embedded NATS.
type world struct {
	t       *testing.T
	h       *harness
	deliver func(raw []byte)
	sent    int // emails delivered so far
	mu      sync.Mutex
	now     time.Time
}

var worldStart = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func newWorld(t *testing.T, dovecot bool) *world {
	w := &world{t: t, now: worldStart}
	tpl := templates.MustLoadEmbedded()
	next := time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)
	var handler *parseHandler
	handlerFor := func() Handler {
		handler = NewParseHandler(ParseOptions{
			Registry: conversationRegistry,
			Parse: parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true,
				InternalDomains: []string{"buildmarkets.ai"}, Now: func() time.Time { return worldStart }},
			Reply:          func(res *parse.Result) (*keydesk.Outgoing, error) { return reply.Build(res, tpl, next) },
			Templates:      tpl,
			SupportAddress: supportAddr,
			NextBatch:      func() time.Time { return next },
			Now:            w.clock,
		}).(*parseHandler)
		return handler
	}
	if dovecot {
		testenv.Short(t)
		d := dovecottest.Start(t)
		w.h = newHarness(t, d.Addr, handlerFor())
		w.h.cfg.Username, w.h.cfg.Password = d.User, secretString(d.Password)
		w.deliver = func(raw []byte) {
			if err := d.Deliver("INBOX", raw); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("dovecot log:\n%s", d.Log())
			}
		})
	} else {
		srv := startMem(t, nil)
		w.h = newHarness(t, srv.Addr, handlerFor())
		c := client(t, srv.Addr, testUser, testPass)
		w.deliver = func(raw []byte) { appendMsg(t, c, "INBOX", raw) }
	}
	handler.o.Threads = w.h.q
	w.h.run(w.h.poller(func(o *Options) { o.Templates, o.SupportAddress = tpl, supportAddr }))
	return w
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	w.now = w.now.Add(d)
	w.mu.Unlock()
}

// send delivers emails and waits until each is taken in.
func (w *world) send(raws ...[]byte) {
	w.t.Helper()
	for _, raw := range raws {
		w.deliver(raw)
	}
	w.sent += len(raws)
	testenv.Eventually(w.t, 60*time.Second, fmt.Sprintf("%d emails taken in", w.sent), func() bool { return len(w.h.records()) == w.sent })
}

// msg is an email as a partner's mail server hands it to ours: DMARC
// checked by our MTA.
type msg struct {
	from, id, subject, body string
	inReplyTo               string
	references              []string
	extra                   string // more header lines, CRLF-ended
}

func (m msg) raw() []byte {
	dom := m.from[strings.IndexByte(m.from, '@')+1:]
	var b strings.Builder
	b.WriteString("Authentication-Results: mx.buildmarkets.ai; dmarc=pass header.from=" + dom + "\r\n")
	b.WriteString("From: " + m.from + "\r\nTo: " + supportAddr + "\r\nSubject: " + m.subject + "\r\n")
	b.WriteString("Date: Mon, 30 Nov 2026 08:00:00 +0000\r\nMessage-ID: <" + m.id + ">\r\n")
	if m.inReplyTo != "" {
		b.WriteString("In-Reply-To: <" + m.inReplyTo + ">\r\n")
	}
	if len(m.references) > 0 {
		b.WriteString("References: <" + strings.Join(m.references, "> <") + ">\r\n")
	}
	b.WriteString(m.extra)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.body, "\n", "\r\n"))
	return []byte(b.String())
}

// request makes one request from a new email and returns it, with the
// Message-ID of its acknowledgement indexed as delivery indexes it when
// it sends it.
func (w *world) request(id, env, scopes, label string) (*keydesk.Request, string) {
	w.t.Helper()
	w.send(msg{from: "ada@acme.example", id: id, subject: "New " + env + " key",
		body: "Hello,\n\nEnvironment: " + env + "\nScopes: " + scopes + "\nLabel: " + label + "\n\nThanks, Ada\n"}.raw())
	r := w.bySource(id)
	ack := r.ID + ".ack@buildmarkets.ai"
	if err := w.h.q.IndexMessage(context.Background(), ack, r.ID); err != nil {
		w.t.Fatal(err)
	}
	return r, ack
}

func (w *world) bySource(msgID string) *keydesk.Request {
	w.t.Helper()
	for _, r := range w.h.requests() {
		if r.SourceMessageID == msgID {
			return r
		}
	}
	w.t.Fatalf("no request from %s", msgID)
	return nil
}

func (w *world) get(id string) *keydesk.Request {
	w.t.Helper()
	r, err := w.h.q.Get(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) thread(id string) []keydesk.ThreadEntry {
	w.t.Helper()
	e, err := w.h.q.Thread(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	return e
}

// sentOf is the outbox's messages of one kind.
func (w *world) sentOf(kind keydesk.MessageKind) []*keydesk.Outgoing {
	var out []*keydesk.Outgoing
	for _, o := range w.h.outbox() {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (w *world) approve(id string) {
	w.t.Helper()
	_, err := w.h.q.Apply(context.Background(), id, queue.Change{Actor: "alice", Action: "approve", From: keydesk.StatePendingReview, To: keydesk.StateApproved,
		Mutate: func(r *keydesk.Request) error {
			r.Approvals = append(r.Approvals, keydesk.Approval{By: "alice", At: worldStart})
			return nil
		}})
	if err != nil {
		w.t.Fatal(err)
	}
}

// TestCorrectionHoldsRequest: the acknowledgement is answered with
// "Scopes: accounts:read"; the request (approved by staff, or approved
// automatically) goes back to pending_review with the change proposed and
// its approvals cleared, so no batch can create it with the old scopes;
// no request is made; the partner hears the correction waits for a
// person. Against a real Dovecot.
func TestCorrectionHoldsRequest(t *testing.T) {
	w := newWorld(t, true)
	tests := []struct {
		name, env string
		staff     bool // approved by staff rather than automatically
	}{
		{"approved by staff", "production", true},
		{"auto-approved", "sandbox", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w.t = t
			r, ack := w.request(fmt.Sprintf("req-%d@acme.example", i), tc.env, "accounts:read, trading:write", fmt.Sprintf("bot-%d", i))
			if tc.staff {
				w.approve(r.ID)
			}
			if got := w.get(r.ID); got.State != keydesk.StateApproved {
				t.Fatalf("request in %s before the correction, want approved", got.State)
			}
			before := len(w.h.requests())
			w.send(msg{from: "ada@acme.example", id: fmt.Sprintf("fix-%d@acme.example", i), subject: "Re: New " + tc.env + " key",
				inReplyTo: ack, references: []string{fmt.Sprintf("req-%d@acme.example", i), ack},
				body: "Sorry, only this please:\n\nScopes: accounts:read\n\nOn Mon, 30 Nov 2026 at 09:00, Buildmarkets wrote:\n> Scopes:      accounts:read, trading:write\n"}.raw())

			got := w.get(r.ID)
			if got.State != keydesk.StatePendingReview || len(got.Approvals) != 0 || !got.HasFlag(keydesk.FlagProposedChange) {
				t.Errorf("request %s, approvals %v, flags %v; want pending_review, none, proposed-change", got.State, got.Approvals, got.Flags)
			}
			p := got.Proposal
			if p == nil || keydesk.JoinScopes(p.Scopes) != "accounts:read" || p.Environment != r.Environment || p.Label != r.Label || !p.WasApproved {
				t.Fatalf("proposal %+v, want scopes accounts:read, the rest kept, was approved", p)
			}
			if keydesk.JoinScopes(got.Scopes) != "accounts:read, trading:write" {
				t.Errorf("scopes changed to %v before a person accepted", got.Scopes)
			}
			if n := len(w.h.requests()); n != before {
				t.Errorf("%d requests after the reply, want %d: a reply makes none", n, before)
			}
			th := w.thread(r.ID)
			j := slices.IndexFunc(th, func(e keydesk.ThreadEntry) bool { return e.MessageID == fmt.Sprintf("fix-%d@acme.example", i) })
			if len(th) != 2 || j < 0 || th[j].Kind != keydesk.ThreadEmailIn ||
				!strings.Contains(th[j].Text, "Scopes: accounts:read") || strings.Contains(th[j].Text, "trading:write") || th[j].MailRef == "" {
				t.Errorf("thread %+v, want the request's email and the reply's own text with its mail linked", th)
			}
			acks := slices.DeleteFunc(w.sentOf(keydesk.KindReceived), func(o *keydesk.Outgoing) bool { return o.RequestID != r.ID })
			if len(acks) != 1 || acks[0].To[0] != "ada@acme.example" || acks[0].InReplyTo != fmt.Sprintf("fix-%d@acme.example", i) ||
				!strings.Contains(acks[0].Text, "on hold until a person") {
				t.Fatalf("correction acknowledgements %+v, want one to ada in reply", acks)
			}
		})
	}
}

// TestCorrectionTooLate: a correction to a request whose key is being
// made changes nothing: it is attached, the thread says it came too late,
// and support gets an alert.
func TestCorrectionTooLate(t *testing.T) {
	w := newWorld(t, false)
	r, ack := w.request("late@acme.example", "sandbox", "accounts:read, trading:write", "late-bot")
	if _, err := w.h.q.Transition(context.Background(), r.ID, keydesk.StateApproved, keydesk.StateGenerating, "batch", "", nil); err != nil {
		t.Fatal(err)
	}
	w.send(msg{from: "ada@acme.example", id: "late-fix@acme.example", subject: "Re: New sandbox key", inReplyTo: ack,
		body: "Label: other-bot\n"}.raw())
	got := w.get(r.ID)
	if got.State != keydesk.StateGenerating || got.Label != "late-bot" || got.Proposal != nil {
		t.Errorf("request %s label %q proposal %+v, want unchanged", got.State, got.Label, got.Proposal)
	}
	th := w.thread(r.ID)
	kinds := []keydesk.ThreadKind{}
	for _, e := range th {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Contains(kinds, keydesk.ThreadSystem) || len(th) != 3 {
		t.Errorf("thread kinds %v, want the request, the reply and a system entry", kinds)
	}
	alerts := w.sentOf(keydesk.KindAlert)
	if len(alerts) != 1 || alerts[0].To[0] != supportAddr || !strings.Contains(alerts[0].Text, "too late") || alerts[0].RequestID != r.ID {
		t.Errorf("alerts %+v, want one to support saying the change came too late", alerts)
	}
	if n := len(w.sentOf(keydesk.KindReceived)); n != 0 {
		t.Errorf("%d correction acknowledgements, want none", n)
	}
}

// TestCorrectionBadScope: a correction naming a scope that does not exist
// gets the same rejection as a new request would, and changes nothing.
func TestCorrectionBadScope(t *testing.T) {
	w := newWorld(t, false)
	r, ack := w.request("bad@acme.example", "production", "accounts:read", "bad-bot")
	w.send(msg{from: "ada@acme.example", id: "bad-fix@acme.example", subject: "Re: New production key", inReplyTo: ack,
		body: "Scopes: trading:raed\n"}.raw())
	got := w.get(r.ID)
	if got.State != keydesk.StatePendingReview || got.Proposal != nil || got.Revision != r.Revision {
		t.Errorf("request %s proposal %+v revision %d, want unchanged", got.State, got.Proposal, got.Revision)
	}
	rej := w.sentOf(keydesk.KindRejection)
	if len(rej) != 1 || !strings.Contains(rej[0].Text, `"trading:raed" is not a scope`) || !strings.Contains(rej[0].Text, "did you mean trading:read?") {
		t.Fatalf("rejections %+v", rej)
	}
	// The same words as the rejection of a new request with that scope.
	w.send(msg{from: "ada@acme.example", id: "bad-new@acme.example", subject: "New production key",
		body: "Environment: production\nScopes: trading:raed\nLabel: bad-bot-2\n"}.raw())
	var fresh *keydesk.Outgoing
	for _, o := range w.sentOf(keydesk.KindRejection) {
		if o.InReplyTo == "bad-new@acme.example" {
			fresh = o
		}
	}
	if fresh == nil {
		t.Fatal("no rejection of the new request")
	}
	block := reasonBlock(fresh.Text)
	if block == "" || !strings.Contains(rej[0].Text, block) {
		t.Errorf("the correction's rejection\n%s\ndoes not hold the new request's reasons\n%s", rej[0].Text, block)
	}
}

// reasonBlock is the list of reasons of a rejection's text.
func reasonBlock(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "  - ") || strings.HasPrefix(l, "    What to do:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStatusQuestions: a question about a request is answered once with
// where it stands (no batch time for a request that waits for review);
// a second within the hour is not, nor any of 50 more; after the hour
// one is. Auto-replies and keydesk's own mail coming back get nothing.
func TestStatusQuestions(t *testing.T) {
	w := newWorld(t, false)
	r, ack := w.request("st@acme.example", "production", "accounts:read", "status-bot")
	ask := func(id, body string) []byte {
		return msg{from: "ada@acme.example", id: id, subject: "Re: New production key", inReplyTo: ack, body: body}.raw()
	}
	w.send(ask("q1@acme.example", "Hi, any update on this?\n"))
	sr := w.sentOf(keydesk.KindStatusReply)
	if len(sr) != 1 {
		t.Fatalf("%d status replies, want 1", len(sr))
	}
	s := sr[0]
	if s.To[0] != "ada@acme.example" || s.InReplyTo != "q1@acme.example" || !slices.Contains(s.References, ack) || s.RequestID != r.ID {
		t.Errorf("status reply to %v in reply to %q references %v about %s", s.To, s.InReplyTo, s.References, s.RequestID)
	}
	if !strings.Contains(s.Text, "waiting for review") || strings.Contains(s.Text, "next batch, which runs") || !strings.Contains(s.Text, r.ID) {
		t.Errorf("status reply reads\n%s", s.Text)
	}
	w.send(ask("q2@acme.example", "Where is my key?\n"))
	var storm [][]byte
	for i := range 50 {
		storm = append(storm, ask(fmt.Sprintf("storm-%d@acme.example", i), "status?\n"))
	}
	w.send(storm...)
	if n := len(w.sentOf(keydesk.KindStatusReply)); n != 1 {
		t.Errorf("%d status replies after 52 questions within the hour, want 1", n)
	}
	if n := len(w.thread(r.ID)); n != 53 {
		t.Errorf("thread holds %d entries, want the request and its 52 replies", n)
	}
	// Loops: an auto-reply and keydesk's own mail coming back.
	w.advance(2 * time.Hour)
	w.send(
		msg{from: "ada@acme.example", id: "ooo@acme.example", subject: "Automatic reply: New production key", inReplyTo: ack,
			extra: "Auto-Submitted: auto-replied\r\n", body: "I am out of the office. Any update will wait.\n"}.raw(),
		msg{from: "ada@acme.example", id: "loop@acme.example", subject: "Re: New production key", inReplyTo: ack,
			extra: "X-Loop: keydesk\r\n", body: "status?\n"}.raw(),
	)
	if n := len(w.sentOf(keydesk.KindStatusReply)); n != 1 {
		t.Errorf("%d status replies after an auto-reply and a loop, want 1", n)
	}
	// Approved, after the hour: answered, with the next batch.
	w.approve(r.ID)
	w.send(ask("q3@acme.example", "Wo bleibt der Schlüssel?\n"))
	sr = w.sentOf(keydesk.KindStatusReply)
	if len(sr) != 2 {
		t.Fatalf("%d status replies after the hour, want 2", len(sr))
	}
	for _, o := range sr {
		if o.InReplyTo == "q3@acme.example" && !strings.Contains(o.Text, "Mon 30 Nov 2026 16:00 UTC") {
			t.Errorf("status reply of an approved request reads\n%s\nwant the next batch", o.Text)
		}
	}
}

// TestReplyFromAnotherPartner: Globex answers Acme's acknowledgement and
// names its request in the subject; nothing about the request reaches
// anyone, Acme's thread does not hold the email, and it becomes a new
// review item from Globex.
func TestReplyFromAnotherPartner(t *testing.T) {
	w := newWorld(t, false)
	r, ack := w.request("acme-1@acme.example", "production", "accounts:read", "acme-bot")
	before := w.h.outbox()
	w.send(msg{from: "ops@globex.example", id: "g1@globex.example", subject: "Re: status of " + r.ID + "?", inReplyTo: ack,
		references: []string{"acme-1@acme.example", ack}, body: "What is the status of " + r.ID + "?\n"}.raw())
	for _, o := range w.h.outbox()[len(before):] {
		t.Errorf("%s sent to %v: %s\n%s", o.Kind, o.To, o.Subject, o.Text)
	}
	if n := len(w.thread(r.ID)); n != 1 {
		t.Errorf("Acme's thread holds %d entries, want only its own email", n)
	}
	g := w.bySource("g1@globex.example")
	if g.Partner != "globex" || g.State != keydesk.StatePendingReview || g.ID == r.ID {
		t.Errorf("Globex's email became %s of %q in %s, want a new review item", g.ID, g.Partner, g.State)
	}
	if got := w.get(r.ID); got.Revision != r.Revision {
		t.Errorf("Acme's request changed (revision %d → %d)", r.Revision, got.Revision)
	}
}

// TestReceivedNotice: an authenticated partner's email that goes to a
// person hears it was received; an unknown sender hears nothing.
func TestReceivedNotice(t *testing.T) {
	w := newWorld(t, false)
	w.send(
		msg{from: "ada@acme.example", id: "call@acme.example", subject: "Question about keys", body: "Could someone call me about our integration?\n"}.raw(),
		msg{from: "eve@stranger.example", id: "eve@stranger.example", subject: "Keys", body: "Environment: sandbox\nScopes: accounts:read\nLabel: x\n"}.raw(),
	)
	got := w.sentOf(keydesk.KindReceived)
	if len(got) != 1 || got[0].To[0] != "ada@acme.example" || got[0].InReplyTo != "call@acme.example" || !strings.Contains(got[0].Text, "A person in our support team is looking at it") {
		t.Fatalf("received notices %+v, want one to ada", got)
	}
	if len(w.h.outbox()) != 1 {
		t.Errorf("outbox holds %d, want the one notice (nothing to the unknown sender)", len(w.h.outbox()))
	}
	r := w.bySource("call@acme.example")
	if th := w.thread(r.ID); len(th) != 1 || th[0].Kind != keydesk.ThreadEmailIn || th[0].MailRef != r.MailRef {
		t.Errorf("thread %+v, want the email, its raw mail linked", th)
	}
}

// TestDuplicateFlagged: a second request with the partner, environment
// and label of an open one is flagged duplicate, linked, and not
// auto-approved; once the first is closed the same three are free.
func TestDuplicateFlagged(t *testing.T) {
	w := newWorld(t, false)
	first, _ := w.request("d1@acme.example", "sandbox", "accounts:read", "dup-bot")
	second, _ := w.request("d2@acme.example", "sandbox", "accounts:read", "Dup-Bot")
	if !second.HasFlag(keydesk.FlagDuplicate) || second.DuplicateOf != first.ID || second.State != keydesk.StatePendingReview {
		t.Errorf("second request %s flags %v duplicate of %q, want pending_review, duplicate of %s", second.State, second.Flags, second.DuplicateOf, first.ID)
	}
	if first.HasFlag(keydesk.FlagDuplicate) || first.State != keydesk.StateApproved {
		t.Errorf("first request %s flags %v", first.State, first.Flags)
	}
	if _, err := w.h.q.Transition(context.Background(), first.ID, keydesk.StateApproved, keydesk.StateCancelled, "alice", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.h.q.Transition(context.Background(), second.ID, keydesk.StatePendingReview, keydesk.StateCancelled, "alice", "", nil); err != nil {
		t.Fatal(err)
	}
	third, _ := w.request("d3@acme.example", "sandbox", "accounts:read", "dup-bot")
	if third.HasFlag(keydesk.FlagDuplicate) || third.State != keydesk.StateApproved {
		t.Errorf("third request %s flags %v, want approved: the others are closed", third.State, third.Flags)
	}
}

// TestAmbiguousCorrection: a correction to a thread of several requests
// that does not say which one changes none; support is asked.
func TestAmbiguousCorrection(t *testing.T) {
	w := newWorld(t, false)
	w.send(msg{from: "ada@acme.example", id: "two@acme.example", subject: "Two keys",
		body: "Environment: sandbox, production\nScopes: accounts:read\nLabel: two-bot\n"}.raw())
	var ids []string
	for _, r := range w.h.requests() {
		ids = append(ids, r.ID)
	}
	if len(ids) != 2 {
		t.Fatalf("requests %v, want 2", ids)
	}
	ack := ids[0] + ".ack@buildmarkets.ai"
	if err := w.h.q.IndexMessage(context.Background(), ack, ids...); err != nil {
		t.Fatal(err)
	}
	w.send(msg{from: "ada@acme.example", id: "two-fix@acme.example", subject: "Re: Two keys", inReplyTo: ack, body: "Label: other\n"}.raw())
	for _, id := range ids {
		if r := w.get(id); r.Proposal != nil || r.Label != "two-bot" {
			t.Errorf("%s: proposal %+v label %q, want unchanged", id, r.Proposal, r.Label)
		}
		if th := w.thread(id); len(th) != 3 {
			t.Errorf("%s: thread holds %d entries, want the email, the reply and a system entry", id, len(th))
		}
	}
	if a := w.sentOf(keydesk.KindAlert); len(a) != 1 || !strings.Contains(a[0].Text, "does not say which request") {
		t.Errorf("alerts %+v", a)
	}
	// Naming the request in the reply's own text says which one.
	w.send(msg{from: "ada@acme.example", id: "two-fix2@acme.example", subject: "Re: Two keys", inReplyTo: ack, body: "For " + ids[1] + ":\nLabel: other\n"}.raw())
	if r := w.get(ids[1]); r.Proposal == nil || r.Proposal.Label != "other" {
		t.Errorf("%s: proposal %+v, want label other", ids[1], r.Proposal)
	}
	if r := w.get(ids[0]); r.Proposal != nil {
		t.Errorf("%s: proposal %+v, want none", ids[0], r.Proposal)
	}
}

// TestConversationRunTwice: keydesk ends after a reply's effects are
// stored and before what it queues is in the outbox; the email, read
// again, queues the same messages under the same IDs (the outbox keeps
// one of each) and changes nothing twice.
func TestConversationRunTwice(t *testing.T) {
	ctx := context.Background()
	q := queuetest.Open(t)
	h := &parseHandler{o: ParseOptions{Threads: q, Templates: templates.MustLoadEmbedded(), SupportAddress: supportAddr,
		Now: func() time.Time { return worldStart }}}
	r, _, err := q.Create(ctx, &keydesk.Request{State: keydesk.StateApproved, Partner: "acme", Environment: keydesk.Sandbox,
		Scopes: []keydesk.Scope{"accounts:read", "trading:write"}, Label: "bot", Requester: "ada@acme.example",
		SourceKey: "ada@acme.example\x00o@acme.example", SourceDate: worldStart}, "intake")
	if err != nil {
		t.Fatal(err)
	}
	po := parse.Options{Registry: conversationRegistry(), TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true,
		Now: func() time.Time { return worldStart }}
	for _, tc := range []struct {
		name, body string
		kind       keydesk.MessageKind
	}{
		{"status question", "Any update?\n", keydesk.KindStatusReply},
		{"correction", "Scopes: accounts:read\n", keydesk.KindReceived},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := msg{from: "ada@acme.example", id: tc.name[:6] + "@acme.example", subject: "Re: " + r.ID, body: tc.body}.raw()
			res, err := parse.Parse(strings.NewReader(string(raw)), po)
			if err != nil {
				t.Fatal(err)
			}
			dec := h.reply(res, res.SourceKey, []*keydesk.Request{r})
			first, err := dec.Converse(ctx, nil, "ref")
			if err != nil {
				t.Fatal(err)
			}
			before, err := q.Get(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			again, err := dec.Converse(ctx, nil, "ref")
			if err != nil {
				t.Fatal(err)
			}
			if len(first) != 1 || first[0].Kind != tc.kind || len(again) != 1 || again[0].ID != first[0].ID {
				t.Fatalf("first run queued %v, the second %v: want the same one %s", ids2(first), ids2(again), tc.kind)
			}
			if after, _ := q.Get(ctx, r.ID); after.Revision != before.Revision {
				t.Errorf("the second run changed the request (revision %d → %d)", before.Revision, after.Revision)
			}
		})
	}
}

func ids2(os []*keydesk.Outgoing) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}
