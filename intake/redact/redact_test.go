package redact

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

const (
	secret = "bm_secret_Q7fK2mZp9XwL4tRb8NcV1yHd6JgS3aUe" // 42 bytes: 32-63
	apiKey = "bm_key_A1b2C3d4E5f6G7h8I9j0"
	other  = "Zq8vW2pL0xYk77Hs" // a secret without the bm_ prefix
)

func fp(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

const head = "From: Ada <ada@acme.example>\r\nTo: support@buildmarkets.ai\r\nSubject: 401 with this pair\r\n" +
	"Date: Mon, 30 Nov 2026 08:00:00 +0000\r\nMessage-ID: <x@acme.example>\r\nMIME-Version: 1.0\r\n"

func utf16le(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

const pair = "X-API-Key: " + apiKey + "\r\nX-API-Secret: " + secret + "\r\n"

// decodedText is every part of an email decoded (transfer encoding and
// charset), attached messages included: what any reader of the stored
// copy could get out of it.
func decodedText(t *testing.T, raw []byte) string {
	t.Helper()
	var b strings.Builder
	var walk func(e *message.Entity, depth int)
	walk = func(e *message.Entity, depth int) {
		for k, v := range e.Header.Map() {
			b.WriteString(k + ": " + strings.Join(v, " ") + "\n")
		}
		if s, err := e.Header.Text("Subject"); err == nil {
			b.WriteString(s + "\n")
		}
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if err != nil {
					return
				}
				walk(p, depth+1)
			}
		}
		body, _ := io.ReadAll(e.Body)
		b.Write(body)
		ct, _, _ := e.Header.ContentType()
		if ct == "message/rfc822" && depth < 8 {
			if m, err := message.Read(bytes.NewReader(body)); err == nil || message.IsUnknownCharset(err) {
				walk(m, depth+1)
			}
		}
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("read redacted email: %v", err)
	}
	walk(e, 0)
	return b.String()
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		email   string
		secrets []string // what must be gone, with their fingerprints in markers
		apiKey  string
		keyID   string
		where   string // a part of Finding.Where
		keep    string // bytes of the raw email that must stay as written
	}{
		{
			name:    "plain text",
			email:   head + "Content-Type: text/plain; charset=utf-8\r\n\r\nHi,\r\nwe get 401 with this pair:\r\n\r\n" + pair + "\r\nCan you check?\r\n",
			secrets: []string{secret}, apiKey: apiKey, where: "body (text/plain)",
			keep: "we get 401 with this pair:\r\n\r\nX-API-Key: " + apiKey,
		},
		{
			name: "quoted-printable with the secret across a soft break",
			email: head + "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"Gr=FC=DFe, this pair fails: X-API-Key: " + apiKey + " X-API-Secret: bm_secret_Q7fK2mZp9=\r\nXwL4tRb8NcV1yHd6JgS3aUe\r\n",
			secrets: []string{secret}, apiKey: apiKey,
		},
		{
			name:    "base64 text",
			email:   head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + testenv.Base64Lines("Our config:\n"+pair),
			secrets: []string{secret}, apiKey: apiKey,
		},
		{
			name: "html, the secret split by markup and entities",
			email: head + "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nno secret in this one\r\n" +
				"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				testenv.QuotedPrintable("<div>X-API-Key: "+apiKey+"</div><div>X-API-Secret: <span>bm&#95;secret_Q7fK2mZp9XwL4tRb8</span>NcV1yHd6JgS3aUe</div>") + "\r\n--alt--\r\n",
			secrets: []string{secret}, apiKey: apiKey, where: "part 2 (text/html)",
			keep: "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nno secret in this one\r\n--alt\r\n",
		},
		{
			name: "quoted in a reply",
			email: head + "In-Reply-To: <KR-1.ack@buildmarkets.ai>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSorry, ignore the pair below.\r\n\r\n" +
				"On Mon, Ada wrote:\r\n> key id: key-007\r\n> X-API-Secret: " + secret + "\r\n",
			secrets: []string{secret}, keyID: "key-007",
		},
		{
			name: "an attached .env",
			email: head + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" +
				"--b1\r\nContent-Type: application/octet-stream; name=\"prod.env\"\r\nContent-Disposition: attachment; filename=\"prod.env\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				testenv.Base64Lines("BM_API_KEY="+apiKey+"\nBM_API_SECRET="+secret+"\nDB_URL=postgres://x\n") + "--b1--\r\n",
			secrets: []string{secret}, apiKey: apiKey, where: "prod.env",
			keep: "--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\n",
		},
		{
			name: "an attached JSON with a secret of another shape",
			email: head + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" +
				"--b1\r\nContent-Type: application/json; name=key.json\r\nContent-Disposition: attachment; filename=key.json\r\n\r\n" +
				`{"id": "key-003", "label": "prod", "api_secret": "` + other + `"}` + "\r\n--b1--\r\n",
			secrets: []string{other}, keyID: "key-003",
		},
		{
			name: "an attached CSV in base64",
			email: head + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nkeys\r\n" +
				"--b1\r\nContent-Type: text/csv; name=keys.csv\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				testenv.Base64Lines("id,api_key,api_secret\nkey-001,"+apiKey+","+secret+"\n") + "--b1--\r\n",
			secrets: []string{secret}, apiKey: apiKey, keyID: "key-001",
		},
		{
			name: "a forwarded message",
			email: head + "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nForwarding our developer's email.\r\n" +
				"--b1\r\nContent-Type: message/rfc822\r\n\r\n" +
				"From: dev@acme.example\r\nSubject: keys\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
				"--inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + testenv.Base64Lines("use "+apiKey+" / "+secret) +
				"--inner\r\nContent-Type: text/html\r\n\r\n<p>use " + apiKey + " / " + secret + "</p>\r\n--inner--\r\n" +
				"\r\n--b1--\r\n",
			secrets: []string{secret}, apiKey: apiKey, where: "part 2 > message",
		},
		{
			name: "UTF-16 text",
			email: head + "Content-Type: text/plain; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				testenv.Base64Lines(utf16le("Here: "+apiKey+" "+secret+"\n")),
			secrets: []string{secret}, apiKey: apiKey,
		},
		{
			name: "a secret in an encoded subject",
			email: "From: ada@acme.example\r\nSubject: =?utf-8?B?" + base64.StdEncoding.EncodeToString([]byte("401 for "+secret)) + "?=\r\n" +
				"Content-Type: text/plain\r\n\r\nsee subject\r\n",
			secrets: []string{secret}, where: "header Subject",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.email)
			out, res := Redact(raw, Limits{})
			dec := decodedText(t, out)
			for _, s := range tt.secrets {
				if bytes.Contains(out, []byte(s)) || strings.Contains(dec, s) {
					t.Errorf("the secret is still in the email:\n%s\n-- decoded --\n%s", out, dec)
				}
				if !strings.Contains(dec, "sha256:"+fp(s)) {
					t.Errorf("no marker with sha256:%s in\n%s", fp(s), dec)
				}
			}
			if len(keydesk.FindSecrets([]byte(dec))) > 0 {
				t.Errorf("the decoded email still holds a secret:\n%s", dec)
			}
			if len(res.Findings) != len(tt.secrets) {
				t.Fatalf("findings %+v, want %d", res.Findings, len(tt.secrets))
			}
			f := res.Findings[0]
			if f.Fingerprint != fp(tt.secrets[0]) || f.Length != lengthClass(len(tt.secrets[0])) {
				t.Errorf("finding %+v", f)
			}
			if f.APIKey != tt.apiKey || f.KeyID != tt.keyID {
				t.Errorf("beside it: api key %q, key id %q; want %q, %q", f.APIKey, f.KeyID, tt.apiKey, tt.keyID)
			}
			if tt.where != "" && !strings.Contains(strings.Join(f.Where, "|"), tt.where) {
				t.Errorf("where %q, want it to name %q", f.Where, tt.where)
			}
			if tt.keep != "" && !bytes.Contains(out, []byte(tt.keep)) {
				t.Errorf("the bytes %q were not kept as written:\n%s", tt.keep, out)
			}
			again, res2 := Redact(out, Limits{})
			if !bytes.Equal(again, out) || len(res2.Findings) != 0 {
				t.Errorf("redacting again changed it: %+v", res2.Findings)
			}
		})
	}
}

