package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// ConsumerName is the durable OUTBOX consumer every delivery instance shares.
const ConsumerName = "delivery"

// Actor names delivery in audit events.
const Actor = "delivery"

// Options configure New.
type Options struct {
	// Queue is the JetStream connection.
	Queue *queue.Conn
	// Sender submits composed mail (an *SMTP).
	Sender Sender
	// From is smtp.from, the sender of every email.
	From string
	// SupportAddress (smtp.support_address) receives an alert when a key
	// delivery fails for good; empty logs it only.
	SupportAddress string
	// Partners returns the registry in force (reloaded on SIGHUP).
	Partners func() *keydesk.Registry
	// Templates renders the delivery notice and alerts.
	Templates *templates.Set
	// RetryFor: temporary failures are retried this long after the
	// message was created (delivery.retry_for). Default 48h.
	RetryFor time.Duration
	// RetryDelays are the waits after the 1st, 2nd, … temporary failure;
	// the last repeats. Default 30s, 1m, 2m, 5m, 10m, 20m, 30m.
	RetryDelays []time.Duration
	// AckWait is how long a message may go without news before the queue
	// gives it to another instance; a slow SMTP dialogue reports progress
	// every AckWait/3. Default 2m.
	AckWait time.Duration
	// NotReadyDelay is the first wait before a key delivery whose request
	// is still being recorded as generated is looked at again; it grows
	// with each try, up to a minute. Default 500ms.
	NotReadyDelay time.Duration
	// MaxDeliver bounds deliveries of one message, after which it becomes
	// a dead letter. Default 1000 (retry_for normally ends it first).
	MaxDeliver int
	// Holder names this instance in records and logs.
	Holder string
	// Log receives one line per message handled; nil discards.
	Log *slog.Logger
	// Metrics receives keydesk_deliveries_total, keydesk_delivery_retries_total
	// and keydesk_smtp_seconds; nil keeps them private.
	Metrics *metrics.Registry
	// Now is the clock; nil is Queue.Now.
	Now func() time.Time
	// StopGrace is how long the message in hand may take once Run's
	// context ends. Default 25s.
	StopGrace time.Duration

	// afterSent, when set, runs after a message is marked sent and before
	// anything else: tests stop the consumer there to play a crash.
	afterSent func(o *keydesk.Outgoing) bool
}

// Service is the delivery role.
type Service struct {
	o        Options
	q        *queue.Conn
	records  *queue.Bucket[record]
	dead     *queue.Bucket[deadRecord]
	composer *Composer
	log      *slog.Logger

	deliveries *metrics.Counter
	retries    *metrics.Counter
	smtpTime   *metrics.Histogram
}

// Validate reports every setting outside what keydesk supports, joined,
// each as "<section>.<key>: what" (the key as keydesk.yaml spells it, for
// `keydesk check` and serve to name the file): a From that is one
// address, an ack wait in range. Zero values are the defaults New
// applies. New refuses less: a missing part or a From it cannot send
// as (tests take back a message sooner than an operator may).
func (o *Options) Validate() error {
	var errs []error
	if o.From == "" {
		errs = append(errs, errors.New("smtp.from: is required to send mail"))
	} else if _, err := mail.ParseAddress(o.From); err != nil {
		errs = append(errs, fmt.Errorf("smtp.from: %q is not one address: %w", o.From, err))
	}
	if o.AckWait != 0 && (o.AckWait < 3*time.Second || o.AckWait > time.Hour) {
		errs = append(errs, fmt.Errorf("delivery.ack_wait: %s is out of range 3s..1h", o.AckWait))
	}
	return errors.Join(errs...)
}

