// Package intake reads the support mailbox over IMAP and turns each email
// into request records on the queue.
//
// For every message in the inbox, in UID order, the poller reads its size
// first: one over max_message_bytes is recorded as rejected (too-large,
// from its header alone) and moved to the rejected mailbox without its body
// being downloaded. Any other is streamed (BODY.PEEK[], so \Seen is never
// set) into a private spool file, handed to the Handler (the parser), and
// what the Handler decides is made durable in JetStream — the raw mail in
// the object store, each request created (idempotently, by source), the
// reply put in the outbox (under a stable ID), an intake record naming the
// outcome — and only then is the email moved to the processed or rejected
// mailbox.
//
// Invariants:
//   - no request is lost: an email leaves the inbox only after its records
//     are stored; a crash at any point leaves it in the inbox, and the next
//     scan stores the same records again, which creates nothing twice;
//   - bad input breaks nothing: a Handler panic is recovered, and an email
//     that cannot be read is set aside with its reason recorded, and the
//     poller goes on with the next one; a temporary failure (the queue is
//     down) leaves the email in the inbox to be tried again later;
//   - an email that kills the process (a crash no recover catches, an
//     out-of-memory kill) cannot do so forever: every attempt at an email
//     is counted in JetStream before it starts and forgotten when it ends,
//     emails whose attempts did not end are tried alone, and one whose
//     count reaches imap.max_attempts is set aside unparsed, with an alert
//     to support, and the poller goes on;
//   - memory is bounded: a message body is streamed to a 0600 file under
//     the spool directory that is removed after use; only emails up to
//     max_message_bytes, and at most InFlightBytes of them per FETCH, are
//     also held in memory while they are processed;
//   - no secret pasted in an email is kept: before anything reads the
//     spooled email, the secrets in it are replaced by markers (package
//     redact), in the file itself; the keys they belong to are proposed
//     for revocation (secrets.go);
//   - every network operation is bounded by a watchdog that closes the
//     connection when it does not complete in time; a lost connection is
//     re-established with back-off; IDLE is ended and the mailbox rescanned
//     every poll_interval, so a silently dead IDLE costs at most that long;
//   - a change of the mailbox's UIDVALIDITY is logged, audited and followed
//     by a full rescan (which is harmless: creation is idempotent);
//   - one poller per mailbox runs across instances (the caller holds the
//     lease LeaseName(mailbox) around Run);
//   - with conversations (ParseOptions.Threads), a reply from an
//     authenticated requester of a request's own partner joins that
//     request's thread and never makes a request; anyone else who names a
//     request learns nothing of it and is read as a new email; a request
//     is never changed silently: a correction holds it for a person, or is
//     attached with an alert to support when it comes too late; at most
//     one status reply an hour goes out per request.
package intake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// Queue is what the poller stores through; *queue.Conn is one.
type Queue interface {
	Create(ctx context.Context, r *keydesk.Request, actor string) (*keydesk.Request, bool, error)
	Enqueue(ctx context.Context, m *keydesk.Outgoing) error
	PutMail(ctx context.Context, ref string, r io.Reader, max int64) error
	Record(ctx context.Context, kind string, ev keydesk.Event) error
	// Inventories are the partners' keys, where a key whose secret an
	// email exposed is found.
	Inventories(ctx context.Context) ([]*keydesk.Inventory, error)
	// List finds an open revoke request of an exposed key.
	List(ctx context.Context, f queue.Filter) ([]*keydesk.Request, error)
	queue.Buckets
	Attempts(name string) *queue.Attempts
}

var _ Queue = (*queue.Conn)(nil)

// Mailbox is the mailbox the poller reads and how to reach it: the imap
// section of keydesk.yaml, as main hands it over with its defaults.
type Mailbox struct {
	mailauth.MailServer
	// Mailbox is read for requests.
	Mailbox string
	// ProcessedMailbox receives mail whose requests are queued;
	// RejectedMailbox mail set aside, with the reason recorded.
	ProcessedMailbox string
	RejectedMailbox  string
	// PollInterval is the scan interval when the server has no IDLE, and
	// the safety rescan when it has.
	PollInterval time.Duration
	// MaxMessageBytes is how much of an email is kept (the raw copy in the
	// queue is cut there, marked); a larger email is still read whole.
	MaxMessageBytes int64
	// HardMaxMessageBytes: larger emails are set aside unread, from their
	// header alone. Default the larger of MaxMessageBytes and
	// DefaultHardMaxMessageBytes.
	HardMaxMessageBytes int64
	// MaxAttempts: an email whose processing ended with the process this
	// many times is set aside unparsed. Default 3.
	MaxAttempts int
	// LeaseTTL is how long the mailbox's lease (LeaseName) outlives an
	// instance that dies while polling; main runs the poller under it.
	// Only Validate looks at it.
	LeaseTTL time.Duration
}

