package notify

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/queue"
)

const (
	// maxDigestLines bounds the requests a digest lists; the rest are
	// counted ("and N more").
	maxDigestLines = 50
	// maxScheduleWait bounds one wait for the digest's time, so that a
	// wall clock that jumps (a suspended VM, an NTP step) is noticed.
	maxScheduleWait = time.Minute
)

// waiting are the states a digest lists: those where a request waits for
// a person.
var waiting = []keydesk.State{keydesk.StatePendingReview, keydesk.StateBlocked, keydesk.StateDeliveryFailed}

// DigestItem is one request in the digest.
type DigestItem struct {
	ID, State, Partner, Environment, Label string
	// LongLabel: the label goes on a line of its own.
	LongLabel bool
	// Flags are the flags, wrapped to lines that fit the 72 columns.
	Flags []string
	// Since is when it started to wait; Age how long ago that was.
	Since time.Time
	Age   string
	// Proposed lists the fields a proposed change would change, if one
	// waits.
	Proposed string
	// Problem says why it is blocked or undelivered.
	Problem string
	Link    string
}

// DigestData is what mail/digest.tmpl gets.
type DigestData struct {
	At time.Time
	// Items are the oldest waits first, at most maxDigestLines of them;
	// More is how many were left out.
	Items []DigestItem
	More  int
	// Total counts every request that waits; the rest count them by what
	// they wait for.
	Total, PendingReview, Proposed, Blocked, DeliveryFailed int
	Oldest                                                  string
	// QueueLink is the review queue's address, when review.base_url is set.
	QueueLink string
	// DueKeys are the keys the rotation policy calls to rotate, the
	// oldest first, at most maxDigestLines of them; DueMore is how many
	// were left out, DueTotal how many there are; MaxAge is the policy.
	DueKeys           []DueKey
	DueMore, DueTotal int
	MaxAge            string
}

// DueKey is one key due for rotation in the digest.
type DueKey struct {
	Partner, Environment, KeyID, Label string
	AgeDays                            int
	MadeBy                             string
	// Link is the partner's page, when review.base_url is set.
	Link string
}