// New checks the options and returns the service; Run starts it.
func New(o Options) (*Service, error) {
	if o.Queue == nil || o.Sender == nil || o.Partners == nil || o.Templates == nil {
		return nil, errors.New("delivery: Options need Queue, Sender, Partners and Templates")
	}
	if o.Now == nil {
		o.Now = o.Queue.Now
	}
	c, err := NewComposer(o.From, o.Now)
	if err != nil {
		return nil, err
	}
	if o.RetryFor == 0 {
		o.RetryFor = 48 * time.Hour
	}
	if len(o.RetryDelays) == 0 {
		o.RetryDelays = []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute}
	}
	if o.AckWait == 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = 1000
	}
	if o.NotReadyDelay == 0 {
		o.NotReadyDelay = 500 * time.Millisecond
	}
	if o.StopGrace == 0 {
		o.StopGrace = 25 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	s := &Service{o: o, q: o.Queue, records: records(o.Queue), dead: deadRecords(o.Queue), composer: c, log: o.Log}
	s.deliveries = o.Metrics.Counter("keydesk_deliveries_total", "Outgoing messages handled, by kind and outcome (sent, duplicate, stale, failed, expired, malformed).", "kind", "outcome")
	s.retries = o.Metrics.Counter("keydesk_delivery_retries_total", "Temporary delivery failures that were scheduled for another try.")
	s.smtpTime = o.Metrics.Histogram("keydesk_smtp_seconds", "Duration of SMTP submissions.", []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}, "result")
	return s, nil
}

// consumer creates or updates the durable OUTBOX consumer. It has no
// BackOff (see queue.OutboxConsumer): a consumer that died holding a
// message gets it back after AckWait; retries after failures follow
// RetryDelays exactly.
func (s *Service) consumer(ctx context.Context) (*queue.OutboxConsumer, error) {
	c, err := s.q.OutboxConsumer(ctx, queue.OutboxConsumerConfig{
		Durable:       ConsumerName,
		Description:   "keydesk delivery: sends outgoing mail",
		AckWait:       s.o.AckWait,
		MaxDeliver:    s.o.MaxDeliver,
		MaxAckPending: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("delivery: outbox consumer: %w", err)
	}
	return c, nil
}

// Run consumes the outbox until ctx ends. The message in hand when it
// ends gets StopGrace to finish.
func (s *Service) Run(ctx context.Context) error {
	cons, err := s.consumer(ctx)
	if err != nil {
		return err
	}
	s.log.Info("delivery started", "consumer", ConsumerName, "holder", s.o.Holder)
	for ctx.Err() == nil {
		// One message at a time: a prefetched buffer would sit unacked
		// while an earlier message's SMTP dialogue runs.
		// Each pull is bounded, so one lost in a reconnect cannot stall
		// the loop.
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		batch, err := cons.Fetch(fctx)
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("outbox fetch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for msg := range batch.Messages() {
			s.handleInHand(ctx, msg)
		}
		if err := batch.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn("outbox fetch", "err", err)
		}
		cancel()
	}
	s.log.Info("delivery stopped")
	return nil
}

// handleInHand runs handle on a context that outlives ctx by StopGrace.
func (s *Service) handleInHand(ctx context.Context, msg *queue.OutboxMsg) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(s.o.StopGrace, cancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stop()
	s.handle(hctx, msg)
}

// ack confirms msg, waiting for the server's answer so that a lost ack is
// seen; the sent mark covers a lost one anyway.
func ack(ctx context.Context, msg *queue.OutboxMsg) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = msg.Ack(actx)
}

// inHand is one outbox message being handled, with what its phases share.
type inHand struct {
	msg  *queue.OutboxMsg
	meta *queue.OutboxMeta
	o    *keydesk.Outgoing
	log  *slog.Logger
	key  string // its sent record's key
	rev  uint64 // the sent record's revision, 0 while there is none
}

// retry gives the message back for another try after the retry delay.
func (s *Service) retry(m *inHand) { _ = m.msg.NakWithDelay(s.delay(m.meta.NumDelivered)) }

// handle takes one message through its phases: read it, look for an
// earlier outcome, check and compose it, claim it, send it, mark it sent.
// Each phase answers the message itself when it ends the handling.
func (s *Service) handle(ctx context.Context, msg *queue.OutboxMsg) {
	m, ok := s.open(ctx, msg)
	if !ok || s.handledBefore(ctx, m) {
		return
	}
	to, data, ok := s.prepare(ctx, m)
	if !ok || !s.claim(ctx, m) || !s.thread(ctx, m) {
		return
	}
	reply, ok := s.submit(ctx, m, to, data)
	if !ok {
		return
	}
	s.finish(ctx, m, to, reply)
}