// DefaultHardMaxMessageBytes bounds an email keydesk downloads at all,
// unless Mailbox.HardMaxMessageBytes says otherwise: it is spooled to disk
// and read as a stream, so the bound is one of disk and time, not memory.
const DefaultHardMaxMessageBytes = 100 << 20

// Options configure New.
type Options struct {
	// IMAP is the mailbox and how to reach it.
	IMAP Mailbox
	// TLSConfig for tls and starttls; nil verifies against the system roots
	// with the host of IMAP.Address.
	TLSConfig *tls.Config
	// Auth returns the SASL client to log in with; nil uses LOGIN with
	// IMAP.Username and IMAP.Password.
	Auth func(ctx context.Context) (sasl.Client, error)
	// AuthFailed, if set, is told when the server refuses the credentials
	// (an OAuth2 token source drops its cached token).
	AuthFailed func()
	// Queue stores requests, replies, raw mail and intake records.
	Queue Queue
	// Handler decides what each email becomes.
	Handler Handler
	// SpoolDir holds messages while they are processed. Required.
	SpoolDir string
	// Templates renders the alert to support about an email set aside
	// after imap.max_attempts attempts that did not end; nil sends none.
	Templates *templates.Set
	// SupportAddress receives that alert (smtp.support_address); empty
	// sends none.
	SupportAddress string
	// Metrics, if set, receives keydesk_emails_total{outcome},
	// keydesk_imap_reconnects_total and keydesk_intake_seconds.
	Metrics *metrics.Registry
	// Log receives what happens, each email with its UID and Message-ID.
	Log *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// NoIdle polls every IMAP.PollInterval even when the server has IDLE.
	NoIdle bool
	// BatchSize is how many messages one FETCH reads. Default 64.
	BatchSize int
	// Workers is how many emails of a batch are parsed and stored at once
	// (the Handler must allow concurrent calls). Default 16.
	Workers int
	// InFlightBytes bounds the size of the emails stored at once, and so
	// the memory storing takes: an email larger than this is stored alone.
	// Default 4 MiB.
	InFlightBytes int64
	// Actor names the poller in audit events. Default "intake".
	Actor string
	// MaxBackoff bounds the wait between reconnection attempts. Default 1m.
	MaxBackoff time.Duration
}

// Poller reads one mailbox. Run it under the mailbox's lease.
type Poller struct {
	o        Options
	log      *slog.Logger
	records  *queue.Bucket[Record]
	mailbox  *queue.Bucket[MailboxState]
	attempts *queue.Attempts // of this mailbox, by UID: attempts that began and did not end

	emails       *metrics.Counter
	reconnects   *metrics.Counter
	seconds      *metrics.Histogram
	exposedTotal *metrics.Counter

	// noRedact turns the redaction of pasted secrets off (benchmarks).
	noRedact bool

	lastContact atomic.Int64 // unix nanoseconds of the last successful IMAP exchange
	running     atomic.Bool

	inFlight *byteBudget

	mu         sync.Mutex
	retry      map[uint32]retryState // by UID, for the current UIDVALIDITY
	fetchFails map[uint32]int        // by UID: downloads that broke the connection

	// beforeMove, if set (tests), runs after a chunk's records are durable
	// and before its messages are moved; an error stops the poller there.
	beforeMove func(uids []uint32) error
}

type retryState struct {
	failures  int
	notBefore time.Time
}

