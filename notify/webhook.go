package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

const (
	// maxText bounds a post's text, in bytes: far under what Slack (40,000
	// characters), Mattermost (16,383) and Teams (about 28 KB) accept.
	maxText = 2000
	// maxValue bounds each value a partner chose (a label) in a post.
	maxValue = 80
	// rewatchDelay is the wait before watching the requests again after
	// the watch broke (the cluster lost its leader, say).
	rewatchDelay = 5 * time.Second
	// recordTimeout bounds each write of a record made after a post, on a
	// context of its own so that a shutdown does not leave a sent post
	// unrecorded.
	recordTimeout = 10 * time.Second
)

// Notice is the durable record of one post: one per request and reason,
// under "n.<request>.<reason>" in the threads bucket.
type Notice struct {
	RequestID string `json:"request_id"`
	// Reason is "new" (the request came in needing a person) or
	// "p-<digest of the proposal's ID>" (a proposed change sent it back).
	Reason string `json:"reason"`
	// Holder is the instance that last took the record.
	Holder  string    `json:"holder"`
	Claimed time.Time `json:"claimed"`
	Tries   int       `json:"tries"`
	// Posting is set before each post and cleared after its answer: a
	// record found posting was left by an instance that died during a
	// post, which may have arrived, so it is not posted again.
	Posting bool      `json:"posting,omitempty"`
	Sent    time.Time `json:"sent,omitzero"`
	// GaveUp says why no post was (or will be) made.
	GaveUp string `json:"gave_up,omitempty"`
}

// Reason is why request r needs a person now, and since when: "new", or
// a proposed change that sent it back to review.
func Reason(r *keydesk.Request) (reason string, since time.Time) {
	if p := r.Proposal; p != nil {
		sum := sha256.Sum256([]byte(p.ID))
		since = p.At
		if since.IsZero() {
			since = r.UpdatedAt
		}
		return "p-" + hex.EncodeToString(sum[:8]), since
	}
	return "new", r.CreatedAt
}

func noticeKey(requestID, reason string) string {
	return noticePrefix + requestID + "." + reason
}

// work is the set of requests to look at, in the order they came, each
// once however often it changed meanwhile.
type work struct {
	mu     sync.Mutex
	ids    []string
	queued map[string]bool
	ready  chan struct{}
}

func newWork() *work {
	return &work{queued: map[string]bool{}, ready: make(chan struct{}, 1)}
}

func (w *work) add(id string) {
	w.mu.Lock()
	if !w.queued[id] {
		w.queued[id] = true
		w.ids = append(w.ids, id)
	}
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

func (w *work) next() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ids) == 0 {
		return "", false
	}
	id := w.ids[0]
	w.ids = w.ids[1:]
	delete(w.queued, id)
	return id, true
}

