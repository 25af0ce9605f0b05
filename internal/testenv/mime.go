package testenv

import (
	"bytes"
	"encoding/base64"
	"mime/quotedprintable"
	"strings"
)

// Base64Lines is s in base64 as a MIME body carries it: lines of 76
// characters, each ended by CRLF.
func Base64Lines(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return b.String() + enc + "\r\n"
}

// QuotedPrintable is s in quoted-printable, soft line breaks included.
func QuotedPrintable(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}
