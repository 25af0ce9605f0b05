// Package notify tells the support team about work that waits for a
// person, so that nobody has to watch the queue page: a chat webhook post
// for each request that enters pending_review, and a digest email on a
// schedule listing what waits and for how long.
//
// Invariants:
//   - one post per request and reason (a new request; each proposed
//     change that sends it back to review), across restarts and
//     instances: a record in the threads bucket (key prefix "n.") is
//     claimed with a compare-and-set before the post and marked sent after
//     it, and only the holder of the notify lease sends. A post that may
//     have left when its instance died is never sent again (at most once:
//     a duplicate in a chat channel trains people to ignore it);
//   - the webhook URL is a secret: its path holds the channel's token, so
//     it is never logged, and errors about it are stripped of it;
//   - what a partner wrote (a label) reaches the chat made inert: one
//     line, no control or format characters, no markup, no mentions;
//   - one digest per scheduled time: its outbox ID is derived from that
//     time, and the outbox and delivery send one message per ID.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/group"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/templates"
)

// LeaseName is the lease whose holder sends notifications.
const LeaseName = "notify"

// noticePrefix is the key prefix of the notification records in the
// threads bucket (beside its "e." entries and "m." Message-ID index).
const noticePrefix = "n."

// Queue is what the notifier needs of the queue: the requests, the outbox
// and the lease. *queue.Conn is one.
type Queue interface {
	queue.Buckets
	Get(ctx context.Context, id string) (*keydesk.Request, error)
	List(ctx context.Context, f queue.Filter) ([]*keydesk.Request, error)
	Enqueue(ctx context.Context, m *keydesk.Outgoing) error
	Inventories(ctx context.Context) ([]*keydesk.Inventory, error)
	Standby(ctx context.Context, name, holder string, ttl time.Duration, fn func(ctx context.Context) error) error
}

var _ Queue = (*queue.Conn)(nil)

// Schedule says when the digest is due; a parsed batch schedule
// (batch.ParseSchedule) is one.
type Schedule interface {
	Next(time.Time) time.Time
}

// Clock is the time source of the digest schedule and the retry waits.
type Clock = keydesk.Clock

// Options configure a Notifier. With neither WebhookURL nor Digest it
// does nothing.
type Options struct {
	// Queue holds the requests, the records and the outbox. Required.
	Queue Queue
	// WebhookURL (notify.webhook_url) receives the posts; zero: none.
	WebhookURL keydesk.Secret
	// Digest (notify.digest, parsed) is when the digest is sent; nil: never.
	Digest Schedule
	// SupportAddress (smtp.support_address) receives the digest. Required
	// with Digest.
	SupportAddress string
	// Templates render the digest. Required with Digest.
	Templates *templates.Set
	// BaseURL (review.base_url) makes the links to request pages; empty:
	// no links.
	BaseURL string
	// Client posts to the webhook. Default: a client with a 10s timeout
	// that follows no redirect.
	Client *http.Client
	// RetryDelays are the waits before each retry of a post that failed
	// for a reason time may cure (a network error, 429, 5xx): one try
	// more than there are delays, then it gives up. A Retry-After longer
	// than the delay (up to MaxRetryAfter) is honoured. Default 5s, 30s,
	// 2m, 10m.
	RetryDelays []time.Duration
	// MaxRetryAfter bounds the wait a Retry-After header may ask for.
	// Default 15m.
	MaxRetryAfter time.Duration
	// MaxAge: a request that has waited longer than this when the
	// notifier first sees it is not posted (the digest lists it), so that
	// turning the webhook on does not flood the channel with the backlog.
	// Default 24h.
	MaxAge time.Duration
	// RotationMaxAge and RotationRemindBefore are the rotation policy
	// (rotation.max_age, rotation.remind_before): the digest lists the
	// keys older than their difference. A max age of 0: no policy, and
	// no keys listed.
	RotationMaxAge, RotationRemindBefore time.Duration
	// Holder names this instance in the lease and the records. Required.
	Holder string
	// LeaseTTL is how long the lease outlives an instance that dies while
	// holding it. Default 30s.
	LeaseTTL time.Duration
	// Clock defaults to the wall clock.
	Clock   Clock
	Metrics *metrics.Registry
	Logger  *slog.Logger
}

// Notifier sends the webhook posts and the digest.
type Notifier struct {
	o        Options
	notices  *queue.Bucket[Notice]
	requests *queue.Bucket[keydesk.Request]
	count    *metrics.Counter
	log      *slog.Logger
}

// New checks o, fills in its defaults and returns a Notifier.
func New(o Options) (*Notifier, error) {
	var errs []error
	if o.Queue == nil {
		errs = append(errs, errors.New("notify: Queue is required"))
	}
	if o.Holder == "" {
		errs = append(errs, errors.New("notify: Holder is required"))
	}
	if o.Digest != nil && o.SupportAddress == "" {
		errs = append(errs, errors.New("notify: notify.digest needs smtp.support_address, where the digest goes"))
	}
	if o.Digest != nil && o.Templates == nil {
		errs = append(errs, errors.New("notify: Templates are required for the digest"))
	}
	if o.LeaseTTL != 0 && (o.LeaseTTL < time.Second || o.LeaseTTL > time.Hour) {
		errs = append(errs, fmt.Errorf("notify: LeaseTTL %s is out of range 1s..1h", o.LeaseTTL))
	}
	if len(o.RetryDelays) > 20 {
		errs = append(errs, fmt.Errorf("notify: %d retry delays: at most 20", len(o.RetryDelays)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout: 10 * time.Second,
			// A redirect is not followed: the webhook is where the token
			// was issued for, and nowhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.RetryDelays == nil {
		o.RetryDelays = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}
	}
	if o.MaxRetryAfter == 0 {
		o.MaxRetryAfter = 15 * time.Minute
	}
	if o.MaxAge == 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = keydesk.RealClock
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{
		o:        o,
		notices:  queue.NewBucket[Notice](o.Queue, queue.BucketThreads),
		requests: queue.NewBucket[keydesk.Request](o.Queue, queue.BucketRequests),
		count:    o.Metrics.Counter("keydesk_notifications_total", "Notifications to support, by channel (webhook, digest) and outcome.", "channel", "outcome"),
		log:      o.Logger.With("part", "notify"),
	}, nil
}

// Enabled reports whether there is anything to send.
func (n *Notifier) Enabled() bool { return !n.o.WebhookURL.IsZero() || n.o.Digest != nil }

// Run sends notifications until ctx ends, while this instance holds the
// notify lease; while another holds it, it stands by to take over.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.Enabled() {
		<-ctx.Done()
		return nil
	}
	err := n.o.Queue.Standby(ctx, LeaseName, n.o.Holder, n.o.LeaseTTL, n.run)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// run is the lease holder's work: the webhook and the digest side by
// side; the first to stop with an error stops the other.
func (n *Notifier) run(ctx context.Context) error {
	n.log.Info("notifications on", "webhook", !n.o.WebhookURL.IsZero(), "digest", n.o.Digest != nil, "holder", n.o.Holder)
	var loops []func(context.Context) error
	if !n.o.WebhookURL.IsZero() {
		loops = append(loops, n.webhookLoop)
	}
	if n.o.Digest != nil {
		loops = append(loops, n.digestLoop)
	}
	return group.Run(ctx, loops...)
}

// sleep waits d on the notifier's clock, or until ctx ends (false).
func (n *Notifier) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-n.o.Clock.After(d):
		return true
	}
}