// TestRedactNoSecret: an email without a secret is returned as it was,
// the same bytes, however it is built.
func TestRedactNoSecret(t *testing.T) {
	for _, email := range []string{
		head + "Content-Type: text/plain\r\n\r\nEnvironment: sandbox\r\nScopes: accounts:read\r\nLabel: sandbox-backend\r\n\r\nOur API secret is stored in our vault.\r\n",
		// A base64 body shorter than a quantum (a fuzzer's find: it panicked).
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nxx",
		head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\napi_secret: <the one you sent>\r\n--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + testenv.Base64Lines("\x89PNG\r\n\x1a\nsecret") + "--b--\r\n",
	} {
		out, res := Redact([]byte(email), Limits{})
		if string(out) != email || len(res.Findings) != 0 {
			t.Errorf("changed: %+v\n%s", res.Findings, out)
		}
	}
}

// TestRedactLimits: past the bounds, a part is still scanned as written.
func TestRedactLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString(head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range 5 {
		b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nnothing\r\n")
	}
	b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\n" + pair + "--b--\r\n")
	out, res := Redact([]byte(b.String()), Limits{Parts: 3})
	if bytes.Contains(out, []byte(secret)) || len(res.Findings) != 1 || len(res.Unscanned) == 0 {
		t.Errorf("findings %+v, unscanned %q:\n%s", res.Findings, res.Unscanned, out)
	}
}

func TestMarker(t *testing.T) {
	_, res := Redact([]byte("Content-Type: text/plain\r\n\r\n"+pair), Limits{})
	if got, want := res.Findings[0].Marker(), "[bm_secret redacted sha256:"+fp(secret)+" len:32-63]"; got != want {
		t.Errorf("marker %q, want %q", got, want)
	}
}

// TestWhereHoldsNoSecret: a file name with a secret in it names the
// place without it.
func TestWhereHoldsNoSecret(t *testing.T) {
	email := head + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: text/plain; name=\"" + secret + ".txt\"\r\nContent-Disposition: attachment; filename=\"" + secret + ".txt\"\r\n\r\n" + pair + "--b--\r\n"
	out, res := Redact([]byte(email), Limits{})
	if bytes.Contains(out, []byte(secret)) {
		t.Errorf("the secret is still in the email:\n%s", out)
	}
	for _, f := range res.Findings {
		for _, w := range f.Where {
			if strings.Contains(w, secret) {
				t.Errorf("where %q holds the secret", w)
			}
		}
	}
}
