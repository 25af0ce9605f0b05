package parse

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/buildmarkets/keydesk"
)

// headerBomb is a 10 MiB email from Jane at Acme, authenticated, whose
// request is readable but whose structure is stuffed with header fields:
// what a hostile sender writes to exhaust memory.
func headerBomb(shape string) []byte {
	const size = 10 << 20
	var b bytes.Buffer
	head := email("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n", "")
	b.WriteString(head)
	fill := func(unit string, tail string) {
		for b.Len()+len(unit)+len(tail) < size {
			b.WriteString(unit)
		}
		b.WriteString(tail)
	}
	text := "\r\n" + request + "\r\n"
	switch shape {
	case "one part, millions of fields":
		b.WriteString("--b\r\nContent-Type: text/plain\r\n")
		fill("a:\r\n", text+"--b--\r\n")
	case "one part, one endless field":
		b.WriteString("--b\r\nContent-Type: text/plain\r\nX-Junk: ")
		fill("x", "\r\n"+text+"--b--\r\n")
	case "many parts, each under the bound":
		b.WriteString("--b\r\nContent-Type: text/plain\r\n" + text)
		fill("--b\r\nContent-Type: image/png\r\n"+strings.Repeat("X-Junk: "+strings.Repeat("0", 1000)+"\r\n", 50)+"\r\nxx\r\n", "--b--\r\n")
	case "attached message":
		b.WriteString("--b\r\nContent-Type: text/plain\r\n" + text + "--b\r\nContent-Type: message/rfc822\r\n\r\n")
		fill("a:\r\n", text+"--b--\r\n")
	case "nested multiparts":
		for i := range 6 {
			b.WriteString("--b\r\nContent-Type: multipart/mixed; boundary=b" + strings.Repeat("x", i) + "\r\n\r\n")
		}
		fill("--bxxxxx\r\nContent-Type: text/plain\r\n"+strings.Repeat("a:\r\n", 990)+"\r\nx\r\n", "")
	}
	return b.Bytes()
}

// TestHeaderBombs parses hostile 10 MiB emails and checks each is refused
// as too large, with the bound named, at a small cost in memory: every
// byte the parser allocates is counted (runtime.MemStats.TotalAlloc), so
// a header kept in memory whole cannot pass.
func TestHeaderBombs(t *testing.T) {
	for _, tt := range []struct {
		shape string
		bound string
	}{
		{"one part, millions of fields", "a MIME part's header has more than 1000 fields"},
		{"one part, one endless field", "a MIME part's header is larger than 64 KiB"},
		{"many parts, each under the bound", "the headers of the message and its parts are larger than 1 MiB together"},
		{"attached message", "an attached message's header has more than 1000 fields"},
		{"nested multiparts", "the headers of the message and its parts have more than 5000 fields together"},
	} {
		t.Run(tt.shape, func(t *testing.T) {
			raw := headerBomb(tt.shape)
			if len(raw) > DefaultMaxBytes {
				t.Fatalf("the bomb is %d bytes, over the message bound", len(raw))
			}
			o := testOptions()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			r, err := Parse(bytes.NewReader(raw), o)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != Reject || !hasReason(r, keydesk.ReasonTooLarge, tt.bound) {
				t.Fatalf("verdict %s reasons %v warnings %v: want reject, too-large %q", r.Verdict, r.Reasons, r.Warnings, tt.bound)
			}
			if r.Size != int64(len(raw)) {
				t.Errorf("read %d of %d bytes: the digest must cover the whole message", r.Size, len(raw))
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%.1f MiB email: %.1f MiB allocated, %d allocations", float64(len(raw))/(1<<20), float64(alloc)/(1<<20), after.Mallocs-before.Mallocs)
			if alloc > 16<<20 {
				t.Errorf("parsing a 10 MiB header bomb allocated %d MiB: headers must be bounded as they stream", alloc>>20)
			}
		})
	}
}
