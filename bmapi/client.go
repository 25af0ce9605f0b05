// Package bmapi is the client of the Buildmarkets keys API: create, list
// and revoke API keys of one partner account (POST/GET /v1/keys, DELETE
// /v1/keys/{id}), authenticated by the partner's keys:manage key.
//
// Invariants it keeps:
//   - A created key's secret goes from the response body straight into a
//     keydesk.Secret; the body is wiped, and no error, log line or metric
//     ever holds a secret (error bodies are scrubbed and cut short).
//   - POST is sent at most once per call: the API names no idempotency key,
//     so a retried POST could create a second live key. A POST whose outcome
//     is unknown is reported as such (Unclear) for the caller to reconcile
//     by listing keys. GET and DELETE are safe to repeat and are retried with
//     backoff and jitter, honouring Retry-After and ctx.
//   - Redirects are never followed: they would carry the credentials to
//     another address.
//   - Every response is size-bounded, and the decoders tolerate unknown
//     fields and envelope shapes, since the API publishes no schema.
//
// Every failure is an *Error whose Kind is a sentinel for errors.Is
// (ErrUnauthorized, ErrForbidden, ErrRateLimited, ErrServer, ErrTransport,
// ErrBadRequest, ErrProtocol); keydesk.Temporary tells a retry-later failure
// from one a person must fix.
package bmapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/buildmarkets/keydesk"
)

// Options configure a Client. BaseURL, APIKey and APISecret are required.
type Options struct {
	// BaseURL of the environment, e.g. https://dev-tapp-api.tappengine.com;
	// paths /v1/... are added to it (a path prefix in BaseURL is kept).
	BaseURL string
	// APIKey is the partner's keys:manage key for this environment.
	APIKey string
	// APISecret is that key's secret.
	APISecret keydesk.Secret
	// Timeout bounds each HTTP exchange (one try); ctx bounds the whole
	// call, retries included. Default 30s.
	Timeout time.Duration
	// Limiter is shared by every client of one environment, so that all
	// partners together stay under the API's rate; each try waits for it.
	// Nil means unlimited.
	Limiter *rate.Limiter
	// HTTPClient to send with; its CheckRedirect is replaced so that no
	// redirect is followed. Default: a client with its own transport.
	HTTPClient *http.Client
	// Logger receives a debug line per try and a warning per retry; never
	// a secret. Default: discard.
	Logger *slog.Logger
	// Observe, if set, is called after each try with the method, the HTTP
	// status (0 when no answer came) and the try's duration: a metrics hook.
	Observe func(method string, status int, d time.Duration)

	// MaxAttempts bounds the tries of a GET or DELETE (a POST gets one).
	// Default 4.
	MaxAttempts int
	// RetryBase is the first backoff between tries; it doubles each try,
	// with jitter, up to 10 times the base. Default 250ms.
	RetryBase time.Duration
	// MaxRetryWait is the longest wait before a retry, a Retry-After
	// included: when the API asks for more, or ctx would expire first, the
	// call fails with the error (and its RetryAfter) at once, for the
	// caller to schedule. Default 30s.
	MaxRetryWait time.Duration
}

// Client calls the keys API for one partner account in one environment.
// It is safe for concurrent use.
type Client struct {
	o       Options
	base    *url.URL
	baseErr error
	hc      *http.Client
	log     *slog.Logger
}

// Response size limits: a hostile or broken server cannot exhaust memory.
const (
	maxCreateBody = 1 << 20
	maxListBody   = 32 << 20
	maxErrorRead  = 64 << 10
)

