package bmapi

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// ErrorKind classes a failed call. Each kind is also a sentinel:
// errors.Is(err, bmapi.ErrRateLimited) holds for any *Error of that kind.
type ErrorKind string

func (k ErrorKind) Error() string { return "bmapi: " + string(k) }

const (
	// ErrUnauthorized: 401, the key or secret is missing, invalid or revoked.
	// Permanent until the partner's credentials in partners.yaml are fixed.
	ErrUnauthorized ErrorKind = "unauthorized: the API refused the key and secret (missing, invalid or revoked)"
	// ErrForbidden: 403, the key is valid but lacks the scope the endpoint
	// needs (keys:manage). Permanent until the key is given that scope.
	ErrForbidden ErrorKind = "forbidden: the key lacks the scope this endpoint needs (keys:manage)"
	// ErrRateLimited: 429. Temporary; RetryAfter says how long the API asks to wait.
	ErrRateLimited ErrorKind = "rate limited"
	// ErrServer: 5xx. Temporary. For a POST the outcome is unknown (see Unclear).
	ErrServer ErrorKind = "server error"
	// ErrTransport: no HTTP answer (timeout, connection reset or refused,
	// DNS). Temporary. For a POST sent on the wire the outcome is unknown.
	ErrTransport ErrorKind = "transport error"
	// ErrBadRequest: any other 4xx (and 3xx, which the client never
	// follows): the request itself is wrong. Permanent.
	ErrBadRequest ErrorKind = "request refused"
	// ErrProtocol: an answer the client cannot read or trust: a 2xx that
	// is not JSON, a created key without its id, api_key or api_secret, a
	// paginated list, or a 404 page to a DELETE that is not the API's JSON
	// (a proxy's, or a wrong base URL's). For a POST the key may well
	// exist: the outcome is unknown.
	ErrProtocol ErrorKind = "unreadable response"
)

// Error is the error of every failed call. Body is the start of the
// response body, scrubbed of anything that looks like a secret; the
// request's own credentials never appear in it.
type Error struct {
	Kind       ErrorKind
	Method     string // GET, POST, DELETE
	Path       string // /v1/keys...
	Status     int    // 0 when no HTTP answer came
	Body       string // cut short and scrubbed
	RetryAfter time.Duration
	Err        error // the transport or decoding cause, if any
	// sent is set when the request may have reached the server: for a POST
	// that is what makes its outcome unknown.
	sent bool
	// apiAnswer is set when the body is JSON (or empty): the API's own
	// answer rather than a proxy's error page.
	apiAnswer bool
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bmapi: %s %s: ", e.Method, e.Path)
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d %s: ", e.Status, http.StatusText(e.Status))
	}
	b.WriteString(string(e.Kind))
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, ": %q", e.Body)
	}
	if Unclear(e) {
		b.WriteString(" (outcome unknown: the key may have been created; reconcile by listing keys)")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every *Error match the sentinel of its kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(ErrorKind)
	return ok && k == e.Kind
}

// Temporary reports whether the same call may succeed later unchanged: a
// 429, a 5xx or no answer at all. keydesk.Temporary reads it.
func (e *Error) Temporary() bool {
	return e.Kind == ErrRateLimited || e.Kind == ErrServer || e.Kind == ErrTransport
}

// Unclear reports whether err leaves it unknown if a POST took effect: the
// request may have reached the API (a transport failure after it was sent,
// a 5xx, an unreadable 2xx). The caller must not retry it blindly — a
// retried POST may create a second key — but list the keys and reconcile.
// A GET or DELETE is never unclear: both are safe to repeat.
func Unclear(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Method != http.MethodPost {
		return false
	}
	switch e.Kind {
	case ErrServer, ErrProtocol:
		return true
	case ErrTransport:
		return e.sent
	}
	return false
}

// maxErrorBody is how much of an error response is kept.
const maxErrorBody = 512

// secretField matches a JSON member whose name holds "secret" or
// "password", with its string value, even one cut short.
var secretField = regexp.MustCompile(`(?i)("[^"]*(?:secret|password|token)[^"]*"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)`)

// scrub removes secrets from an error body, then cuts it short on a rune
// boundary. own is the request's own secret, which a server might echo.
func scrub(body []byte, own []byte) string {
	s := string(body)
	if len(own) > 0 {
		s = strings.ReplaceAll(s, string(own), "[redacted]")
	}
	s = secretField.ReplaceAllString(s, `$1"[redacted]"`)
	s = keydesk.RedactSecrets(s)
	s = strings.TrimSpace(s)
	if len(s) > maxErrorBody {
		cut := maxErrorBody
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.ToValidUTF8(s, "�")
}

// kindOf classes an HTTP status that is not a success.
func kindOf(status int) ErrorKind {
	switch {
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status >= 500:
		return ErrServer
	}
	return ErrBadRequest
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && fmt.Sprint(secs) == v {
		if secs < 0 {
			return 0
		}
		return time.Duration(min(secs, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, 24*time.Hour)
		}
	}
	return 0
}
