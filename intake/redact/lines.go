package redact

import (
	"bufio"
	"fmt"
	"io"
)

// maxLine is how much of one line Lines holds at once: a longer line is
// scanned in pieces (a secret across two pieces is missed).
const maxLine = 1 << 20

// Lines redacts an email too large to be read into memory: line by line
// as written, without decoding any part. A secret in plain text (7bit or
// 8bit, in any part or header) is found; one in a base64 part, or split
// by a quoted-printable soft break, is not. It writes the result to w (io.Discard: only look) and returns what it
// found; its error is reading r or writing w.
func Lines(r io.Reader, w io.Writer) (*Result, error) {
	wk := &walker{lim: Limits{}.withDefaults(), res: &Result{}, byFP: map[string]*Finding{}}
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull && len(line) < maxLine {
			continue
		}
		if len(line) > 0 {
			out := line
			if red := wk.scan(line, "the email as written"); red != nil {
				out = red
			}
			if _, werr := bw.Write(out); werr != nil {
				return nil, fmt.Errorf("redact: write: %w", werr)
			}
			clear(line)
			line = line[:0]
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return nil, fmt.Errorf("redact: read: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("redact: write: %w", err)
	}
	wk.res.Unscanned = append(wk.res.Unscanned, "the email is larger than keydesk reads into memory: it was scanned as written, its base64 parts were not decoded")
	return wk.res, nil
}