// open decodes the message and reads its sent record.
func (s *Service) open(ctx context.Context, msg *queue.OutboxMsg) (*inHand, bool) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Error("outbox message without metadata", "err", err)
		_ = msg.Term()
		return nil, false
	}
	o, err := queue.DecodeOutgoing(msg.Data())
	if err == nil && (o.ID == "" || o.Kind == "") {
		err = errors.New("it has no ID or kind")
	}
	if err != nil {
		s.deliveries.Inc("unknown", "malformed")
		s.deadLetter(ctx, msg, meta, fmt.Sprintf("undecodable outbox message: %v", err))
		return nil, false
	}
	log := s.log.With("outbox_id", o.ID, "kind", string(o.Kind), "delivery", meta.NumDelivered)
	if o.RequestID != "" {
		log = log.With("request", o.RequestID)
	}
	m := &inHand{msg: msg, meta: meta, o: o, log: log, key: recordKey(o.ID)}
	return m, true
}

// handledBefore acts on an earlier outcome of the message in its sent
// record, and reports whether that ended the handling.
func (s *Service) handledBefore(ctx context.Context, m *inHand) bool {
	rec, rev, err := getRecord(ctx, s.records, m.key)
	if err != nil {
		m.log.Warn("cannot read the sent record; retrying", "err", err)
		s.retry(m)
		return true
	}
	m.rev = rev
	if rec == nil {
		return false
	}
	switch rec.State {
	case stateSent:
		// Sent before the ack was lost or a crash came: finish what
		// follows a send (idempotent), and ack.
		if err := s.afterSent(ctx, m.o, m.log); err != nil {
			m.log.Warn("after-send steps failed; retrying", "err", err)
			s.retry(m)
			return true
		}
		m.log.Info("already sent: acknowledged without sending", "message_id", rec.MessageID)
		s.deliveries.Inc(string(m.o.Kind), "duplicate")
		ack(ctx, m.msg)
		return true
	case stateDropped, stateFailed:
		m.log.Info("already handled: acknowledged", "state", string(rec.State))
		ack(ctx, m.msg)
		return true
	case stateSending:
		// The one ambiguous case (see the package comment): sent
		// again, with the same Message-ID.
		m.log.Warn("a previous attempt stopped mid-send: sending again with the same Message-ID", "holder", rec.Holder, "since", rec.At)
	}
	return false
}

// prepare checks the message may go and composes it; ok is false when
// that ended the handling.
func (s *Service) prepare(ctx context.Context, m *inHand) (to []string, data []byte, ok bool) {
	o := m.o
	to, err := Recipients(o)
	if err != nil {
		s.deliveries.Inc(string(o.Kind), "malformed")
		s.failed(ctx, m, err.Error())
		return nil, nil, false
	}
	if o.Kind == keydesk.KindKeyDelivery && !s.keyDeliveryMayGo(ctx, m) {
		return nil, nil, false
	}
	data, err = s.composer.Compose(o)
	if err != nil {
		s.deliveries.Inc(string(o.Kind), "malformed")
		s.failed(ctx, m, err.Error())
		return nil, nil, false
	}
	return to, data, true
}

// keyDeliveryMayGo acts on checkKeyDelivery's verdict, and reports whether
// the key delivery may be sent now.
func (s *Service) keyDeliveryMayGo(ctx context.Context, m *inHand) bool {
	o := m.o
	v := s.checkKeyDelivery(ctx, o)
	switch {
	case v.err != nil:
		m.log.Warn("cannot check the request; retrying", "err", v.err)
		s.retry(m)
	case v.wait != "":
		m.log.Debug("key delivery not ready; retrying shortly", "why", v.wait)
		_ = m.msg.NakWithDelay(s.notReadyDelay(m.meta.NumDelivered))
	case v.stale != "":
		m.log.Info("stale key delivery dropped", "why", v.stale)
		s.deliveries.Inc(string(o.Kind), "stale")
		if _, err := putRecord(ctx, s.records, m.key, s.newRecord(o, stateDropped, m.meta, v.stale), m.rev); err != nil && !errors.Is(err, errClaimed) {
			m.log.Warn("cannot record the drop", "err", err)
		}
		_ = s.q.Record(ctx, "system", keydesk.Event{Ref: o.RequestID, Actor: Actor, Action: "delivery-dropped", Change: "stale key delivery " + o.ID + ": " + v.stale})
		ack(ctx, m.msg)
	case v.refuse != "":
		s.deliveries.Inc(string(o.Kind), "failed")
		s.failed(ctx, m, v.refuse)
	default:
		return true
	}
	return false
}

