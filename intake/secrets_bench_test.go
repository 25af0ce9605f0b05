package intake

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/intake/parse"
)

// BenchmarkIntakeRedaction is the work intake does on each email once it
// is spooled (the secret scan and redaction, then the parse and the
// decision) over the parser's corpus, each email with the redaction off
// and on: on/off-throughput is the share of the throughput kept with it
// on (1 costs nothing). The queue's synchronous writes, left out here,
// only bring it closer to 1.
func BenchmarkIntakeRedaction(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("parse", "testdata", "mail", "*.eml"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no corpus: %v", err)
	}
	dir := b.TempDir()
	var spools []*spooled
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		sp := &spooled{file: filepath.Join(dir, filepath.Base(f)), size: int64(len(raw))}
		if err := os.WriteFile(sp.file, raw, 0o600); err != nil {
			b.Fatal(err)
		}
		spools = append(spools, sp)
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	h := NewParseHandler(ParseOptions{Registry: parse.ExampleRegistry, Parse: parse.ExampleOptions(now), Now: func() time.Time { return now }})
	p := &Poller{o: Options{IMAP: Mailbox{MaxMessageBytes: 10 << 20}}, log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	one := func(b *testing.B, sp *spooled, on bool) time.Duration {
		start := time.Now()
		p.noRedact = !on
		if _, err := p.redactSpool(sp); err != nil {
			b.Fatal(err)
		}
		m := &Message{Size: sp.size, open: func() (io.ReadCloser, error) { return os.Open(sp.file) }}
		if _, err := h.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	// Off and on alternate email by email, so that both see the same
	// machine: on a shared one, two runs apart differ by more than 5%.
	b.ReportAllocs()
	var off, on time.Duration
	n := 0
	for b.Loop() {
		for i, sp := range spools {
			first := (i+n)%2 == 0
			d1 := one(b, sp, first)
			d2 := one(b, sp, !first)
			if first {
				on, off = on+d1, off+d2
			} else {
				off, on = off+d1, on+d2
			}
		}
		n++
	}
	emails := float64(n * len(spools))
	b.ReportMetric(emails/off.Seconds(), "emails/s-off")
	b.ReportMetric(emails/on.Seconds(), "emails/s-on")
	b.ReportMetric(off.Seconds()/on.Seconds(), "on/off-throughput")
}