// New returns a client. An invalid BaseURL makes every call fail with
// ErrBadRequest saying so.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 4
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 250 * time.Millisecond
	}
	if o.MaxRetryWait <= 0 {
		o.MaxRetryWait = 30 * time.Second
	}
	c := &Client{o: o, log: o.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var hc http.Client
	if o.HTTPClient != nil {
		hc = *o.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		t.ResponseHeaderTimeout = o.Timeout
		hc.Transport = t
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	c.base, c.baseErr = parseBase(o.BaseURL)
	return c
}

func parseBase(s string) (*url.URL, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("the API base URL is empty: set api.<environment>.base_url")
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("the API base URL %q is invalid: %v", s, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("the API base URL %q must be an http(s) URL with a host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("the API base URL %q must hold no user, query or fragment", u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// CreateKey creates a key with the label and scopes, and returns it with
// its secret. It sends the POST once and never retries it: on an error for
// which Unclear(err) holds, the key may exist, and the caller must list the
// keys and reconcile rather than call CreateKey again.
func (c *Client) CreateKey(ctx context.Context, label string, scopes []keydesk.Scope) (*keydesk.CreatedKey, error) {
	const path = "/v1/keys"
	if strings.TrimSpace(label) == "" || len(scopes) == 0 {
		return nil, &Error{Kind: ErrBadRequest, Method: http.MethodPost, Path: path, Err: errors.New("a key needs a label and at least one scope")}
	}
	req := struct {
		Label  string          `json:"label"`
		Scopes []keydesk.Scope `json:"scopes"`
	}{label, scopes}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, &Error{Kind: ErrBadRequest, Method: http.MethodPost, Path: path, Err: err}
	}
	status, resp, err := c.do(ctx, http.MethodPost, path, body, maxCreateBody)
	if err != nil {
		return nil, err
	}
	defer clear(resp) // it holds the secret
	k, err := decodeCreated(resp)
	if err != nil {
		// The API said yes, so the key very likely exists: unclear.
		return nil, &Error{Kind: ErrProtocol, Method: http.MethodPost, Path: path, Status: status, Err: err, sent: true}
	}
	return k, nil
}

// ListKeys returns every key of the account, never a secret.
func (c *Client) ListKeys(ctx context.Context) ([]keydesk.Key, error) {
	const path = "/v1/keys"
	status, resp, err := c.do(ctx, http.MethodGet, path, nil, maxListBody)
	if err != nil {
		return nil, err
	}
	defer clear(resp)
	keys, err := decodeList(resp)
	if err != nil {
		return nil, &Error{Kind: ErrProtocol, Method: http.MethodGet, Path: path, Status: status, Err: err}
	}
	return keys, nil
}

// RevokeKey revokes the key with that id. A key the API no longer knows
// (404 or 410 with a JSON or empty body) counts as revoked: the goal, a key
// that can no longer be used, holds, and a retried DELETE whose first
// answer was lost must not fail. A 404 page in HTML or text is an error:
// it comes from a proxy or a wrong base URL, and the key may be live. The
// key id must come from ListKeys or CreateKey, since a mistyped id is
// indistinguishable from a revoked one.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	if strings.TrimSpace(id) == "" {
		return &Error{Kind: ErrBadRequest, Method: http.MethodDelete, Path: "/v1/keys/", Err: errors.New("empty key id")}
	}
	path := "/v1/keys/" + url.PathEscape(id)
	_, resp, err := c.do(ctx, http.MethodDelete, path, nil, maxErrorRead)
	clear(resp)
	var e *Error
	if errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusGone) {
		if !e.apiAnswer {
			// An HTML or text 404 comes from a proxy or a wrong base URL,
			// not from the API about this key: the key may still be live.
			e.Kind, e.Err = ErrProtocol, errors.New("the 404 is not the API's JSON answer: check the API base URL")
			return e
		}
		c.log.DebugContext(ctx, "bmapi: key already gone", slog.String("key_id", id), slog.Int("status", e.Status))
		return nil
	}
	return err
}

