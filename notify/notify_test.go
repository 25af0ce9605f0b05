package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/notify"
	"github.com/buildmarkets/keydesk/queue"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/templates"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const (
	supportAddr = "support@buildmarkets.ai"
	baseURL     = "https://keydesk.buildmarkets.ai"
	wait        = 30 * time.Second
)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n%s\nwant\n%s", name, got, want)
	}
}

// hook is a chat service's incoming webhook: it keeps every post and
// answers each with the next of its statuses (200 once they run out).
type hook struct {
	srv *httptest.Server
	mu  sync.Mutex
	// posts are the texts of the posts answered 2xx; tries every post.
	posts, tries []string
	statuses     []int
}

func startHook(t *testing.T, statuses ...int) *hook {
	h := &hook{statuses: statuses}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Text string `json:"text"`
		}
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/hooks/T0KEN" || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &body) != nil || body.Text == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		status := http.StatusOK
		if len(h.statuses) > 0 {
			status, h.statuses = h.statuses[0], h.statuses[1:]
		}
		h.tries = append(h.tries, body.Text)
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "120")
		}
		if status < 300 {
			h.posts = append(h.posts, body.Text)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) url() string { return h.srv.URL + "/hooks/T0KEN" }

// count is how many posts answered 2xx are about request id for reason
// ("new request" or "proposed change").
func (h *hook) count(id, reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, p := range h.posts {
		if strings.HasPrefix(p, id+" needs review: ") && strings.Contains(strings.SplitN(p, "\n", 2)[0], reason) {
			n++
		}
	}
	return n
}

func (h *hook) total() (posts, tries int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.posts), len(h.tries)
}

// newRequest is a request from acme's email number i, in state st.
func newRequest(i int, st keydesk.State) *keydesk.Request {
	return &keydesk.Request{
		State: st, Partner: "acme", Environment: keydesk.Production, Scopes: []keydesk.Scope{"accounts:read"},
		Label: "bot " + string(rune('a'+i)), Flags: []keydesk.Flag{keydesk.FlagProduction}, Requester: "cto@acme.example",
		SourceDate: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC), SourceKey: "src-" + string(rune('a'+i)), Subject: "key please",
	}
}