// notReadyDelay is the wait before delivery n+1 of a key delivery whose
// request is still being recorded as generated: it grows with each try,
// up to a minute.
func (s *Service) notReadyDelay(n uint64) time.Duration {
	return min(s.o.NotReadyDelay*time.Duration(max(n, 1)), time.Minute)
}

// claim marks the message sending with a compare-and-set, so two instances
// holding the same message (an ack deadline passed) cannot both send it.
func (s *Service) claim(ctx context.Context, m *inHand) bool {
	rev, err := putRecord(ctx, s.records, m.key, s.newRecord(m.o, stateSending, m.meta, ""), m.rev)
	if errors.Is(err, errClaimed) {
		m.log.Info("another instance claimed this message; leaving it")
		_ = m.msg.NakWithDelay(s.o.AckWait)
		return false
	}
	if err != nil {
		m.log.Warn("cannot claim the message; retrying", "err", err)
		s.retry(m)
		return false
	}
	m.rev = rev
	return true
}

// thread adds the message to the conversation of each request it is
// about and indexes its Message-ID, before it is sent: a reply, however
// quick, then finds its request. Both are idempotent, so a message sent
// again after a crash is recorded once.
func (s *Service) thread(ctx context.Context, m *inHand) bool {
	o := m.o
	ids := o.Requests()
	if len(ids) == 0 {
		return true
	}
	msgID := s.composer.MessageID(o)
	err := s.q.IndexMessage(ctx, msgID, ids...)
	text := o.Text
	if len(o.Entity) > 0 {
		text = "(an encrypted OpenPGP message: the key pair, readable only by the technical contact)"
	}
	for _, id := range ids {
		if err != nil {
			break
		}
		_, err = s.q.AppendThread(ctx, keydesk.ThreadEntry{
			ID: keydesk.EntryID("out", o.ID), RequestID: id, At: s.o.Now().UTC(), Kind: keydesk.ThreadEmailOut,
			From: s.composer.From.Address, To: strings.Join(o.To, ", "), Subject: o.Subject, MessageID: msgID, Text: text,
		})
	}
	if err != nil {
		m.log.Warn("cannot add the message to its conversation; retrying", "err", err)
		s.retry(m)
		return false
	}
	return true
}

// submit sends the message; on a failure it fails it for good or gives it
// back for a retry, and ok is false.
func (s *Service) submit(ctx context.Context, m *inHand, to []string, data []byte) (reply string, ok bool) {
	o := m.o
	reply, err := s.send(ctx, m.msg, envelopeFrom(s.composer), to, data)
	if err == nil {
		return reply, true
	}
	var se *SendError
	if !errors.As(err, &se) {
		se = &SendError{Phase: "send", Reply: err.Error(), Err: err}
	}
	if !keydesk.Temporary(se) {
		m.log.Warn("refused by the mail server", "reply", se.Summary())
		s.deliveries.Inc(string(o.Kind), "failed")
		s.failed(ctx, m, "the mail server refused it: "+se.Summary())
		return "", false
	}
	created := o.CreatedAt
	if created.IsZero() {
		created = m.meta.Timestamp // when it entered the outbox
	}
	if age := s.o.Now().Sub(created); age >= s.o.RetryFor {
		m.log.Warn("temporary failures for too long: giving up", "reply", se.Summary(), "age", age.Round(time.Second))
		s.deliveries.Inc(string(o.Kind), "expired")
		s.failed(ctx, m, fmt.Sprintf("not accepted within %s (delivery.retry_for); last reply: %s", s.o.RetryFor, se.Summary()))
		return "", false
	}
	r := s.newRecord(o, stateRetrying, m.meta, se.Summary())
	if _, err := putRecord(ctx, s.records, m.key, r, m.rev); err != nil {
		m.log.Warn("cannot record the retry", "err", err)
	}
	d := s.delay(m.meta.NumDelivered)
	m.log.Warn("temporary delivery failure; will retry", "reply", se.Summary(), "in", d)
	s.retries.Inc()
	_ = m.msg.NakWithDelay(d)
	return "", false
}

