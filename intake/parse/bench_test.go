package parse

import (
	"bytes"
	"os"
	"testing"
)

// BenchmarkParse parses the whole corpus once per iteration and reports
// emails per second alongside the byte rate.
func BenchmarkParse(b *testing.B) {
	var msgs [][]byte
	var total int64
	for _, p := range corpus(b) {
		m, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
		total += int64(len(m))
	}
	o := testOptions()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range msgs {
			if _, err := Parse(bytes.NewReader(m), o); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "emails/s")
}

// BenchmarkParseLargeAttachment parses a request with a 20 MB attachment,
// streamed: the rate of skipping what is not text.
func BenchmarkParseLargeAttachment(b *testing.B) {
	o := testOptions()
	o.MaxBytes = 32 << 20
	b.SetBytes(20 << 20)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, err := Parse(bigMessage(20<<20), o)
		if err != nil || r.Verdict != Accept {
			b.Fatalf("%v %v", err, r.Reasons)
		}
	}
}
