package review

import (
	"net/http"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/internal/oidctest"
)

// BenchmarkQueuePage measures the queue page over 1,000 requests, the
// page a support engineer reloads all day: list, count, flag, render.
func BenchmarkQueuePage(b *testing.B) {
	e := newEnv(b)
	for range 1000 {
		e.request(nil, "")
	}
	br := e.login("alice")
	b.ResetTimer()
	for b.Loop() {
		if code, _, _ := br.get("/queue"); code != http.StatusOK {
			b.Fatal(code)
		}
	}
}

// BenchmarkRequestPage measures one request page with its email and history.
func BenchmarkRequestPage(b *testing.B) {
	e := newEnv(b)
	for range 200 {
		e.request(nil, "")
	}
	r := e.request(nil, sampleMail("dana@acme.example", "keys", "Environment: sandbox\nScopes: accounts:read\nLabel: x\n", "dmarc=pass"))
	br := e.login("alice")
	b.ResetTimer()
	for b.Loop() {
		if code, _, _ := br.get("/requests/" + r.ID); code != http.StatusOK {
			b.Fatal(code)
		}
	}
}

// BenchmarkSSOSignIn measures a whole sign-in by single sign-on against
// the in-process OpenID Provider: keydesk's redirect, the provider's
// login form, the callback (code exchange with PKCE, ID-token check,
// the pending login taken from the store), and the first page.
func BenchmarkSSOSignIn(b *testing.B) {
	e, _ := ssoEnv(b, oidctest.Options{}, nil)
	e.request(nil, "")
	b.ResetTimer()
	for b.Loop() {
		// One sign-in a second per address is what the start limit allows
		// after its burst: the clock moves on, the limit is not what is
		// measured.
		e.clock.Add(time.Second)
		br := e.ssoLogin("alice", "/queue")
		if code, _, _ := br.get("/queue"); code != http.StatusOK {
			b.Fatal(code)
		}
	}
}

// BenchmarkQueuePageSSO is BenchmarkQueuePage for a person signed in by
// single sign-on: the session check reads no users.yaml.
func BenchmarkQueuePageSSO(b *testing.B) {
	e, _ := ssoEnv(b, oidctest.Options{}, nil)
	for range 1000 {
		e.request(nil, "")
	}
	br := e.ssoLogin("alice", "/queue")
	b.ResetTimer()
	for b.Loop() {
		if code, _, _ := br.get("/queue"); code != http.StatusOK {
			b.Fatal(code)
		}
	}
}
