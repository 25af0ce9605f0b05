package parse

import (
	"net/mail"
	"strings"
	"time"
)

// Date reads a Date header. Nearly every client writes the form of RFC
// 5322 section 3.3 with a numeric zone; net/mail tries a long list of
// layouts, and each one that fails costs an allocated error (a fifth of
// all a parse allocates), so that form is tried first, once, and
// net/mail reads everything else.
func Date(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	layout := "2 Jan 2006 15:04:05 -0700"
	if strings.IndexByte(s, ',') == 3 {
		layout = "Mon, 2 Jan 2006 15:04:05 -0700"
	}
	if len(s) <= len(layout)+1 && len(s) >= len(layout)-2 {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return mail.ParseDate(s)
}
