package redact

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// FuzzRedact: any input, however broken, is redacted without a panic,
// the output holds nothing FindSecrets finds, no Buildmarkets secret of
// the input is left in it, and the work stays bounded (the output grows
// by at most a marker per secret and a re-encoding per part).
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		head + "Content-Type: text/plain\r\n\r\n" + pair,
		head + "Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + testenv.QuotedPrintable("<p>X-API-Secret: <b>"+secret+"</b></p>"),
		head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream; name=.env\r\nContent-Transfer-Encoding: base64\r\n\r\n" + testenv.Base64Lines("API_SECRET="+other+"\n") + "--b--\r\n",
		head + "Content-Type: message/rfc822\r\n\r\nSubject: =?utf-8?Q?bm=5Fsecret=5Fabcdefgh?=\r\n\r\nkey-001 api_secret: " + other + "\r\n",
		head + "Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n\r\n" + testenv.Base64Lines("\xff\xfe"+utf16le(secret)),
	} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join("..", "parse", "testdata", "mail", "*.eml"))
	for i, p := range files {
		if i%10 != 0 {
			continue // a sample of the parser's corpus
		}
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 256<<10 {
			return
		}
		orig := bytes.Clone(in)
		out, res := Redact(in, Limits{})
		if !bytes.Equal(in, orig) {
			t.Fatal("Redact changed its input")
		}
		if spans := keydesk.FindSecrets(out); len(spans) > 0 {
			t.Fatalf("the output still holds %q", out[spans[0].Start:spans[0].End])
		}
		for _, sp := range keydesk.FindSecrets(in) {
			if sp.Kind == keydesk.SecretBM && bytes.Contains(out, in[sp.Start:sp.End]) {
				t.Fatalf("the secret %q of the input is in the output", in[sp.Start:sp.End])
			}
		}
		if len(res.Findings) == 0 && !bytes.Equal(out, in) {
			t.Fatal("nothing found, yet the email changed")
		}
		if len(out) > 8*len(in)+4096 {
			t.Fatalf("the output is %d bytes for %d: unbounded growth", len(out), len(in))
		}
	})
}