// finish marks a sent message sent, runs what follows a send and acks it.
func (s *Service) finish(ctx context.Context, m *inHand, to []string, reply string) {
	o := m.o
	// Mark sent before anything else: from here on a redelivery must not
	// send again. A few tries, since failing here means a duplicate.
	r := s.newRecord(o, stateSent, m.meta, reply)
	var err error
	for i := 0; ; i++ {
		if _, err = putRecord(ctx, s.records, m.key, r, m.rev); err == nil || i == 4 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
	if err != nil {
		m.log.Error("sent, but the sent mark could not be written: a redelivery will send it again", "err", err)
		return // not acked: the redelivery is the ambiguous case
	}
	m.log.Info("sent", "to", strings.Join(to, ","), "message_id", r.MessageID, "reply", reply)
	s.deliveries.Inc(string(o.Kind), "sent")
	if s.o.afterSent != nil && s.o.afterSent(o) {
		return
	}
	if err := s.afterSent(ctx, o, m.log); err != nil {
		m.log.Warn("after-send steps failed; retrying", "err", err)
		s.retry(m)
		return
	}
	ack(ctx, m.msg)
}

func (s *Service) newRecord(o *keydesk.Outgoing, st state, meta *queue.OutboxMeta, reply string) *record {
	return &record{
		ID: o.ID, Kind: string(o.Kind), State: st, MessageID: s.composer.MessageID(o),
		Delivery: meta.NumDelivered, Holder: s.o.Holder, At: s.o.Now().UTC(), Reply: reply,
	}
}

// delay is the wait before delivery n+1.
func (s *Service) delay(n uint64) time.Duration {
	i := int(n) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s.o.RetryDelays) {
		i = len(s.o.RetryDelays) - 1
	}
	return s.o.RetryDelays[i]
}

// send runs the SMTP submission, telling the queue every AckWait/3 that
// the message is still in hand.
func (s *Service) send(ctx context.Context, msg *queue.OutboxMsg, from string, to []string, data []byte) (string, error) {
	tick := time.NewTicker(s.o.AckWait / 3)
	defer tick.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = msg.InProgress()
			}
		}
	}()
	start := time.Now()
	reply, err := s.o.Sender.Send(ctx, from, to, data)
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.smtpTime.Observe(time.Since(start).Seconds(), result)
	return reply, err
}

// failed handles a message that will not be sent: a key delivery's request
// moves to delivery_failed and support is alerted; the message becomes a
// dead letter.
func (s *Service) failed(ctx context.Context, m *inHand, problem string) {
	o, rev := m.o, m.rev
	if rev == 0 {
		if _, r, err := getRecord(ctx, s.records, m.key); err == nil {
			rev = r
		}
	}
	// The request first: a redelivery finds no failed mark until it is done.
	if o.Kind == keydesk.KindKeyDelivery && o.RequestID != "" {
		if err := s.markFailed(ctx, o, problem, m.log); err != nil {
			m.log.Warn("cannot mark the request delivery_failed; retrying", "err", err)
			s.retry(m)
			return
		}
	}
	if _, err := putRecord(ctx, s.records, m.key, s.newRecord(o, stateFailed, m.meta, problem), rev); err != nil {
		m.log.Warn("cannot record the failure", "err", err)
	}
	s.deadLetter(ctx, m.msg, m.meta, problem)
}

// deadLetter keeps the message's original and terminates it, which puts an
// advisory in the DEADLETTER stream.
func (s *Service) deadLetter(ctx context.Context, msg *queue.OutboxMsg, meta *queue.OutboxMeta, reason string) {
	data := msg.Data()
	if !json.Valid(data) {
		data, _ = json.Marshal(map[string]string{"undecodable": fmt.Sprintf("%d bytes", len(data))})
	}
	dr := deadRecord{StreamSeq: meta.StreamSeq, Subject: msg.Subject(), Reason: reason, At: s.o.Now().UTC(), Data: data}
	if _, err := s.dead.Put(ctx, deadKey(dr.StreamSeq), &dr); err != nil {
		s.log.Warn("cannot keep the dead letter's original", "seq", dr.StreamSeq, "err", err)
	}
	if len(reason) > 200 {
		reason = reason[:200]
	}
	if err := msg.TermWithReason(reason); err != nil {
		s.log.Warn("cannot terminate the message", "seq", dr.StreamSeq, "err", err)
	}
}

// keyVerdict is what checkKeyDelivery decided.
type keyVerdict struct {
	stale  string // drop it, with this reason
	wait   string // not yet: ask again shortly
	refuse string // fail it for good, with this reason
	err    error  // could not tell: retry
}

