package parse

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/buildmarkets/keydesk"
)

// FuzzParse feeds arbitrary bytes to the parser, seeded with the corpus
// (testdata/mail) and the checked-in seeds (testdata/fuzz/FuzzParse). It
// checks that Parse never panics, finishes quickly, and that what it
// returns keeps its invariants whatever the input: bounded, valid records,
// and no reply unless an authenticated partner's email was accepted or
// rejected.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "mail", "*.eml"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	lim := Limits{HeaderBytes: 16 << 10, Depth: 4, Parts: 20, TextBytes: 16 << 10, HTMLBytes: 32 << 10, Lines: 200, LineBytes: 500, Requests: 3, ScopeWords: 8}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o := testOptions()
		o.MaxBytes = 64 << 10
		o.Limits = lim
		start := time.Now()
		r, err := Parse(byteReader(raw), o)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse took %v on %d bytes", d, len(raw))
		}
		if err != nil {
			t.Fatalf("Parse failed on in-memory input: %v", err)
		}
		checkInvariants(t, r, o)
	})
}

// byteReader is a reader over b that is not a *bytes.Reader, so nothing
// can take a shortcut the mailbox stream would not offer.
func byteReader(b []byte) *chunkReader { return &chunkReader{b: b} }

type chunkReader struct{ b []byte }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.b)
	c.b = c.b[n:]
	return n, nil
}

func checkInvariants(t *testing.T, r *Result, o Options) {
	t.Helper()
	switch r.Verdict {
	case Accept, Reject, Review, Ignore:
	default:
		t.Fatalf("verdict %q", r.Verdict)
	}
	if r.Size > o.MaxBytes {
		t.Errorf("read %d bytes past the %d limit", r.Size, o.MaxBytes)
	}
	if r.ReplyTo != "" {
		if r.Verdict != Accept && r.Verdict != Reject {
			t.Errorf("a reply to %q on verdict %s", r.ReplyTo, r.Verdict)
		}
		if r.Partner == nil {
			t.Errorf("a reply to %q for an unknown sender", r.ReplyTo)
		}
	}
	if r.Verdict == Ignore && len(r.Requests) != 0 {
		t.Errorf("ignored mail made %d records", len(r.Requests))
	}
	if r.Verdict != Ignore && len(r.Requests) == 0 {
		t.Errorf("verdict %s made no record for support", r.Verdict)
	}
	if len(r.Requests) > max(1, o.Limits.Requests) {
		t.Errorf("%d requests past the limit of %d", len(r.Requests), o.Limits.Requests)
	}
	if len(r.Warnings) > 40 || len(r.Reasons) > 60 {
		t.Errorf("%d warnings, %d reasons", len(r.Warnings), len(r.Reasons))
	}
	if utf8.RuneCountInString(r.Subject) > 301 || len(r.MessageID) > 1000 {
		t.Errorf("subject or message-id unbounded: %d, %d", len(r.Subject), len(r.MessageID))
	}
	for _, q := range r.Requests {
		if !keydesk.ValidRequestID(q.ID) || !q.State.Valid() || q.SourceKey == "" {
			t.Errorf("bad record %+v", q)
		}
		if q.State == keydesk.StateApproved && (len(q.Flags) > 0 || r.Verdict != Accept) {
			t.Errorf("auto-approved with flags %v on verdict %s", q.Flags, r.Verdict)
		}
		if (q.State == keydesk.StateRejected) != (r.Verdict == Reject) {
			t.Errorf("state %s on verdict %s", q.State, r.Verdict)
		}
		if q.Label != "" {
			if _, err := keydesk.ParseLabel(q.Label); err != nil {
				t.Errorf("label %q passed: %v", q.Label, err)
			}
		}
		for _, s := range q.Scopes {
			if !s.Valid() {
				t.Errorf("scope %q", s)
			}
		}
		if q.Environment != "" && !q.Environment.Valid() {
			t.Errorf("environment %q", q.Environment)
		}
		if q.KindOf() != keydesk.KindIssue {
			// A key ask names a key, resolved by intake; it always waits
			// for a person and bounds what it keeps of the sentence.
			if q.State == keydesk.StateApproved || len(q.Reason) > 4*maxReasonText || len(q.Scopes) > 0 {
				t.Errorf("key ask %s in %s with a %d-byte reason and scopes %v", q.Kind, q.State, len(q.Reason), q.Scopes)
			}
			if len(r.KeyAsks) > MaxKeyAsks {
				t.Errorf("%d key asks", len(r.KeyAsks))
			}
		} else if r.Verdict == Accept && (q.Environment == "" || len(q.Scopes) == 0 || q.Label == "" || len(q.Reasons) > 0) {
			t.Errorf("accepted an incomplete request %+v", q)
		}
		if r.Verdict == Reject && q.Problem == "" {
			t.Errorf("rejected record without a problem: %+v", q)
		}
	}
	checkThreading(t, r)
	if _, err := r.Summary("fuzz.eml").JSONLine(); err != nil {
		t.Errorf("summary: %v", err)
	}
}
