package parse

import (
	"net/mail"
	"testing"
)

// TestDate: the fast path reads what net/mail reads, the same instant in
// the same zone, and leaves every other form to it.
func TestDate(t *testing.T) {
	for _, s := range []string{
		"Mon, 30 Nov 2026 09:15:00 +0100",
		"Mon, 2 Nov 2026 09:15:00 -0500",
		"30 Nov 2026 09:15:00 +0000",
		"  Tue, 01 Dec 2026 03:04:05 +0530  ",
		"Mon, 30 Nov 2026 09:15:00 +0100 (CET)",
		"Mon, 30 Nov 2026 09:15 +0100",
		"Mon, 30 Nov 2026 09:15:00 GMT",
		"Mon, 30 Nov 26 09:15:00 +0100",
		"Thu, 31 Nov 2026 09:15:00 +0100",
		"Mon,30 Nov 2026 09:15:00 +0100",
		"garbage",
		"",
	} {
		got, gerr := Date(s)
		want, werr := mail.ParseDate(s)
		if (gerr == nil) != (werr == nil) || !got.Equal(want) || got.Format("-0700") != want.Format("-0700") {
			t.Errorf("Date(%q) = %v, %v; net/mail reads %v, %v", s, got, gerr, want, werr)
		}
	}
}
