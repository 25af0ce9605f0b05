package parse

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// attachedMessage streams a request with a small attachment and then one
// of n raw bytes named name, never holding it in memory.
func attachedMessage(n int64, name string) io.Reader {
	head := email("Content-Type: multipart/mixed; boundary=zz\r\n",
		"--zz\r\nContent-Type: text/plain\r\n\r\n"+request+"\r\n"+
			"--zz\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"small.csv\"\r\n\r\na,b\r\n1,2\r\n"+
			"--zz\r\nContent-Type: application/pdf; name=\""+name+"\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\""+name+"\"\r\n\r\n")
	line := strings.Repeat("QUJD", 19) + "\r\n" // 78 bytes
	return io.MultiReader(strings.NewReader(head), &repeatReader{line: []byte(line), left: n}, strings.NewReader("\r\n--zz--\r\n"))
}

// TestAttachmentPastTheKeptCopy: an email whose attachment makes it larger
// than what is kept of it is read all the same (its text is at the top),
// accepted, and warned about: the attachment that the kept copy lacks is
// named with its size; the one before the cut is not. Parsing streams.
func TestAttachmentPastTheKeptCopy(t *testing.T) {
	o := testOptions()
	o.MaxBytes = 64 << 20
	o.KeepBytes = 10 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Parse(attachedMessage(24<<20, "report.pdf"), o)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != Accept || len(r.Requests) != 1 || r.Requests[0].Label != "test-key" {
		t.Fatalf("verdict %s requests %v reasons %v: want the request accepted", r.Verdict, r.Requests, r.Reasons)
	}
	want := []string{
		"an attachment of 18 MB (report.pdf) was not kept",
		"the stored copy of the email (25 MB) is cut at 10 MiB; its text was read whole",
	}
	if !slices.Equal(r.Warnings, want) || !slices.Equal(r.Requests[0].Warnings, want) {
		t.Errorf("warnings %q, want %q", r.Warnings, want)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MB email: %.2f MiB allocated", r.Size/1e6, float64(alloc)/(1<<20))
	if alloc > 8<<20 {
		t.Errorf("parsing a 24 MiB email allocated %d MiB: it must stream", alloc>>20)
	}

	// Within what is kept, nothing is said.
	o.KeepBytes = 32 << 20
	if r := mustParseReader(t, attachedMessage(24<<20, "report.pdf"), o); len(r.Warnings) != 0 {
		t.Errorf("warnings %q for an email kept whole", r.Warnings)
	}
	// Past MaxBytes the email is still refused, and reading stops there.
	o.MaxBytes, o.KeepBytes = 16<<20, 10<<20
	counted := &countReader{r: attachedMessage(24<<20, "report.pdf")}
	if r := mustParseReader(t, counted, o); r.Verdict != Reject || counted.n > 17<<20 {
		t.Errorf("verdict %s after reading %d bytes: want reject, reading stopped at the bound", r.Verdict, counted.n)
	}
}

func mustParseReader(t *testing.T, rd io.Reader, o Options) *Result {
	t.Helper()
	r, err := Parse(rd, o)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return r
}

// TestCorpusAttachmentsNotKept: the corpus's Outlook email with two files,
// kept only up to its text, names both files it lacks with their sizes.
func TestCorpusAttachmentsNotKept(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "mail", "accept-attach-outlook-two-files.eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := testOptions()
	o.KeepBytes = 2 << 10
	r := mustParseReader(t, f, o)
	want := []string{
		"an attachment of 3 KB (recon-spec.pdf) was not kept",
		"an attachment of 2 KB (accounts.xlsx) was not kept",
		"the stored copy of the email (9 KB) is cut at 2 KiB; its text was read whole",
	}
	if r.Verdict != Accept || !slices.Equal(r.Warnings, want) {
		t.Errorf("verdict %s warnings %q, want accept with %q", r.Verdict, r.Warnings, want)
	}
}