// webhookLoop watches the requests: every one in pending_review (those
// there at the start, and each that arrives) is looked at by one worker,
// one after the other, so that posts keep their order and a channel that
// asks to slow down slows all of them.
func (n *Notifier) webhookLoop(ctx context.Context) error {
	w := newWork()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.ready:
			}
			for {
				id, ok := w.next()
				if !ok || ctx.Err() != nil {
					break
				}
				if err := n.consider(ctx, id); err != nil && ctx.Err() == nil {
					// Most likely the cluster could not answer: look again
					// later rather than wait for the request to change.
					n.log.Warn("notify: webhook: look at a request; trying again", "request", id, "err", err, "wait", rewatchDelay)
					if !n.sleep(ctx, rewatchDelay) {
						return
					}
					w.add(id)
				}
			}
		}
	})
	for {
		err := n.requests.Watch(ctx, "", func(e *queue.Entry[keydesk.Request]) error {
			if e != nil && e.Value != nil && e.Value.State == keydesk.StatePendingReview {
				w.add(e.Key)
			}
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		n.log.Warn("notify: watch of requests broke; watching again", "err", err, "wait", rewatchDelay)
		if !n.sleep(ctx, rewatchDelay) {
			return nil
		}
	}
}

// consider posts about request id if it waits for review for a reason not
// yet posted (or being posted) by anyone.
func (n *Notifier) consider(ctx context.Context, id string) error {
	r, err := n.o.Queue.Get(ctx, id)
	if errors.Is(err, keydesk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.State != keydesk.StatePendingReview {
		return nil // handled before its turn came
	}
	reason, since := Reason(r)
	key := noticeKey(r.ID, reason)
	log := n.log.With("request", r.ID, "reason", reason)
	rec, rev, err := n.notices.Get(ctx, key)
	switch {
	case errors.Is(err, keydesk.ErrNotFound):
		now := n.o.Clock.Now().UTC()
		if age := now.Sub(since); age > n.o.MaxAge {
			// Turned on with a backlog, or back after a long outage: the
			// digest lists these; the channel hears of new work only.
			log.Debug("notify: webhook: not posted, waiting longer than notify's max age", "age", age.Round(time.Second))
			return nil
		}
		rec = &Notice{RequestID: r.ID, Reason: reason, Holder: n.o.Holder, Claimed: now}
		rev, err = n.notices.Create(ctx, key, rec)
		if errors.Is(err, keydesk.ErrConflict) {
			return nil // another instance claimed it first
		}
		if err != nil {
			return fmt.Errorf("notify: claim %s: %w", key, err)
		}
	case err != nil:
		return fmt.Errorf("notify: read %s: %w", key, err)
	}
	switch {
	case !rec.Sent.IsZero() || rec.GaveUp != "":
		return nil
	case rec.Posting:
		rec.Posting, rec.GaveUp = false, "an instance stopped during a post: it may have arrived, so it is not sent again"
		if _, err := n.notices.Update(ctx, key, rec, rev); err != nil && !errors.Is(err, keydesk.ErrConflict) {
			return fmt.Errorf("notify: record %s: %w", key, err)
		}
		n.count.Inc("webhook", "uncertain")
		log.Warn("notify: webhook: a post was under way when its instance stopped; not sending it again")
		return nil
	}
	return n.post(ctx, log, key, rec, rev, Text(r, n.o.BaseURL, n.o.Clock.Now()))
}

// post makes the tries of one record's post: each is recorded as under
// way before it is made and answered after.
func (n *Notifier) post(ctx context.Context, log *slog.Logger, key string, rec *Notice, rev uint64, text string) error {
	body, err := Body(text)
	if err != nil {
		return err
	}
	// The records after a post are written even when ctx ends meanwhile:
	// a post that left must be marked, or it would be "uncertain".
	after := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	}
	for {
		rec.Posting, rec.Holder = true, n.o.Holder
		rec.Tries++
		rev, err = n.notices.Update(ctx, key, rec, rev)
		if errors.Is(err, keydesk.ErrConflict) {
			return nil // another instance took it over
		}
		if err != nil {
			return fmt.Errorf("notify: record %s: %w", key, err)
		}
		pctx, cancel := after()
		res := n.send(pctx, body)
		cancel()
		rec.Posting = false
		final := ""
		switch {
		case res.ok:
			rec.Sent = n.o.Clock.Now().UTC()
		case !res.temporary:
			final = "refused: " + res.what
		case rec.Tries > len(n.o.RetryDelays):
			final = fmt.Sprintf("gave up after %d tries: %s", rec.Tries, res.what)
		}
		rec.GaveUp = final
		wctx, cancel := after()
		rev, err = n.notices.Update(wctx, key, rec, rev)
		cancel()
		if err != nil {
			return fmt.Errorf("notify: record %s after the post: %w", key, err)
		}
		switch {
		case res.ok:
			n.count.Inc("webhook", "sent")
			log.Info("notify: webhook posted", "tries", rec.Tries)
			return nil
		case final != "":
			n.count.Inc("webhook", "failed")
			log.Error("notify: webhook post failed; support learns of the request from the digest and the queue", "tries", rec.Tries, "err", final)
			return nil
		}
		wait := n.o.RetryDelays[rec.Tries-1]
		if res.retryAfter > wait {
			wait = min(res.retryAfter, n.o.MaxRetryAfter)
		}
		n.count.Inc("webhook", "retried")
		log.Warn("notify: webhook post failed; trying again", "tries", rec.Tries, "err", res.what, "wait", wait)
		if !n.sleep(ctx, wait) {
			return nil
		}
	}
}

// result is one post's answer.
type result struct {
	ok, temporary bool
	// what says what went wrong, without the URL.
	what       string
	retryAfter time.Duration
}

// send makes one post. Its errors never hold the URL: an *url.Error
// quotes it whole, token and all.
func (n *Notifier) send(ctx context.Context, body []byte) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.o.WebhookURL.Reveal(), bytes.NewReader(body))
	if err != nil {
		return result{what: "the webhook URL cannot be used (see notify.webhook_url)"}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.o.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return result{temporary: true, what: "no answer: " + err.Error()}
	}
	// Drain a little so the connection can be reused; the body is the
	// chat service's, never logged.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	c := resp.StatusCode
	switch {
	case c >= 200 && c < 300:
		return result{ok: true}
	case c == http.StatusTooManyRequests || c >= 500 || c == http.StatusRequestTimeout:
		return result{temporary: true, what: resp.Status, retryAfter: retryAfter(resp.Header.Get("Retry-After"), n.o.Clock.Now())}
	}
	return result{what: resp.Status + " (check notify.webhook_url: the webhook may have been removed)"}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Body is the JSON a webhook gets: {"text": ...}, which Slack and