func create(t *testing.T, q *queue.Conn, i int, st keydesk.State) *keydesk.Request {
	t.Helper()
	r, _, err := q.Create(context.Background(), newRequest(i, st), "intake")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// running is a notifier run as the review role runs it, until stop.
type running struct {
	n       *notify.Notifier
	metrics *metrics.Registry
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	<-r.done
	if r.err != nil {
		t.Errorf("notifier stopped with %v", r.err)
	}
}

func options(q *queue.Conn, holder string) notify.Options {
	return notify.Options{
		Queue: q, Holder: holder, LeaseTTL: 3 * time.Second, BaseURL: baseURL, SupportAddress: supportAddr,
		Templates: templates.MustLoadEmbedded(), RetryDelays: []time.Duration{time.Millisecond, time.Millisecond},
		Metrics: metrics.New(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func start(t *testing.T, o notify.Options) *running {
	t.Helper()
	n, err := notify.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, metrics: o.Metrics, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = n.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// propose sends request id back to review with a proposed change, as
// intake does when the partner corrects it.
func propose(t *testing.T, q *queue.Conn, id, proposalID string) {
	t.Helper()
	_, err := q.Apply(context.Background(), id, queue.Change{Actor: "intake", Action: "propose", To: keydesk.StatePendingReview,
		Mutate: func(r *keydesk.Request) error {
			r.Proposal = &keydesk.Proposal{ID: proposalID, From: "cto@acme.example", At: time.Now().UTC(),
				Environment: r.Environment, Scopes: []keydesk.Scope{"marketdata:read"}, Label: r.Label}
			r.Approvals = nil
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWebhookOncePerRequestAcrossRestart: each request that enters
// pending_review (new, or sent back by a proposed change) is posted once;
// after keydesk stops and starts again on the same store, none is posted
// again, and new work still is.
func TestWebhookOncePerRequestAcrossRestart(t *testing.T) {
	h := startHook(t)
	dir := t.TempDir()
	q := queuetest.OpenDir(t, dir)
	a := create(t, q, 0, keydesk.StatePendingReview)
	b := create(t, q, 1, keydesk.StatePendingReview)
	c := create(t, q, 2, keydesk.StateApproved) // needs nobody: never posted

	o := options(q, "keydesk-1")
	o.WebhookURL = keydesk.SecretString(h.url())
	run := start(t, o)
	testenv.Eventually(t, wait, "a post for each new request", func() bool {
		return h.count(a.ID, "new") == 1 && h.count(b.ID, "new") == 1
	})
	// The partner corrects c: it goes back to review, and support hears.
	propose(t, q, c.ID, "prop-c1")
	testenv.Eventually(t, wait, "a post for the proposed change", func() bool { return h.count(c.ID, "proposed change") == 1 })
	// The post is counted once its record says sent, just after it.
	sent := run.metrics.Counter("keydesk_notifications_total", "", "channel", "outcome")
	testenv.Eventually(t, wait, "keydesk_notifications_total{webhook,sent} 3", func() bool { return sent.Value("webhook", "sent") == 3 })
	run.stop(t)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	// keydesk starts again on the same store.
	q = queuetest.OpenDir(t, dir)
	o = options(q, "keydesk-1")
	o.WebhookURL = keydesk.SecretString(h.url())
	start(t, o)
	d := create(t, q, 3, keydesk.StatePendingReview)
	// The worker looks at the requests in the order the watch shows them:
	// once d is posted, a, b and c have been looked at again.
	testenv.Eventually(t, wait, "a post for the request made after the restart", func() bool { return h.count(d.ID, "new") == 1 })
	for _, id := range []string{a.ID, b.ID} {
		if n := h.count(id, "new"); n != 1 {
			t.Errorf("%s posted %d times, want once", id, n)
		}
	}
	if n := h.count(c.ID, "proposed change"); n != 1 {
		t.Errorf("%s's proposed change posted %d times, want once", c.ID, n)
	}
	if posts, tries := h.total(); posts != 4 || tries != 4 {
		t.Errorf("%d posts in %d tries, want 4 in 4", posts, tries)
	}
}

// TestWebhookRetries: a post answered 500 is tried again and counted
// once; a 429 waits as long as its Retry-After asks; a 404 (the webhook
// was removed) is not retried; a post that may have left when its
// instance died is not sent again.
func TestWebhookRetries(t *testing.T) {
	t.Run("500 then 200", func(t *testing.T) {
		h := startHook(t, http.StatusInternalServerError)
		q := queuetest.Open(t)
		a := create(t, q, 0, keydesk.StatePendingReview)
		o := options(q, "keydesk-1")
		o.WebhookURL = keydesk.SecretString(h.url())
		run := start(t, o)
		testenv.Eventually(t, wait, "the post", func() bool { return h.count(a.ID, "new") == 1 })
		if posts, tries := h.total(); posts != 1 || tries != 2 {
			t.Errorf("%d posts in %d tries, want 1 in 2", posts, tries)
		}
		c := run.metrics.Counter("keydesk_notifications_total", "", "channel", "outcome")
		testenv.Eventually(t, wait, "the post counted sent", func() bool { return c.Value("webhook", "sent") == 1 })
		if c.Value("webhook", "retried") != 1 {
			t.Errorf("retried %v, want 1", c.Value("webhook", "retried"))
		}
	})
	t.Run("429 honours Retry-After", func(t *testing.T) {
		h := startHook(t, http.StatusTooManyRequests)
		q := queuetest.Open(t)
		a := create(t, q, 0, keydesk.StatePendingReview)
		clock := &recordingClock{}
		o := options(q, "keydesk-1")
		o.WebhookURL = keydesk.SecretString(h.url())
		o.Clock = clock
		start(t, o)
		testenv.Eventually(t, wait, "the post", func() bool { return h.count(a.ID, "new") == 1 })
		if !clock.waited(120 * time.Second) {
			t.Errorf("waits %v, want one of 2m (Retry-After: 120)", clock.waits())
		}
	})
	t.Run("404 gives up at once", func(t *testing.T) {
		h := startHook(t, http.StatusNotFound, http.StatusNotFound)
		q := queuetest.Open(t)
		create(t, q, 0, keydesk.StatePendingReview)
		o := options(q, "keydesk-1")
		o.WebhookURL = keydesk.SecretString(h.url())
		run := start(t, o)
		c := run.metrics.Counter("keydesk_notifications_total", "", "channel", "outcome")
		testenv.Eventually(t, wait, "the failure counted", func() bool { return c.Value("webhook", "failed") == 1 })
		if _, tries := h.total(); tries != 1 {
			t.Errorf("%d tries, want 1", tries)
		}
	})
	t.Run("no answer: retried, then given up, the URL never logged", func(t *testing.T) {
		h := startHook(t)
		h.srv.Close() // nothing listens there any more
		q := queuetest.Open(t)
		create(t, q, 0, keydesk.StatePendingReview)
		logs := &testenv.Buffer{}
		o := options(q, "keydesk-1")
		o.WebhookURL = keydesk.SecretString(h.url())
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		run := start(t, o)
		c := run.metrics.Counter("keydesk_notifications_total", "", "channel", "outcome")
		testenv.Eventually(t, wait, "the failure counted", func() bool { return c.Value("webhook", "failed") == 1 })
		if got := c.Value("webhook", "retried"); got != 2 {
			t.Errorf("retried %v times, want 2 (one per retry delay)", got)
		}
		if strings.Contains(logs.String(), "T0KEN") || strings.Contains(logs.String(), "/hooks/") {
			t.Errorf("the log holds the webhook URL:\n%s", logs.String())
		}
		if !strings.Contains(logs.String(), "connection refused") {
			t.Errorf("the log does not say why:\n%s", logs.String())
		}
	})
	t.Run("a post under way at a crash is not sent again", func(t *testing.T) {
		h := startHook(t)
		q := queuetest.Open(t)
		a := create(t, q, 0, keydesk.StatePendingReview)
		reason, _ := notify.Reason(a)
		if _, err := queue.NewBucket[notify.Notice](q, queue.BucketThreads).Create(context.Background(), "n."+a.ID+"."+reason,
			&notify.Notice{RequestID: a.ID, Reason: reason, Holder: "keydesk-0", Tries: 1, Posting: true}); err != nil {
			t.Fatal(err)
		}
		o := options(q, "keydesk-1")
		o.WebhookURL = keydesk.SecretString(h.url())
		run := start(t, o)
		b := create(t, q, 1, keydesk.StatePendingReview)
		testenv.Eventually(t, wait, "the post of the next request", func() bool { return h.count(b.ID, "new") == 1 })
		if n := h.count(a.ID, "new"); n != 0 {
			t.Errorf("%s posted %d times after a crash during its post, want 0", a.ID, n)
		}
		if got := run.metrics.Counter("keydesk_notifications_total", "", "channel", "outcome").Value("webhook", "uncertain"); got != 1 {
			t.Errorf("uncertain = %v, want 1", got)
		}
	})
}

// TestTwoNotifiersSendOnce: two instances running at once post each
// request once.
func TestTwoNotifiersSendOnce(t *testing.T) {
	h := startHook(t)
	q := queuetest.Open(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, create(t, q, i, keydesk.StatePendingReview).ID)
	}
	for _, holder := range []string{"keydesk-1", "keydesk-2"} {
		o := options(q, holder)
		o.WebhookURL = keydesk.SecretString(h.url())
		start(t, o)
	}
	ids = append(ids, create(t, q, 5, keydesk.StatePendingReview).ID)
	testenv.Eventually(t, wait, "a post for each request", func() bool {
		for _, id := range ids {
			if h.count(id, "new") == 0 {
				return false
			}
		}
		return true
	})
	// A barrier: a request made now is posted after every earlier one
	// was looked at by whichever instance holds the lease.
	last := create(t, q, 6, keydesk.StatePendingReview)
	testenv.Eventually(t, wait, "the last post", func() bool { return h.count(last.ID, "new") == 1 })
	for _, id := range ids {
		if n := h.count(id, "new"); n != 1 {
			t.Errorf("%s posted %d times, want once", id, n)
		}
	}
}

// TestPostShape: the post is {"text": "..."} and nothing else — what
// Slack and Mattermost incoming webhooks and Teams' Office 365 connector
// take as a message — naming the request, partner, environment, label,
// flags, age and link; what the partner chose is inert: no mention, no
// markup, no control character, bounded.
func TestPostShape(t *testing.T) {
	now := time.Date(2026, 11, 30, 11, 5, 0, 0, time.UTC)
	r := &keydesk.Request{
		ID: "KR-20261130-7QX4", State: keydesk.StatePendingReview, Partner: "acme", Environment: keydesk.Production,
		Scopes: []keydesk.Scope{"trading:write"}, Label: "@channel <!here> *bold* `x` \u202eevil\x1b[31m",
		Flags:     []keydesk.Flag{keydesk.FlagProduction, keydesk.FlagProposedChange},
		CreatedAt: now.Add(-26 * time.Hour),
		Proposal:  &keydesk.Proposal{ID: "p1", At: now.Add(-3*time.Hour - 20*time.Minute), Environment: keydesk.Production, Scopes: []keydesk.Scope{"trading:read"}, Label: "@channel <!here> *bold* `x` \u202eevil\x1b[31m"},
	}
	body, err := notify.Body(notify.Text(r, baseURL+"/", now))
	if err != nil {
		t.Fatal(err)
	}
	var shape map[string]any
	if err := json.Unmarshal(body, &shape); err != nil {
		t.Fatal(err)
	}
	if len(shape) != 1 {
		t.Errorf("post has keys %v, want text alone", shape)
	}
	text, ok := shape["text"].(string)
	if !ok || text == "" {
		t.Fatalf("text is %T %v, want a string", shape["text"], shape["text"])
	}
	for _, bad := range []string{"@channel", "<!here>", "\u202e", "\x1b", "`x`"} {
		if strings.Contains(text, bad) {
			t.Errorf("the post holds %q:\n%s", bad, text)
		}
	}
	for _, want := range []string{"KR-20261130-7QX4", "acme", "production", "proposed change (scopes)", "Waiting: 3h 20m", baseURL + "/requests/KR-20261130-7QX4"} {
		if !strings.Contains(text, want) {
			t.Errorf("the post lacks %q:\n%s", want, text)
		}
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden(t, "webhook.golden", pretty.Bytes())

	long := *r
	long.Proposal = nil
	long.Label = strings.Repeat("x", 10000)
	long.Flags = nil
	for range 500 {
		long.Flags = append(long.Flags, keydesk.FlagDuplicate)
	}
	if b, _ := notify.Body(notify.Text(&long, baseURL, now)); len(b) > 2100 {
		t.Errorf("a post of a request with a huge label and flags is %d bytes", len(b))
	}
}

// recordingClock is the wall clock for Now; its After fires at once and
// keeps the wait asked for.
type recordingClock struct {
	mu sync.Mutex
	d  []time.Duration
}

func (c *recordingClock) Now() time.Time { return time.Now() }
func (c *recordingClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.d = append(c.d, d)
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}
func (c *recordingClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.d...)
}
func (c *recordingClock) waited(d time.Duration) bool {
	for _, w := range c.waits() {
		if w == d {
			return true
		}
	}
	return false
}
