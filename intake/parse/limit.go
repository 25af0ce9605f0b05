package parse

import "fmt"

// limitKind names which bound of Limits a message hit. Whether the message
// can still be decided on is a property of the kind, never of its wording.
type limitKind int

const (
	// limitHeader: the message's header, a part's header, or all headers
	// together, past their bytes or fields.
	limitHeader limitKind = iota + 1
	// limitDepth: MIME parts nested deeper than Limits.Depth.
	limitDepth
	// limitParts: more MIME parts than Limits.Parts.
	limitParts
	// limitText: more readable text than Limits.TextBytes.
	limitText
	// limitHTML: an HTML part past its bytes, its tokens or one token's size.
	limitHTML
)

// fatal reports whether hitting the limit leaves the message unread: its
// structure was cut where a request may still follow. Text and HTML cut
// short are not: the request is at the top, what follows is not needed.
func (k limitKind) fatal() bool {
	switch k {
	case limitText, limitHTML:
		return false
	}
	return true
}

// limit is one bound a message hit: its kind, and the sentence that
// tells the sender which one.
type limit struct {
	kind limitKind
	msg  string
}

// bound records a limit the message hit, once.
func (m *msg) bound(kind limitKind, format string, args ...any) {
	l := limit{kind: kind, msg: fmt.Sprintf(format, args...)}
	for _, b := range m.bounds {
		if b == l {
			return
		}
	}
	m.bounds = append(m.bounds, l)
}
