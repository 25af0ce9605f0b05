package parse

import (
	"errors"
	"fmt"
	"io"
)

// errHeaderBound stops a read at a header bound. The headerBudget that
// was exceeded says which bound in words; Parse never returns this error.
var errHeaderBound = errors.New("parse: a header exceeds its bound")

// headerBudget is what the header blocks of one message may cost together:
// the message's own, each MIME part's and each attached message's. go-message
// keeps every field of a block in memory and bounds only the message's own
// header, so a part's header of millions of tiny fields would otherwise
// cost gigabytes; the guards below count the blocks as they stream past.
type headerBudget struct {
	lim    Limits
	bytes  int64
	fields int
	hit    string // the bound that was hit, in words; "" while none was
}

// headerGuard passes a stream through and counts the header blocks in it:
// the one it starts with (an entity: delim is nil), or the one after each
// delimiter line of a multipart body. Past a bound it records the bound in
// its budget and fails every further read with errHeaderBound.
type headerGuard struct {
	r      io.Reader
	b      *headerBudget
	delim  []byte // "--" + boundary, or nil for an entity
	what   string // the kind of block, for the words of a bound
	max    int64  // bytes of one block; 0: the block's reader bounds them
	inHdr  bool   // in a header block
	done   bool   // an entity whose header is over: pass the rest through
	hBytes int64  // this block's bytes
	hField int    // this block's fields
	col    int    // bytes of the current line seen so far
	onlyCR bool   // the current line so far is "\r"
	match  int    // delimiter bytes matched at the start of the line; -1: none
	tail   bool   // something other than white space followed the delimiter
	err    error
}

// guardEntity guards the header an entity starts with; max bounds its bytes
// (0: the caller's reader does).
func (b *headerBudget) guardEntity(r io.Reader, what string, max int64) *headerGuard {
	return &headerGuard{r: r, b: b, what: what, max: max, inHdr: true}
}

// guardParts guards the part headers of a multipart body.
func (b *headerBudget) guardParts(r io.Reader, boundary string) *headerGuard {
	return &headerGuard{r: r, b: b, delim: []byte("--" + boundary), what: "a MIME part's header", max: b.lim.PartHeaderBytes}
}

func (g *headerGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.done {
		return g.r.Read(p)
	}
	n, err := g.r.Read(p)
	for i := 0; i < n; i++ {
		if !g.step(p[i]) {
			g.err = errHeaderBound
			return i, g.err
		}
	}
	return n, err
}

// step takes one byte and reports whether the bounds still hold.
func (g *headerGuard) step(c byte) bool {
	if !g.inHdr {
		g.body(c)
		return true
	}
	g.hBytes++
	g.b.bytes++
	if g.col == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n' {
		g.hField++ // a line that does not continue the one before starts a field
		g.b.fields++
	}
	switch {
	case c == '\n' && (g.col == 0 || (g.col == 1 && g.onlyCR)):
		// The blank line: the block is over.
		g.inHdr = false
		g.done = g.delim == nil
		g.col, g.match, g.tail = 0, 0, false
		return true
	case c == '\n':
		g.col = 0
	default:
		g.onlyCR = c == '\r' && g.col == 0
		g.col++
	}
	lim := g.b.lim
	switch {
	case g.max > 0 && g.hBytes > g.max:
		g.b.hit = fmt.Sprintf("%s is larger than %s", g.what, byteSize(g.max))
	case g.hField > lim.HeaderFields:
		g.b.hit = fmt.Sprintf("%s has more than %d fields", g.what, lim.HeaderFields)
	case g.b.bytes > lim.TotalHeaderBytes:
		g.b.hit = fmt.Sprintf("the headers of the message and its parts are larger than %s together", byteSize(lim.TotalHeaderBytes))
	case g.b.fields > lim.TotalHeaderFields:
		g.b.hit = fmt.Sprintf("the headers of the message and its parts have more than %d fields together", lim.TotalHeaderFields)
	default:
		return true
	}
	return false
}

// body watches the lines of a multipart body for a delimiter: "--boundary"
// and optional white space, as the multipart reader accepts it. A close
// delimiter ("--boundary--") starts no header.
func (g *headerGuard) body(c byte) {
	if g.delim == nil {
		return
	}
	if c == '\n' {
		if g.match == len(g.delim) && !g.tail {
			g.inHdr = true
			g.hBytes, g.hField, g.onlyCR = 0, 0, false
		}
		g.col, g.match, g.tail = 0, 0, false
		return
	}
	switch {
	case g.match < 0:
	case g.match < len(g.delim):
		if c == g.delim[g.match] {
			g.match++
		} else {
			g.match = -1
		}
	case c != ' ' && c != '\t' && c != '\r':
		g.tail = true
	}
}
