// Package metrics is keydesk's Prometheus registry: counters, gauges and
// histograms with labels, gauges computed at scrape time, and the Go
// runtime and process metrics (go_*, process_*) operators' dashboards
// expect. It is a thin face over client_golang with a registry of its own
// (never the global default one), so that each app and each test has its
// own metrics.
//
// Invariant: label values are what the code passes (states, outcomes,
// status codes) and never message content, addresses or secrets; every
// metric is declared once in Registry and looked up by its name.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Registry holds metrics and writes them in the Prometheus text format.
type Registry struct {
	reg     *prometheus.Registry
	handler http.Handler

	mu     sync.Mutex
	byName map[string]any // *Counter, *Gauge, *Histogram or *GaugeFunc
}

// New returns a registry holding only the Go runtime and process metrics.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Registry{
		reg:     reg,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
		byName:  map[string]any{},
	}
}

// declare returns the metric already declared under name, or registers
// the one make builds. A name declared twice with another type panics: it
// is a programming error, as it was before.
func declare[M any](r *Registry, name string, make func() (M, prometheus.Collector)) M {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byName[name]; ok {
		m, ok := old.(M)
		if !ok {
			panic(fmt.Sprintf("metrics: %s is declared as %T, not %T", name, old, m))
		}
		return m
	}
	m, c := make()
	r.reg.MustRegister(c)
	r.byName[name] = m
	return m
}

// Write writes every metric in the Prometheus text format, sorted by name.
func (r *Registry) Write(w io.Writer) {
	mfs, err := r.reg.Gather()
	if err != nil {
		// Gather returns what it could alongside the error: write that.
		fmt.Fprintf(w, "# metrics: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return
		}
	}
}

// ServeHTTP serves the registry on /metrics.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.handler.ServeHTTP(w, req)
}

// labelValues makes values client_golang accepts: it refuses (panics on)
// invalid UTF-8, which the code never means to pass but must not crash on.
func labelValues(lv []string) []string {
	for i, v := range lv {
		if !utf8.ValidString(v) {
			lv = append([]string(nil), lv...)
			lv[i] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	return lv
}

func read(m prometheus.Metric) *dto.Metric {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(fmt.Sprintf("metrics: read %s: %v", m.Desc(), err))
	}
	return &d
}

// Counter is a monotonically increasing count, by labels.
type Counter struct{ v *prometheus.CounterVec }

// Counter declares (or returns the already declared) counter name.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return declare(r, name, func() (*Counter, prometheus.Collector) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		return &Counter{v: v}, v
	})
}

// Add adds d to the series with these label values.
func (c *Counter) Add(d float64, lv ...string) {
	c.v.WithLabelValues(labelValues(lv)...).Add(d)
}

// Inc adds one.
func (c *Counter) Inc(lv ...string) { c.Add(1, lv...) }

// Value returns the current value (for tests and summaries).
func (c *Counter) Value(lv ...string) float64 {
	return read(c.v.WithLabelValues(labelValues(lv)...)).GetCounter().GetValue()
}

// Gauge is a value that goes up and down, by labels.
type Gauge struct{ v *prometheus.GaugeVec }

// Gauge declares a gauge.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return declare(r, name, func() (*Gauge, prometheus.Collector) {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		return &Gauge{v: v}, v
	})
}

// Set sets the series to x.
func (g *Gauge) Set(x float64, lv ...string) { g.v.WithLabelValues(labelValues(lv)...).Set(x) }

// Add adds d to the series.
func (g *Gauge) Add(d float64, lv ...string) { g.v.WithLabelValues(labelValues(lv)...).Add(d) }

// Value returns the current value.
func (g *Gauge) Value(lv ...string) float64 {
	return read(g.v.WithLabelValues(labelValues(lv)...)).GetGauge().GetValue()
}

// Histogram counts observations into buckets, by labels.
type Histogram struct{ v *prometheus.HistogramVec }

// DefBuckets suit latencies in seconds, from 5 ms to a minute.
var DefBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Histogram declares a histogram with the given upper bounds.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) *Histogram {
	if buckets == nil {
		buckets = DefBuckets
	}
	return declare(r, name, func() (*Histogram, prometheus.Collector) {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		return &Histogram{v: v}, v
	})
}

// Observe records x.
func (h *Histogram) Observe(x float64, lv ...string) {
	h.v.WithLabelValues(labelValues(lv)...).Observe(x)
}

// Count returns how many observations the series has.
func (h *Histogram) Count(lv ...string) uint64 {
	o := h.v.WithLabelValues(labelValues(lv)...).(prometheus.Metric)
	return read(o).GetHistogram().GetSampleCount()
}

// GaugeFunc is a gauge computed when scraped, e.g. requests by state.
type GaugeFunc struct {
	desc   *prometheus.Desc
	labels []string
	fn     func() map[string]float64 // label value (joined by \xff) → value
}

// Describe implements prometheus.Collector.
func (g *GaugeFunc) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector: one series per entry of fn's
// map whose key holds as many label values as the gauge has labels.
func (g *GaugeFunc) Collect(ch chan<- prometheus.Metric) {
	for k, v := range g.fn() {
		var lv []string
		if len(g.labels) > 0 {
			lv = strings.Split(k, "\xff")
		}
		if len(lv) != len(g.labels) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, labelValues(lv)...)
	}
}

// GaugeFunc declares a gauge whose series fn computes at scrape time; fn
// returns values keyed by the label values joined with "\xff" (or "" when
// there are no labels). It must be quick and must not block for long.
func (r *Registry) GaugeFunc(name, help string, fn func() map[string]float64, labels ...string) {
	declare(r, name, func() (*GaugeFunc, prometheus.Collector) {
		g := &GaugeFunc{desc: prometheus.NewDesc(name, help, labels, nil), labels: labels, fn: fn}
		return g, g
	})
}
