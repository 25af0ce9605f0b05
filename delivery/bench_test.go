package delivery

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// BenchmarkOutboxToSMTP measures messages per second from the outbox
// (embedded JetStream, fsync on every write) through one delivery instance
// to a local go-smtp server: for each, a record read, the claim, the SMTP
// dialogue on a new connection, the sent mark and the ack.
func BenchmarkOutboxToSMTP(b *testing.B) {
	e := newEnv(b)
	e.opts.Log = slog.New(slog.DiscardHandler)
	for i := range b.N {
		e.enqueue(&keydesk.Outgoing{ID: fmt.Sprintf("bench.%d", i), Kind: keydesk.KindAcknowledgement,
			To: []string{"r@acme.example"}, Subject: "Received", Text: "We have your request.\n"})
	}
	b.ResetTimer()
	start := time.Now()
	e.start(e.opts)
	testenv.Eventually(b, 10*time.Minute, "all messages", func() bool { return e.mail.Count() >= b.N })
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
