package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTextFormat(t *testing.T) {
	r := New()
	c := r.Counter("keydesk_emails_total", "Emails read, by outcome.", "outcome")
	c.Inc("accept")
	c.Add(2, "reject")
	r.Gauge("keydesk_up", "Always 1.").Set(1)
	h := r.Histogram("keydesk_api_seconds", "API latency.", []float64{0.1, 1}, "status")
	h.Observe(0.05, "201")
	h.Observe(0.5, "201")
	r.GaugeFunc("keydesk_requests", "Requests by state.", func() map[string]float64 {
		return map[string]float64{"pending_review": 3, "approved": 1}
	}, "state")
	var b strings.Builder
	r.Write(&b)
	got := b.String()
	for _, want := range []string{
		"# TYPE keydesk_emails_total counter\n",
		`keydesk_emails_total{outcome="accept"} 1` + "\n",
		`keydesk_emails_total{outcome="reject"} 2` + "\n",
		"keydesk_up 1\n",
		`keydesk_api_seconds_bucket{status="201",le="0.1"} 1` + "\n",
		`keydesk_api_seconds_bucket{status="201",le="1"} 2` + "\n",
		`keydesk_api_seconds_bucket{status="201",le="+Inf"} 2` + "\n",
		`keydesk_api_seconds_count{status="201"} 2` + "\n",
		`keydesk_requests{state="approved"} 1` + "\n",
		`keydesk_requests{state="pending_review"} 3` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if r.Counter("keydesk_emails_total", "again", "outcome").Value("accept") != 1 {
		t.Error("declaring a counter twice must return the same one")
	}
}

func TestLabelEscaping(t *testing.T) {
	r := New()
	r.Counter("x_total", "x", "l").Inc("a\"b\\c\nd")
	var b strings.Builder
	r.Write(&b)
	if !strings.Contains(b.String(), `x_total{l="a\"b\\c\nd"} 1`) {
		t.Fatalf("bad escaping:\n%s", b.String())
	}
}

// TestRuntimeAndProcessMetrics checks what an operator's dashboard reads
// besides keydesk's own metrics: the Go runtime's and the process's, on
// /metrics, from this registry alone (not the global default one).
func TestRuntimeAndProcessMetrics(t *testing.T) {
	r := New()
	r.Gauge("keydesk_up", "1 while keydesk runs.").Set(1)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d\n%s", rec.Code, rec.Body.String())
	}
	body := rec.Body.String()
	for _, want := range []string{
		"# TYPE go_goroutines gauge\ngo_goroutines ",
		"# TYPE go_memstats_heap_alloc_bytes gauge\n",
		"# TYPE go_gc_duration_seconds summary\n",
		"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes ",
		"# TYPE process_open_fds gauge\n",
		"# HELP keydesk_up 1 while keydesk runs.\n# TYPE keydesk_up gauge\nkeydesk_up 1\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