// checkKeyDelivery decides whether a key delivery may go: its request is
// generated with the same attempt, and it is addressed to the partner's
// registered technical contact and nobody else.
func (s *Service) checkKeyDelivery(ctx context.Context, o *keydesk.Outgoing) keyVerdict {
	req, err := s.q.Get(ctx, o.RequestID)
	if errors.Is(err, keydesk.ErrNotFound) {
		return keyVerdict{stale: "request " + o.RequestID + " does not exist"}
	}
	if err != nil {
		return keyVerdict{err: err}
	}
	if req.Attempt == nil || req.Attempt.ID != o.AttemptID {
		return keyVerdict{stale: "the key was created again since (attempt " + o.AttemptID + " is no longer the request's)"}
	}
	switch req.State {
	case keydesk.StateGenerated:
	case keydesk.StateGenerating:
		// The batch queues the delivery before it records the key as
		// generated: this attempt is moments from done (or, if the batch
		// died, reconciliation will give the request a new attempt and
		// make this message stale). Ask again shortly.
		return keyVerdict{wait: "request is still generating with this attempt"}
	default:
		return keyVerdict{stale: "request is " + string(req.State) + ", not generated"}
	}
	p, ok := s.o.Partners().Partner(req.Partner)
	if !ok {
		return keyVerdict{refuse: "partner " + req.Partner + " is no longer in partners.yaml"}
	}
	if o.Partner != "" && o.Partner != req.Partner {
		return keyVerdict{refuse: "the delivery names partner " + o.Partner + " but the request is " + req.Partner + "'s"}
	}
	contact := p.TechnicalContact.Email
	if len(o.To) != 1 || !keydesk.MatchAddress(contact, bareAddress(o.To[0])) {
		return keyVerdict{refuse: fmt.Sprintf("the delivery is addressed to %s, not to %s's registered technical contact %s", strings.Join(o.To, ", "), p.ID, contact)}
	}
	if !isEncrypted(o.Entity) {
		return keyVerdict{refuse: "the key delivery is not a multipart/encrypted entity: refusing to send it"}
	}
	return keyVerdict{}
}

// isEncrypted reports whether entity is PGP/MIME (RFC 3156).
func isEncrypted(entity []byte) bool {
	if len(entity) == 0 {
		return false
	}
	hdr, _, ok := strings.Cut(string(entity[:min(len(entity), 8192)]), "\n\n")
	if !ok {
		hdr, _, ok = strings.Cut(string(entity[:min(len(entity), 8192)]), "\r\n\r\n")
		if !ok {
			return false
		}
	}
	for _, line := range strings.Split(unfold(hdr), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "Content-Type") {
			continue
		}
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(v))
		return err == nil && mt == "multipart/encrypted" && strings.EqualFold(params["protocol"], "application/pgp-encrypted")
	}
	return false
}

func unfold(h string) string {
	h = strings.ReplaceAll(h, "\r\n", "\n")
	h = strings.ReplaceAll(h, "\n ", " ")
	return strings.ReplaceAll(h, "\n\t", " ")
}

func bareAddress(s string) string {
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		s = strings.TrimSuffix(s[i+1:], ">")
	}
	return strings.TrimSpace(s)
}