// Mattermost incoming webhooks and Teams' Office 365 connector all accept
// as a message (docs/operations.md, "Notifications").
func Body(text string) ([]byte, error) {
	b, err := json.Marshal(struct {
		Text string `json:"text"`
	}{text})
	if err != nil {
		return nil, fmt.Errorf("notify: encode post: %w", err)
	}
	return b, nil
}

// Text is what a post says of request r at now: its ID, why it needs a
// person, the partner, environment, label, flags, how long it has waited,
// and a link to its page when baseURL is set. Never a secret: a request
// holds none. At most maxText bytes.
func Text(r *keydesk.Request, baseURL string, now time.Time) string {
	_, since := Reason(r)
	var b strings.Builder
	if r.Proposal != nil {
		var fields []string
		for _, c := range r.Proposal.Diff(r) {
			fields = append(fields, c.Field)
		}
		what := "a proposed change"
		if len(fields) > 0 {
			what += " (" + strings.Join(fields, ", ") + ")"
		}
		fmt.Fprintf(&b, "%s needs review: %s from the partner\n", inert(r.ID), what)
	} else {
		fmt.Fprintf(&b, "%s needs review: a new %s request\n", inert(r.ID), inert(string(r.KindOf())))
	}
	partner := "unknown sender"
	if r.Partner != "" {
		partner = code(r.Partner)
	}
	env := "not stated"
	if r.Environment != "" {
		env = inert(string(r.Environment))
	}
	label := "none"
	if r.Label != "" {
		label = code(r.Label)
	}
	fmt.Fprintf(&b, "Partner: %s | Environment: %s | Label: %s\n", partner, env, label)
	if len(r.Flags) > 0 {
		fl := make([]string, len(r.Flags))
		for i, f := range r.Flags {
			fl[i] = inert(string(f))
		}
		fmt.Fprintf(&b, "Flags: %s\n", strings.Join(fl, ", "))
	}
	fmt.Fprintf(&b, "Waiting: %s\n", Age(now.Sub(since)))
	if baseURL != "" {
		b.WriteString(strings.TrimRight(baseURL, "/") + "/requests/" + url.PathEscape(r.ID) + "\n")
	}
	return truncate(strings.TrimRight(b.String(), "\n"), maxText)
}

// look-alikes replace what chat services read as markup or mentions in a
// value a partner chose: <, > and & (Slack's controls, <!channel>), the
// backtick (it would end the code span), @ (Mattermost and Teams
// mentions).
var lookAlike = strings.NewReplacer("<", "\u2039", ">", "\u203a", "&", "\uff06", "`", "'", "@", "\uff20")

// inert is v on one line, sanitised (keydesk.SafeLine) and bounded, with
// markup and mentions replaced by look-alikes.
func inert(v string) string {
	return lookAlike.Replace(keydesk.SafeLine(v, maxValue))
}

// code is inert(v) in a code span, where the chat services show markup
// (*, _, ~, links) as it is.
func code(v string) string { return "`" + inert(v) + "`" }

// truncate cuts s to at most max bytes at a rune boundary, ending in "…".
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Age is a wait as people say it: 45s, 12m, 3h 5m, 2d 4h.
func Age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(max(int(d/time.Second), 0)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return fmt.Sprintf("%dh %dm", h, m)
	}
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if h == 0 {
		return strconv.Itoa(days) + "d"
	}
	return fmt.Sprintf("%dd %dh", days, h)
}
