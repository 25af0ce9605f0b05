package queue

import (
	"errors"
	"fmt"
	"strings"
)

// MaxInboxPrefix bounds Options.InboxPrefix: every reply subject carries it.
const MaxInboxPrefix = 64

// ValidInboxPrefix reports why p cannot prefix reply subjects: it must be
// dot-separated non-empty tokens of printable characters, without
// wildcards (a subscription to <p>.> must match this connection's replies
// only), not a server subject ($...), and at most MaxInboxPrefix bytes.
func ValidInboxPrefix(p string) error {
	switch {
	case p == "":
		return errors.New("inbox prefix is empty")
	case len(p) > MaxInboxPrefix:
		return fmt.Errorf("inbox prefix is %d bytes long: use at most %d", len(p), MaxInboxPrefix)
	case strings.HasPrefix(p, "$"):
		return fmt.Errorf("inbox prefix %q starts with $, which the server reserves: use e.g. _INBOX_intake", p)
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return fmt.Errorf("inbox prefix %q has an empty token (a leading, trailing or double dot): use e.g. _INBOX_intake", p)
		}
		for _, r := range tok {
			if r == '*' || r == '>' {
				return fmt.Errorf("inbox prefix %q contains the wildcard %q: use a plain subject such as _INBOX_intake", p, r)
			}
			if r <= ' ' || r == 0x7f {
				return fmt.Errorf("inbox prefix %q contains a space or control character", p)
			}
		}
	}
	return nil
}
