package review

import (
	"net/http"
	"testing"
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
