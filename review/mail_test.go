package review

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/metrics"
	"github.com/buildmarkets/keydesk/queue/queuetest"
	"github.com/buildmarkets/keydesk/review/users"
	"github.com/buildmarkets/keydesk/templates"
)

func TestParseMailView(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		text      string // in the shown body
		kind      string
		header    string // a header value shown
		authres   int
		problem   bool
		truncated bool
	}{
		{
			name: "plain",
			raw:  "From: a@acme.example\r\nSubject: =?utf-8?q?Cl=C3=A9s_API?=\r\nAuthentication-Results: mx; dmarc=pass\r\nAuthentication-Results: mx2; spf=fail\r\n\r\nEnvironment: sandbox\r\n",
			text: "Environment: sandbox", kind: "text/plain", header: "Clés API", authres: 2,
		},
		{
			name: "html only is shown as source",
			raw:  "From: a@acme.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p onclick=x>Scopes: <b>trading:read</b></p>\r\n",
			text: "<p onclick=x>Scopes: <b>trading:read</b></p>", kind: "text/html (shown as source, never rendered)",
		},
		{
			name: "latin-1 is decoded",
			raw:  "From: a@acme.example\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nLabel: caf\xe9\r\n",
			text: "Label: café", kind: "text/plain",
		},
		{
			name: "terminal escapes and bidi overrides are neutralised",
			raw:  "From: a@acme.example\r\n\r\nLabel: \x1b[2Jprod\u202egnp.exe\r\n",
			text: "Label: \ufffd[2Jprod\u27e8U+202E\u27e9gnp.exe", kind: "text/plain",
		},
		{
			name: "arabic letter mark and C1 controls are neutralised",
			raw:  "From: a@acme.example\r\nSubject: x\u061cy\r\n\r\nLabel: a\u061cb\u009bc\r\n",
			text: "Label: a\u27e8U+061C\u27e9b\ufffdc", kind: "text/plain", header: "x\u27e8U+061C\u27e9y",
		},
		{
			name:    "garbage headers",
			raw:     "\x00\x01 not a header at all",
			problem: true,
		},
		{
			name:      "huge email is cut",
			raw:       "From: a@acme.example\r\n\r\n" + strings.Repeat("x", maxMailRead+10),
			truncated: true, kind: "text/plain", text: "xxxx",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := parseMailView([]byte(tt.raw))
			if tt.text != "" && !strings.Contains(v.Text, tt.text) {
				t.Errorf("text = %q, want it to contain %q", clip(v.Text, 200), tt.text)
			}
			if v.TextKind != tt.kind {
				t.Errorf("kind = %q, want %q", v.TextKind, tt.kind)
			}
			if tt.header != "" && !strings.Contains(headersText(v), tt.header) {
				t.Errorf("headers %v lack %q", v.Headers, tt.header)
			}
			if len(v.AuthRes) != tt.authres {
				t.Errorf("authres = %v, want %d", v.AuthRes, tt.authres)
			}
			if (v.Problem != "") != tt.problem {
				t.Errorf("problem = %q", v.Problem)
			}
			if v.Truncated != tt.truncated || len(v.Raw) > maxMailRead+1024 {
				t.Errorf("truncated = %v, raw %d bytes", v.Truncated, len(v.Raw))
			}
			if strings.ContainsAny(v.Raw+v.Text+headersText(v), "\x00\x1b\u202e\u061c\u009b") {
				t.Error("a control character reached the page")
			}
		})
	}
}

func headersText(v *mailView) string {
	var b strings.Builder
	for _, h := range v.Headers {
		b.WriteString(h.Name + ": " + h.Value + "\n")
	}
	return b.String()
}

func TestSecureCookieAndNext(t *testing.T) {
	q := queuetest.Open(t)
	h, _ := users.HashPassword("pw", users.Params{Memory: 64, Time: 1, Threads: 1})
	set, _ := users.Parse("u", []byte("users:\n  - {name: alice, role: approver, password_hash: \""+h+"\"}\n"))
	m := metrics.New()
	s, err := New(Options{Queue: q, Users: func() *users.Set { return set }, Templates: templates.MustLoadEmbedded(), Metrics: m, TLS: true, Now: func() time.Time { return time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(method, target string, form url.Values) *http.Response {
		req := httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		return w.Result()
	}
	resp := rec("POST", "/login", url.Values{"username": {"alice"}, "password": {"pw"}, "next": {"/queue?state=approved&partner=acme"}})
	c := resp.Header.Get("Set-Cookie")
	if !strings.HasPrefix(c, "__Host-keydesk_session=") || !strings.Contains(c, "Secure") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
		t.Fatalf("cookie over TLS: %q", c)
	}
	if loc := resp.Header.Get("Location"); loc != "/queue?state=approved&partner=acme" {
		t.Fatalf("next = %q", loc)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS over TLS")
	}
	resp = rec("GET", "/queue?state=approved&partner=acme", nil)
	if loc := resp.Header.Get("Location"); loc != "/login?next="+url.QueryEscape("/queue?state=approved&partner=acme") {
		t.Fatalf("redirect to login = %q", loc)
	}
	if got := m.Counter("keydesk_review_actions_total", "", "action").Value("login"); got != 1 {
		t.Fatalf("keydesk_review_actions_total{action=login} = %v", got)
	}
}
