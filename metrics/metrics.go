// Package metrics is a small Prometheus text-format registry: counters,
// gauges and histograms with labels, and gauges computed at scrape time.
//
// Invariant: label values are what the code passes (states, outcomes,
// status codes) and never message content, addresses or secrets; every
// metric is declared once in Registry and looked up by its name.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Registry holds metrics and writes them in the Prometheus text format.
type Registry struct {
	mu      sync.Mutex
	metrics []metric
	byName  map[string]metric
}

// New returns an empty registry.
func New() *Registry { return &Registry{byName: map[string]metric{}} }

type metric interface {
	name() string
	write(w io.Writer)
}

func (r *Registry) register(m metric) metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byName[m.name()]; ok {
		return old
	}
	r.byName[m.name()] = m
	r.metrics = append(r.metrics, m)
	return m
}

// Write writes every metric in registration order.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	ms := slices.Clone(r.metrics)
	r.mu.Unlock()
	for _, m := range ms {
		m.write(w)
	}
}

// ServeHTTP serves the registry on /metrics.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	r.Write(w)
}

type series struct {
	labels []string
	value  float64
	// histogram only
	counts []uint64
	sum    float64
	count  uint64
}

type vec struct {
	mu         sync.Mutex
	n, help    string
	kind       string
	labelNames []string
	buckets    []float64
	series     map[string]*series
	order      []string
}

func (v *vec) name() string { return v.n }

func (v *vec) get(lv []string) *series {
	if len(lv) != len(v.labelNames) {
		panic(fmt.Sprintf("metrics: %s takes %d labels, got %d", v.n, len(v.labelNames), len(lv)))
	}
	k := strings.Join(lv, "\xff")
	s, ok := v.series[k]
	if !ok {
		s = &series{labels: slices.Clone(lv)}
		if v.kind == "histogram" {
			s.counts = make([]uint64, len(v.buckets))
		}
		v.series[k] = s
		v.order = append(v.order, k)
	}
	return s
}

func (v *vec) write(w io.Writer) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", v.n, v.help, v.n, v.kind)
	keys := slices.Clone(v.order)
	slices.Sort(keys)
	for _, k := range keys {
		s := v.series[k]
		if v.kind != "histogram" {
			fmt.Fprintf(w, "%s%s %s\n", v.n, labelString(v.labelNames, s.labels, "", ""), formatFloat(s.value))
			continue
		}
		for i, b := range v.buckets {
			fmt.Fprintf(w, "%s_bucket%s %d\n", v.n, labelString(v.labelNames, s.labels, "le", formatFloat(b)), s.counts[i])
		}
		fmt.Fprintf(w, "%s_bucket%s %d\n", v.n, labelString(v.labelNames, s.labels, "le", "+Inf"), s.count)
		fmt.Fprintf(w, "%s_sum%s %s\n", v.n, labelString(v.labelNames, s.labels, "", ""), formatFloat(s.sum))
		fmt.Fprintf(w, "%s_count%s %d\n", v.n, labelString(v.labelNames, s.labels, "", ""), s.count)
	}
}

func labelString(names, values []string, extraName, extraValue string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName + `="` + extraValue + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Counter is a monotonically increasing count, by labels.
type Counter struct{ v *vec }

// Counter declares (or returns the already declared) counter name.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	m := r.register(&vec{n: name, help: help, kind: "counter", labelNames: labels, series: map[string]*series{}})
	return &Counter{v: m.(*vec)}
}

// Add adds d to the series with these label values.
func (c *Counter) Add(d float64, labelValues ...string) {
	c.v.mu.Lock()
	c.v.get(labelValues).value += d
	c.v.mu.Unlock()
}

// Inc adds one.
func (c *Counter) Inc(labelValues ...string) { c.Add(1, labelValues...) }

// Value returns the current value (for tests and summaries).
func (c *Counter) Value(labelValues ...string) float64 {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	return c.v.get(labelValues).value
}

// Gauge is a value that goes up and down, by labels.
type Gauge struct{ v *vec }

// Gauge declares a gauge.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	m := r.register(&vec{n: name, help: help, kind: "gauge", labelNames: labels, series: map[string]*series{}})
	return &Gauge{v: m.(*vec)}
}

// Set sets the series to x.
func (g *Gauge) Set(x float64, labelValues ...string) {
	g.v.mu.Lock()
	g.v.get(labelValues).value = x
	g.v.mu.Unlock()
}

// Add adds d to the series.
func (g *Gauge) Add(d float64, labelValues ...string) {
	g.v.mu.Lock()
	g.v.get(labelValues).value += d
	g.v.mu.Unlock()
}

// Value returns the current value.
func (g *Gauge) Value(labelValues ...string) float64 {
	g.v.mu.Lock()
	defer g.v.mu.Unlock()
	return g.v.get(labelValues).value
}

// Histogram counts observations into buckets, by labels.
type Histogram struct{ v *vec }

// DefBuckets suit latencies in seconds, from 5 ms to a minute.
var DefBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Histogram declares a histogram with the given upper bounds.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) *Histogram {
	if buckets == nil {
		buckets = DefBuckets
	}
	m := r.register(&vec{n: name, help: help, kind: "histogram", labelNames: labels, buckets: buckets, series: map[string]*series{}})
	return &Histogram{v: m.(*vec)}
}

// Observe records x.
func (h *Histogram) Observe(x float64, labelValues ...string) {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	s := h.v.get(labelValues)
	for i, b := range h.v.buckets {
		if x <= b {
			s.counts[i]++
		}
	}
	s.count++
	s.sum += x
}

// Count returns how many observations the series has.
func (h *Histogram) Count(labelValues ...string) uint64 {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	return h.v.get(labelValues).count
}

// GaugeFunc is a gauge computed when scraped, e.g. requests by state.
type GaugeFunc struct {
	n, help string
	labels  []string
	fn      func() map[string]float64 // label value (joined by \xff) → value
}

func (g *GaugeFunc) name() string { return g.n }

func (g *GaugeFunc) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", g.n, g.help, g.n)
	vals := g.fn()
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var lv []string
		if len(g.labels) > 0 {
			lv = strings.Split(k, "\xff")
		}
		if len(lv) != len(g.labels) {
			continue
		}
		fmt.Fprintf(w, "%s%s %s\n", g.n, labelString(g.labels, lv, "", ""), formatFloat(vals[k]))
	}
}

// GaugeFunc declares a gauge whose series fn computes at scrape time; fn
// returns values keyed by the label values joined with "\xff" (or "" when
// there are no labels). It must be quick and must not block for long.
func (r *Registry) GaugeFunc(name, help string, fn func() map[string]float64, labels ...string) {
	r.register(&GaugeFunc{n: name, help: help, labels: labels, fn: fn})
}