// markFailed moves the request generated→delivery_failed and alerts support.
func (s *Service) markFailed(ctx context.Context, o *keydesk.Outgoing, problem string, log *slog.Logger) error {
	_, err := s.q.Transition(ctx, o.RequestID, keydesk.StateGenerated, keydesk.StateDeliveryFailed, Actor, problem, func(r *keydesk.Request) error {
		if r.Attempt == nil || r.Attempt.ID != o.AttemptID {
			return errStale
		}
		r.Problem = problem
		return nil
	})
	if errors.Is(err, errStale) || errors.Is(err, keydesk.ErrInvalidTransition) {
		log.Info("request no longer generated with this attempt: left as it is", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	log.Warn("request marked delivery_failed", "problem", problem)
	// The request is failed for good now; a lost alert must not undo
	// that, so its failure is logged loudly rather than retried.
	if err := s.alert(ctx, o.ID+".alert", "Key delivery failed for "+o.RequestID,
		fmt.Sprintf("The encrypted key for request %s (partner %s) could not be delivered to the technical contact %s:\n\n  %s\n\nThe request is now delivery_failed; the batch role revokes its key.",
			o.RequestID, o.Partner, strings.Join(o.To, ", "), problem),
		"Check the contact address and the mail server's reply, fix the cause, then retry the request so a new key is made."); err != nil {
		log.Error("the alert to support could not be queued", "err", err)
	}
	return nil
}

var errStale = errors.New("delivery: stale attempt")

// alert enqueues an alert to support.
func (s *Service) alert(ctx context.Context, id, title, text, action string) error {
	if s.o.SupportAddress == "" {
		s.log.Warn("alert not sent: smtp.support_address is not set", "title", title)
		return nil
	}
	out, err := s.o.Templates.AlertMail(id, s.o.SupportAddress, templates.Alert{Title: title, Text: text, Action: action})
	if err != nil {
		return err
	}
	return s.q.Enqueue(ctx, out)
}

// NoticeData is what the delivery-notice template gets.
type NoticeData struct {
	RequestID   string
	PartnerName string
	Environment string
	Label       string
	Scopes      string
	KeyID       string
	// Contact is the technical contact's address, masked: s***@acme.example.
	Contact   string
	Delivered time.Time
	// ReplacesKeyID is, for a rotation, the key the new one replaces, and
	// OldKeyStops when it is revoked at the latest (zero: once the
	// contact confirms).
	ReplacesKeyID string
	OldKeyStops   time.Time
}

// afterSent finishes a key delivery: generated→delivered, and the notice
// to the requester. Both are idempotent, so a redelivery may run it again.
func (s *Service) afterSent(ctx context.Context, o *keydesk.Outgoing, log *slog.Logger) error {
	if o.Kind != keydesk.KindKeyDelivery {
		return nil
	}
	contact := ""
	if len(o.To) > 0 {
		contact = bareAddress(o.To[0])
	}
	for i := 0; ; i++ {
		_, err := s.q.Transition(ctx, o.RequestID, keydesk.StateGenerated, keydesk.StateDelivered, Actor,
			"sent encrypted to "+MaskAddress(contact), func(r *keydesk.Request) error {
				if r.Attempt == nil || r.Attempt.ID != o.AttemptID {
					return errStale
				}
				r.Problem = ""
				return nil
			})
		if err == nil {
			log.Info("request delivered")
			break
		}
		cur, gerr := s.q.Get(ctx, o.RequestID)
		if gerr != nil {
			return err
		}
		ours := cur.Attempt != nil && cur.Attempt.ID == o.AttemptID
		switch {
		case cur.State == keydesk.StateDelivered && ours:
			// Done by an earlier run of this; the notice may not be.
		case cur.State == keydesk.StateGenerated && ours && errors.Is(err, keydesk.ErrConflict) && i < 3:
			continue // another writer changed the record: decide again
		case cur.State != keydesk.StateGenerated || !ours:
			log.Warn("sent, but the request is no longer waiting for this delivery", "state", string(cur.State))
			return nil
		default:
			return err
		}
		break
	}
	req, err := s.q.Get(ctx, o.RequestID)
	if err != nil {
		return err
	}
	if req.Requester == "" {
		return nil
	}
	data := NoticeData{
		RequestID: req.ID, Environment: string(req.Environment), Label: req.Label, KeyID: req.KeyID,
		Contact: MaskAddress(contact), Delivered: s.o.Now().UTC(), ReplacesKeyID: req.ReplacesKeyID,
	}
	if req.Rotation != nil {
		data.OldKeyStops = req.Rotation.Due
	}
	var scopes []string
	for _, sc := range req.Scopes {
		scopes = append(scopes, string(sc))
	}
	data.Scopes = strings.Join(scopes, ", ")
	data.PartnerName = req.Partner
	if p, ok := s.o.Partners().Partner(req.Partner); ok && p.Name != "" {
		data.PartnerName = p.Name
	}
	m, err := s.o.Templates.RenderPartnerMail(string(keydesk.KindDeliveryNotice), data)
	if err != nil {
		return err
	}
	return s.q.Enqueue(ctx, &keydesk.Outgoing{
		ID: req.ID + ".notice." + o.AttemptID, Kind: keydesk.KindDeliveryNotice, RequestID: req.ID, Partner: req.Partner,
		To: []string{req.Requester}, Subject: m.Subject, Text: m.Body, InReplyTo: req.SourceMessageID,
	})
}

// MaskAddress is keydesk.MaskAddress: sec@acme.example → s***@acme.example.
func MaskAddress(addr string) string { return keydesk.MaskAddress(addr) }
