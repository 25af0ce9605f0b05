package intake

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/intake/parse"
	"github.com/buildmarkets/keydesk/mailauth"
	"github.com/buildmarkets/keydesk/queue/queuetest"
)

// BenchmarkIntakeRedaction is the work intake does on each email once it
// is spooled (the secret scan and redaction, then the parse and the
// decision) over the parser's corpus, each email with the redaction off
// and on: on/off-throughput is the share of the throughput kept with it
// on (1 costs nothing). With KEYDESK_BENCH_STORE=1 each email is also
// stored (raw mail, requests, intake record) in an embedded NATS, as the
// poller does: the whole of intake's work but the IMAP exchange.
func BenchmarkIntakeRedaction(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("parse", "testdata", "mail", "*.eml"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no corpus: %v", err)
	}
	dir := b.TempDir()
	var spools []*spooled
	var raws [][]byte // what the spool keeps in memory as it downloads
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
		raws = append(raws, raw)
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	h := NewParseHandler(ParseOptions{Registry: parse.ExampleRegistry, Parse: parse.ExampleOptions(now), Now: func() time.Time { return now }})
	q := queuetest.Open(b)
	p, err := New(Options{
		IMAP: Mailbox{MailServer: mailauth.MailServer{Address: "127.0.0.1:1", Timeout: 10 * time.Second},
			Mailbox: "INBOX", ProcessedMailbox: "Processed", RejectedMailbox: "Rejected", PollInterval: time.Minute, MaxMessageBytes: 10 << 20},
		Queue: q, Handler: h, SpoolDir: dir, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	store := os.Getenv("KEYDESK_BENCH_STORE") != ""
	one := func(b *testing.B, i int, on bool) time.Duration {
		sp := spools[i]
		sp.data = raws[i]
		start := time.Now()
		p.noRedact = !on
		if _, err := p.redactSpool(sp); err != nil {
			b.Fatal(err)
		}
		m := &Message{Mailbox: "INBOX", UID: 1, Size: sp.size, open: sp.open}
		dec, err := h.Handle(ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		if !store {
			return time.Since(start)
		}
		if _, err := p.store(ctx, m, dec, true, sp.file); err != nil {
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
		for i := range spools {
			first := (i+n)%2 == 0
			d1 := one(b, i, first)
			d2 := one(b, i, !first)
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
