package redact

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRedact redacts the parser's corpus (no secret in it): the
// cost of looking, email by email.
func BenchmarkRedact(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("..", "parse", "testdata", "mail", "*.eml"))
	var msgs [][]byte
	var total int64
	for _, f := range files {
		m, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
		total += int64(len(m))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			Redact(m, Limits{})
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "emails/s")
}