// do sends one call, retrying a GET or DELETE on temporary failures. It
// returns the status and body of a 2xx answer.
func (c *Client) do(ctx context.Context, method, path string, body []byte, maxBody int64) (int, []byte, error) {
	if c.baseErr != nil {
		return 0, nil, &Error{Kind: ErrBadRequest, Method: method, Path: path, Err: c.baseErr}
	}
	retry := method != http.MethodPost
	for attempt := 1; ; attempt++ {
		status, resp, err := c.once(ctx, method, path, body, maxBody)
		if err == nil {
			return status, resp, nil
		}
		var e *Error
		if !retry || attempt >= c.o.MaxAttempts || !errors.As(err, &e) || !keydesk.Temporary(e) || ctx.Err() != nil {
			return status, nil, err
		}
		wait := c.backoff(attempt)
		if e.RetryAfter > wait {
			wait = e.RetryAfter
		}
		if wait > c.o.MaxRetryWait {
			return status, nil, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return status, nil, err
		}
		c.log.WarnContext(ctx, "bmapi: retrying", slog.String("method", method), slog.String("path", path),
			slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.String("error", err.Error()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return status, nil, err
		case <-t.C:
		}
	}
}

// backoff is the wait after the given try: the base doubled per try, capped
// at ten bases, with equal jitter so that many clients do not retry in step.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.o.RetryBase << min(attempt-1, 10)
	d = min(d, 10*c.o.RetryBase)
	return d/2 + rand.N(d/2+1)
}

// once makes one HTTP exchange.
func (c *Client) once(ctx context.Context, method, path string, body []byte, maxBody int64) (status int, _ []byte, _ error) {
	fail := func(kind ErrorKind, status int, err error, sent bool) (int, []byte, error) {
		return status, nil, &Error{Kind: kind, Method: method, Path: path, Status: status, Err: err, sent: sent}
	}
	if c.o.Limiter != nil {
		if err := c.o.Limiter.Wait(ctx); err != nil {
			return fail(ErrTransport, 0, fmt.Errorf("waiting for the rate limiter: %w", err), false)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()

	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// From here on some of the request may have reached the server.
		WroteHeaders: func() { sent.Store(true) },
	})
	u := *c.base
	u.Path += path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fail(ErrBadRequest, 0, err, false)
	}
	req.Header.Set("X-API-Key", c.o.APIKey)
	req.Header.Set("X-API-Secret", c.o.APISecret.Reveal())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keydesk-bmapi/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.observe(ctx, method, path, 0, start)
		return fail(ErrTransport, 0, transportErr(err), sent.Load())
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	if status >= 200 && status < 300 {
		b, err := readLimited(resp.Body, maxBody)
		c.observe(ctx, method, path, status, start)
		if err != nil {
			clear(b)
			if errors.Is(err, errTooLarge) {
				return fail(ErrProtocol, status, err, true)
			}
			return fail(ErrTransport, status, fmt.Errorf("reading the response: %w", transportErr(err)), true)
		}
		return status, b, nil
	}
	b, _ := readLimited(resp.Body, maxErrorRead)
	c.observe(ctx, method, path, status, start)
	e := &Error{
		Kind: kindOf(status), Method: method, Path: path, Status: status,
		Body:       scrub(b, c.o.APISecret.RevealBytes()),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		sent:       true,
		apiAnswer:  looksJSON(resp.Header.Get("Content-Type"), b),
	}
	clear(b)
	if status >= 300 && status < 400 {
		e.Err = fmt.Errorf("redirect to %q not followed: check the API base URL", resp.Header.Get("Location"))
	}
	return status, nil, e
}

func (c *Client) observe(ctx context.Context, method, path string, status int, start time.Time) {
	d := time.Since(start)
	if c.o.Observe != nil {
		c.o.Observe(method, status, d)
	}
	c.log.DebugContext(ctx, "bmapi: call", slog.String("method", method), slog.String("path", path),
		slog.Int("status", status), slog.Duration("duration", d))
}

var errTooLarge = errors.New("the response is too large")

func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > limit {
		return b, fmt.Errorf("%w (over %d bytes)", errTooLarge, limit)
	}
	return b, nil
}

// looksJSON reports whether an answer is the API's own (JSON, or empty)
// rather than a proxy's error page.
func looksJSON(contentType string, body []byte) bool {
	if strings.Contains(strings.ToLower(contentType), "json") {
		return true
	}
	b := bytes.TrimSpace(body)
	return len(b) == 0 || b[0] == '{' || b[0] == '['
}

// transportErr keeps what a person needs from a transport error (timeout,
// refused, reset, DNS) without the url.Error's repetition of the URL.
func transportErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}
