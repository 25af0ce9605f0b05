package intake

import (
	"bytes"
	"context"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/intake/parse"
)

// withAttachment is a sandbox request from Ada with an attachment of n
// raw bytes (base64) named name: larger than what is kept of it.
func withAttachment(id string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("Authentication-Results: mx.buildmarkets.ai; dkim=pass header.d=acme.example; dmarc=pass header.from=acme.example\r\n" +
		"From: Ada Lovelace <ada@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: Sandbox key, figures attached\r\n" +
		"Date: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <" + id + "@acme.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Hello,\r\n\r\nEnvironment: sandbox\r\nScopes: accounts:read\r\nLabel: reporting\r\n\r\nOur report is attached.\r\nAda\r\n" +
		"--b1\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n")
	line := strings.Repeat("JVBE", 19) + "\r\n"
	for b.Len() < n {
		b.WriteString(line)
	}
	b.WriteString("--b1--\r\n")
	return b.Bytes()
}

// heapPeak samples the heap's object bytes until stop is called and
// returns the largest value seen.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	done := make(chan struct{})
	var peak uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

// TestDovecotLargeAttachment: on a real Dovecot, an email whose attachment
// makes it 24 MB, over max_message_bytes (1 MiB) and under
// hard_max_message_bytes, is read and its request queued, not rejected;
// the raw copy is kept cut at 1 MiB with a mark, and the request says
// which attachment was not kept. The poller streams it: the heap never
// grows by the email's size.
func TestDovecotLargeAttachment(t *testing.T) {
	d, h := dovecotHarness(t)
	const keep, hard = 1 << 20, 64 << 20
	h.cfg.MaxMessageBytes, h.cfg.HardMaxMessageBytes = keep, hard
	h.handler = NewParseHandler(ParseOptions{
		Registry: testRegistry,
		Parse: parse.Options{TrustedAuthservIDs: []string{"mx.buildmarkets.ai"}, RequireDMARC: true,
			InternalDomains: []string{"buildmarkets.ai"}, MaxBytes: hard, KeepBytes: keep},
	})
	raw := withAttachment("big", 24<<20)
	size := len(raw)
	if err := d.Deliver("INBOX", raw); err != nil {
		t.Fatal(err)
	}
	raw = nil

	// A low GC target keeps garbage out of the measure: the heap then
	// holds about what is live, and an email held whole would show.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stopPeak := heapPeak()
	h.run(h.poller(nil))
	c := dovecotClient(t, d)
	allFiled(t, c, 1)
	peak := stopPeak()
	growth := int64(peak) - int64(base.HeapAlloc)
	t.Logf("a %.1f MB email taken in: heap %.1f MiB before, peak %.1f MiB (+%.1f MiB); process peak RSS %s",
		float64(size)/1e6, float64(base.HeapAlloc)/(1<<20), float64(peak)/(1<<20), float64(growth)/(1<<20), peakRSS())
	if growth > int64(size)/2 {
		t.Errorf("the heap grew by %d MiB taking in a %d MiB email: it must stream", growth>>20, size>>20)
	}

	if got := count(t, c, "Processed"); got != 1 {
		t.Fatalf("Processed holds %d, want 1: the email must not be set aside", got)
	}
	rs := h.requests()
	if len(rs) != 1 || rs[0].State != keydesk.StateApproved || rs[0].Label != "reporting" {
		t.Fatalf("requests %+v: want the sandbox request queued, approved", rs)
	}
	r := rs[0]
	want := "an attachment of 18 MB (report.pdf) was not kept"
	if !strings.Contains(strings.Join(r.Warnings, "\n"), want) {
		t.Errorf("warnings %q: want %q", r.Warnings, want)
	}
	rc, err := h.q.OpenMail(context.Background(), r.MailRef)
	if err != nil {
		t.Fatalf("raw mail not kept: %v", err)
	}
	defer rc.Close()
	kept, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != keep || !bytes.HasPrefix(kept, []byte("Authentication-Results:")) ||
		!bytes.HasSuffix(kept, []byte("(imap.max_message_bytes); the rest was not kept]\r\n")) {
		t.Errorf("kept %d bytes ending %q: want the first %d, marked as cut", len(kept), kept[max(0, len(kept)-120):], keep)
	}
	for _, rec := range h.records() {
		if !rec.Stored || rec.Outcome != "accept" || rec.Size != int64(size) {
			t.Errorf("record %+v: want accept, stored, size %d", rec, size)
		}
	}
}

// peakRSS is the process's peak resident set (VmHWM), for the log.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