// Validate reports every setting of the imap section outside what
// keydesk supports, joined, each as "imap.<key>: what" (the key as
// keydesk.yaml spells it, for `keydesk check` and serve to name the file):
// the server's (mailauth.MailServer.Validate; file names resolved) and
// the mailbox's.
// Zero values are the defaults New applies. New refuses less: only what
// a poller cannot run with (tests poll faster than an operator may).
func (o *Options) Validate() error {
	m := o.IMAP
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("imap.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if m.Address == "" {
		bad("address", "is not set: the intake role needs the support mailbox")
	}
	errs = append(errs, mailauth.InSection("imap", m.MailServer.Validate()))
	if m.PollInterval < time.Second {
		bad("poll_interval", "%s is too short: at least 1s", m.PollInterval)
	}
	if m.LeaseTTL != 0 && (m.LeaseTTL < time.Second || m.LeaseTTL > time.Hour) {
		bad("lease_ttl", "%s is out of range 1s..1h", m.LeaseTTL)
	}
	if m.MaxMessageBytes < 64<<10 {
		bad("max_message_bytes", "%d is too small: at least 64KiB", m.MaxMessageBytes)
	}
	if m.HardMaxMessageBytes != 0 && m.HardMaxMessageBytes < m.MaxMessageBytes {
		bad("hard_max_message_bytes", "%d is smaller than imap.max_message_bytes (%d): it must be at least that", m.HardMaxMessageBytes, m.MaxMessageBytes)
	}
	if m.MaxAttempts < 0 || m.MaxAttempts > 100 {
		bad("max_attempts", "%d is out of range: use 1 to 100 (default 3)", m.MaxAttempts)
	}
	if err := m.mailboxesDiffer(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mailboxesDiffer reports three mailboxes that are not all set and
// distinct: a poller that moved mail into the mailbox it reads would
// read it again.
func (m Mailbox) mailboxesDiffer() error {
	if m.Mailbox == "" || m.ProcessedMailbox == "" || m.RejectedMailbox == "" {
		return errors.New("imap.mailbox: mailbox, processed_mailbox and rejected_mailbox must all be set")
	}
	if m.ProcessedMailbox == m.Mailbox || m.RejectedMailbox == m.Mailbox {
		return fmt.Errorf("imap.processed_mailbox: processed and rejected mailboxes must differ from imap.mailbox %q", m.Mailbox)
	}
	return nil
}

// runnable reports what New refuses, joined: a poller needs a server, a
// queue, a handler, a spool directory, three distinct mailboxes and
// positive bounds.
func (o *Options) runnable() error {
	var errs []error
	if o.IMAP.Address == "" {
		errs = append(errs, errors.New("intake: imap.address is empty"))
	}
	if o.Queue == nil {
		errs = append(errs, errors.New("intake: no queue"))
	}
	if o.Handler == nil {
		errs = append(errs, errors.New("intake: no handler"))
	}
	if o.SpoolDir == "" {
		errs = append(errs, errors.New("intake: no spool directory"))
	}
	if err := o.IMAP.mailboxesDiffer(); err != nil {
		errs = append(errs, fmt.Errorf("intake: %w", err))
	}
	if o.IMAP.MaxMessageBytes <= 0 {
		errs = append(errs, errors.New("intake: imap.max_message_bytes must be positive"))
	}
	if o.IMAP.HardMaxMessageBytes < 0 || (o.IMAP.HardMaxMessageBytes > 0 && o.IMAP.HardMaxMessageBytes < o.IMAP.MaxMessageBytes) {
		errs = append(errs, errors.New("intake: imap.hard_max_message_bytes must be at least imap.max_message_bytes"))
	}
	if o.IMAP.PollInterval <= 0 {
		errs = append(errs, errors.New("intake: imap.poll_interval must be positive"))
	}
	if o.IMAP.MaxAttempts < 0 {
		errs = append(errs, errors.New("intake: imap.max_attempts must be positive"))
	}
	return errors.Join(errs...)
}

// New checks the options and returns a poller.
func New(o Options) (*Poller, error) {
	if err := o.runnable(); err != nil {
		return nil, err
	}
	if o.IMAP.Timeout <= 0 {
		o.IMAP.Timeout = 60 * time.Second
	}
	if o.IMAP.MaxAttempts == 0 {
		o.IMAP.MaxAttempts = 3
	}
	if o.IMAP.HardMaxMessageBytes == 0 {
		o.IMAP.HardMaxMessageBytes = max(o.IMAP.MaxMessageBytes, DefaultHardMaxMessageBytes)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 64
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.InFlightBytes <= 0 {
		o.InFlightBytes = 4 << 20
	}
	if o.Actor == "" {
		o.Actor = "intake"
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	p := &Poller{
		o:          o,
		log:        o.Log.With("mailbox", o.IMAP.Mailbox),
		records:    records(o.Queue),
		mailbox:    mailboxes(o.Queue),
		attempts:   o.Queue.Attempts(queue.KeyToken(o.IMAP.Mailbox)),
		retry:      map[uint32]retryState{},
		fetchFails: map[uint32]int{},
		inFlight:   newByteBudget(o.InFlightBytes),
		emails: o.Metrics.Counter("keydesk_emails_total",
			"Emails taken out of the inbox, by outcome (accept, reject, review, ignore, malformed, too-large, poison, reply).", "outcome"),
		reconnects: o.Metrics.Counter("keydesk_imap_reconnects_total", "IMAP connections re-established after a failure."),
		seconds: o.Metrics.Histogram("keydesk_intake_seconds",
			"Time to process one email, from the end of its download to its records being stored.", nil),
		exposedTotal: o.Metrics.Counter("keydesk_exposed_secrets_total",
			"API secrets found pasted in emails (redacted before anything was stored), by the partner of the key, else of the sender, else unknown.", "partner"),
	}
	return p, nil
}

// Ready reports whether the poller has talked to the server recently
// (within twice the poll interval). A poller that is not running (standing
// by for the lease) is ready.
func (p *Poller) Ready(context.Context) error {
	if !p.running.Load() {
		return nil
	}
	last := p.lastContact.Load()
	if last == 0 {
		return fmt.Errorf("intake: no contact with %s yet", p.o.IMAP.Address)
	}
	ago := p.o.Now().Sub(time.Unix(0, last))
	if limit := 2*p.o.IMAP.PollInterval + p.o.IMAP.Timeout; ago > limit {
		return fmt.Errorf("intake: last contact with %s was %s ago", p.o.IMAP.Address, ago.Round(time.Second))
	}
	return nil
}

func (p *Poller) contact() { p.lastContact.Store(p.o.Now().UnixNano()) }

// Run reads the mailbox until ctx ends, reconnecting after failures with
// back-off. It returns ctx's error, or an error that retrying cannot fix
// (the spool directory cannot be made).
func (p *Poller) Run(ctx context.Context) error {
	if err := p.prepareSpool(); err != nil {
		return err
	}
	p.running.Store(true)
	defer p.running.Store(false)
	backoff := min(time.Second, p.o.MaxBackoff)
	for {
		start := time.Now()
		err := p.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var hook *hookError
		if errors.As(err, &hook) {
			return hook.err
		}
		if time.Since(start) > 2*p.o.IMAP.PollInterval {
			backoff = min(time.Second, p.o.MaxBackoff) // it worked for a while: start over
		}
		p.log.Warn("imap connection lost; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		p.reconnects.Inc()
		backoff = min(backoff*2, p.o.MaxBackoff)
	}
}

// prepareSpool makes the spool directory private and empties it of files a
// crash left behind (their emails are still in the inbox).
func (p *Poller) prepareSpool() error {
	if err := os.MkdirAll(p.o.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("intake: spool directory: %w", err)
	}
	if err := os.Chmod(p.o.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("intake: spool directory: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(p.o.SpoolDir, "msg-*"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return nil
}

// hookError is a test hook's error: it stops Run.
type hookError struct{ err error }

func (e *hookError) Error() string { return e.err.Error() }

// backoffFor says how long a message waits after its n-th temporary failure.
func (p *Poller) backoffFor(n int) time.Duration {
	d := time.Second << min(n, 10)
	return min(d, p.o.IMAP.PollInterval)
}

func (p *Poller) noteRetry(uid uint32) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.retry[uid]
	st.failures++
	d := p.backoffFor(st.failures - 1)
	st.notBefore = p.o.Now().Add(d)
	p.retry[uid] = st
	return d
}

func (p *Poller) retryLater(uid uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.retry[uid]
	return ok && p.o.Now().Before(st.notBefore)
}

func (p *Poller) clearRetry(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.retry, uid)
	delete(p.fetchFails, uid)
}

// nextRetry is the earliest time a waiting message may be tried again.
func (p *Poller) nextRetry() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var t time.Time
	for _, st := range p.retry {
		if t.IsZero() || st.notBefore.Before(t) {
			t = st.notBefore
		}
	}
	return t, !t.IsZero()
}

// pruneRetries forgets messages no longer in the mailbox (uids sorted).
func (p *Poller) pruneRetries(uids []imap.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for u := range p.retry {
		if _, found := slices.BinarySearch(uids, imap.UID(u)); !found {
			delete(p.retry, u)
		}
	}
	for u := range p.fetchFails {
		if _, found := slices.BinarySearch(uids, imap.UID(u)); !found {
			delete(p.fetchFails, u)
		}
	}
}

func (p *Poller) noteFetchFailure(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetchFails[uid]++
}

func (p *Poller) fetchFailures(uid uint32) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetchFails[uid]
}

func (p *Poller) resetRetries() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.retry)
	clear(p.fetchFails)
}