// RotationDue lists the keys of invs that the rotation policy calls to
// rotate at now (keydesk.InventoryKey.RotationDue), the oldest first, as
// the digest shows them.
func RotationDue(invs []*keydesk.Inventory, maxAge, remindBefore time.Duration, baseURL string, now time.Time) []DueKey {
	base := strings.TrimRight(baseURL, "/")
	var out []DueKey
	for _, inv := range invs {
		for i := range inv.Keys {
			k := &inv.Keys[i]
			if !k.RotationDue(now, maxAge, remindBefore) {
				continue
			}
			d := DueKey{
				Partner: keydesk.SafeLine(inv.Partner, 40), Environment: string(inv.Environment), KeyID: keydesk.SafeLine(k.ID, 40),
				Label: keydesk.SafeLine(k.Label, 60), AgeDays: k.AgeDays(now), MadeBy: string(k.MadeBy),
			}
			if k.RequestID != "" {
				d.MadeBy += " (" + keydesk.SafeLine(k.RequestID, 20) + ")"
			}
			if base != "" {
				d.Link = base + "/partners/" + url.PathEscape(inv.Partner)
			}
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(a, b DueKey) int {
		if a.AgeDays != b.AgeDays {
			return b.AgeDays - a.AgeDays
		}
		return strings.Compare(a.Partner+"/"+a.Environment+"/"+a.KeyID, b.Partner+"/"+b.Environment+"/"+b.KeyID)
	})
	return out
}

// WithDueKeys adds the keys due for rotation to the digest d.
func (d *DigestData) WithDueKeys(keys []DueKey, maxAge time.Duration) {
	d.DueTotal = len(keys)
	d.MaxAge = strconv.Itoa(int(maxAge/(24*time.Hour))) + " days"
	if len(keys) > maxDigestLines {
		d.DueMore = len(keys) - maxDigestLines
		keys = keys[:maxDigestLines]
	}
	d.DueKeys = keys
}

// DigestID is the outbox ID of the digest due at tick: the same for every
// instance and every restart, so the outbox and delivery send it once.
func DigestID(tick time.Time) string {
	return "digest." + tick.UTC().Format("20060102T150405Z")
}

// digestLoop sends a digest at every time of the schedule until ctx ends.
// A time missed while no instance held the lease is not made up for: the
// next digest lists the same work.
func (n *Notifier) digestLoop(ctx context.Context) error {
	for {
		next := n.o.Digest.Next(n.o.Clock.Now())
		if next.IsZero() {
			n.log.Warn("notify: the digest schedule has no next time; no more digests")
			<-ctx.Done()
			return nil
		}
		for {
			left := next.Sub(n.o.Clock.Now())
			if left <= 0 {
				break
			}
			if !n.sleep(ctx, min(left, maxScheduleWait)) {
				return nil
			}
		}
		if err := n.SendDigest(ctx, next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			n.count.Inc("digest", "failed")
			n.log.Error("notify: digest not sent", "due", next, "err", err)
		}
	}
}

// SendDigest queues the digest due at tick to the support address: every
// request that waits for a person, oldest first. When nothing waits, it
// sends nothing.
func (n *Notifier) SendDigest(ctx context.Context, tick time.Time) error {
	reqs, err := n.o.Queue.List(ctx, queue.Filter{States: waiting})
	if err != nil {
		return fmt.Errorf("notify: digest: %w", err)
	}
	var due []DueKey
	if n.o.RotationMaxAge > 0 {
		invs, err := n.o.Queue.Inventories(ctx)
		if err != nil {
			// The requests that wait matter more than a late reminder:
			// the digest goes with the keys that could be read.
			n.log.Warn("notify: digest: key inventory", "err", err)
		}
		due = RotationDue(invs, n.o.RotationMaxAge, n.o.RotationRemindBefore, n.o.BaseURL, tick)
	}
	if len(reqs) == 0 && len(due) == 0 {
		n.count.Inc("digest", "empty")
		n.log.Info("notify: nothing waits: no digest", "due", tick)
		return nil
	}
	d := Digest(reqs, n.o.BaseURL, tick)
	if n.o.RotationMaxAge > 0 {
		d.WithDueKeys(due, n.o.RotationMaxAge)
	}
	m, err := n.o.Templates.RenderMail("digest", d)
	if err != nil {
		return err
	}
	id := DigestID(tick)
	if err := n.o.Queue.Enqueue(ctx, &keydesk.Outgoing{
		ID: id, Kind: keydesk.KindDigest, To: []string{n.o.SupportAddress}, Subject: m.Subject, Text: m.Body,
	}); err != nil {
		return err
	}
	n.count.Inc("digest", "sent")
	n.log.Info("notify: digest queued", "outbox_id", id, "waiting", d.Total, "keys_due", d.DueTotal)
	return nil
}

// Digest builds the digest of reqs at now.
func Digest(reqs []*keydesk.Request, baseURL string, now time.Time) DigestData {
	d := DigestData{At: now, Total: len(reqs)}
	base := strings.TrimRight(baseURL, "/")
	if base != "" {
		d.QueueLink = base + "/queue"
	}
	items := make([]DigestItem, 0, len(reqs))
	for _, r := range reqs {
		switch r.State {
		case keydesk.StatePendingReview:
			d.PendingReview++
			if r.Proposal != nil {
				d.Proposed++
			}
		case keydesk.StateBlocked:
			d.Blocked++
		case keydesk.StateDeliveryFailed:
			d.DeliveryFailed++
		}
		since := waitingSince(r)
		it := DigestItem{
			ID: keydesk.SafeLine(r.ID, 40), State: string(r.State), Partner: keydesk.SafeLine(r.Partner, 40),
			Environment: string(r.Environment), Label: keydesk.SafeLine(r.Label, keydesk.MaxLabelLength),
			Since: since, Age: Age(now.Sub(since)), Problem: keydesk.SafeLine(r.Problem, 66),
		}
		if it.Partner == "" {
			it.Partner = "unknown sender"
		}
		if it.Environment == "" {
			it.Environment = "environment not stated"
		}
		it.LongLabel = utf8.RuneCountInString(it.Label) > 60
		var fl []string
		for _, f := range r.Flags {
			fl = append(fl, keydesk.SafeLine(string(f), 40))
		}
		it.Flags = wrapList(fl, 62)
		if r.Proposal != nil && r.State == keydesk.StatePendingReview {
			var fields []string
			for _, c := range r.Proposal.Diff(r) {
				fields = append(fields, c.Field)
			}
			it.Proposed = strings.Join(fields, ", ")
			if it.Proposed == "" {
				it.Proposed = "no field differs"
			}
		}
		if base != "" {
			it.Link = base + "/requests/" + r.ID
		}
		items = append(items, it)
	}
	slices.SortStableFunc(items, func(a, b DigestItem) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(items) > 0 {
		d.Oldest = items[0].Age
	}
	if len(items) > maxDigestLines {
		d.More = len(items) - maxDigestLines
		items = items[:maxDigestLines]
	}
	d.Items = items
	return d
}

// waitingSince is when r started to wait for a person: for review, when
// it came in or when its proposed change did; otherwise when it entered
// its state, if its last event says so, or its last change.
func waitingSince(r *keydesk.Request) time.Time {
	if r.State == keydesk.StatePendingReview {
		_, since := Reason(r)
		return since
	}
	if e := r.LastEvent; e != nil && e.To == r.State && e.From != r.State && !e.At.IsZero() {
		return e.At
	}
	return r.UpdatedAt
}

// wrapList joins items with ", " into lines of at most width bytes (an
// item longer than width has a line of its own).
func wrapList(items []string, width int) []string {
	var lines []string
	cur := ""
	for i, it := range items {
		if i < len(items)-1 {
			it += ","
		}
		switch {
		case cur == "":
			cur = it
		case len(cur)+1+len(it) <= width:
			cur += " " + it
		default:
			lines = append(lines, cur)
			cur = it
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}
