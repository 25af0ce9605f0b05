package main

import (
	"bytes"
	"context"
	"github.com/buildmarkets/keydesk/internal/demo"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// TestDemoOnce runs `keydesk demo --once` in process: the real roles
// against the demo's servers, with the checks the command makes.
func TestDemoOnce(t *testing.T) {
	var out bytes.Buffer
	var env *demo.Env
	sum, err := demo.Run(context.Background(), demoWiring(demo.Options{Once: true, Timeout: 60 * time.Second, Out: &out,
		Started: func(e *demo.Env) { env = e }}))
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !sum.OK() {
		t.Fatalf("demo found problems: %v\n%s", sum.Problems, out.String())
	}
	// What the README promises a newcomer sees.
	want := demo.Summary{
		Emails: 6, EmailsRead: 6, Processed: 5, Rejected: 1,
		KeysCreated: 4, KeyDeliveries: 4, Decrypted: 4, Acks: 3, Rejections: 1, Notices: 4,
	}
	got := *sum
	got.Requests, got.Problems, got.ToSupport = nil, nil, 0
	if got.Emails != want.Emails || got.EmailsRead != want.EmailsRead || got.Processed != want.Processed ||
		got.Rejected != want.Rejected || got.KeysCreated != want.KeysCreated || got.KeyDeliveries != want.KeyDeliveries ||
		got.Decrypted != want.Decrypted || got.Acks != want.Acks || got.Rejections != want.Rejections || got.Notices != want.Notices {
		t.Errorf("summary %+v\nwant     %+v", got, want)
	}
	if sum.Requests[keydesk.StateDelivered] != 4 || sum.Requests[keydesk.StateRejected] != 2 || len(sum.Requests) != 2 {
		t.Errorf("requests by outcome %v, want delivered 4, rejected 2", sum.Requests)
	}
	for _, line := range []string{"intake:   6 of 6 emails read", "alice and bob (four eyes) approved", "unknown sender eve@stranger.example", "OK: everything expected happened."} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
	// No secret the API made is printed, or sent anywhere but inside the
	// encryption.
	secrets := regexp.MustCompile(`bm_secret_[A-Za-z0-9_]+`)
	if s := secrets.FindString(out.String()); s != "" {
		t.Errorf("the demo printed a secret: %s", s)
	}
	for _, m := range env.Sink.Messages() {
		if s := secrets.Find(m.Data); s != nil {
			t.Errorf("an email to %v holds a secret in clear text", m.To)
		}
	}
}

// TestDemoOnceFailsWhenSomethingIsWrong breaks the API (every call
// answers 500): --once must say so rather than report success.
func TestDemoOnceFailsWhenSomethingIsWrong(t *testing.T) {
	var out bytes.Buffer
	sum, err := demo.Run(context.Background(), demoWiring(demo.Options{Once: true, Timeout: 5 * time.Second, Out: &out,
		Started: func(e *demo.Env) {
			e.API.FailNext(1000, http.StatusInternalServerError)
			e.ProdAPI.FailNext(1000, http.StatusInternalServerError)
		}}))
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if sum.OK() {
		t.Fatalf("demo reported success with a broken API:\n%s", out.String())
	}
	for _, want := range []string{"FAILED:", "0 keys live at the API, want 4"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDemoInteractive starts the demo as a visitor would and checks that
// the review UI it points to answers and the logins it prints work.
func TestDemoInteractive(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := demo.Run(ctx, demoWiring(demo.Options{Out: pw, Listen: "127.0.0.1:0"}))
		pw.CloseWithError(err)
	}()
	var seen strings.Builder
	buf := make([]byte, 4096)
	var base, token string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && (base == "" || token == "") {
		n, err := pr.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("demo ended: %v\n%s", err, seen.String())
		}
		if m := regexp.MustCompile(`Review UI:  (http://\S+)/`).FindStringSubmatch(seen.String()); m != nil {
			base = m[1]
		}
		if m := regexp.MustCompile(`Bearer (\S+)'`).FindStringSubmatch(seen.String()); m != nil {
			token = m[1]
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if base == "" || token == "" {
		t.Fatalf("no review URL and API token printed:\n%s", seen.String())
	}
	for _, want := range []string{"login alice", "login bob", "an unknown sender, from eve@stranger.example"} {
		if !strings.Contains(seen.String(), want) {
			t.Errorf("welcome lacks %q:\n%s", want, seen.String())
		}
	}
	// The printed token opens the API, and intake fills the queue.
	var body string
	if err := testenv.Poll(20*time.Second, "a pending request", func() bool {
		req, _ := http.NewRequest("GET", base+"/api/v1/requests?state=pending_review", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
		return strings.Contains(body, "pending_review")
	}); err != nil {
		t.Fatalf("the API shows no pending request: %s", body)
	}
	// The printed login opens the review UI, as in a browser.
	m := regexp.MustCompile(`login alice\s+password (\S+)`).FindStringSubmatch(seen.String())
	if m == nil {
		t.Fatalf("no password printed for alice:\n%s", seen.String())
	}
	form := url.Values{"username": {"alice"}, "password": {m[1]}, "next": {"/queue"}}
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		t.Fatalf("login as alice with the printed password: %s, cookies %v", resp.Status, resp.Cookies())
	}
	cancel()
	wg.Wait()
}
