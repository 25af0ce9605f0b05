package crypto_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
)

// testDelivery is a realistic pair, with a secret that needs JSON escaping.
func testDelivery() keydesk.KeyDelivery {
	return keydesk.KeyDelivery{
		RequestID: "KR-20261127-7QX4", PartnerName: "Acme Capital", Environment: keydesk.Production,
		Scopes: []keydesk.Scope{keydesk.ScopeAccountsRead, keydesk.ScopeTradingWrite, keydesk.ScopeMarketdataRead},
		Label:  "prod-trading-engine", KeyID: "key-001", APIKey: "bm_key_abc123",
		APISecret: keydesk.SecretString(testSecret),
		CreatedAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
	}
}

const testSecret = `bm_secret_xyz789+/="\`

// interopCase is a contact key kind and the messages built for it.
type interopCase struct {
	kind        crypto.KeyKind
	contact     cryptotest.Key
	signerFpr   string
	signerPub   string
	good        []byte // the armored OpenPGP message of a delivery
	wrongSigner []byte // the same, signed by another key
	tampered    []byte // good with one ciphertext byte changed
}

func newInteropCase(t *testing.T, kind crypto.KeyKind) *interopCase {
	t.Helper()
	p := cryptotest.Partner(t, kind)
	s := cryptotest.Signer(t)
	mallory := cryptotest.Other(t, crypto.Curve25519)
	ms, err := crypto.NewSigner([]byte(mallory.Private), mallory.Passphrase, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	build := func(s *crypto.Signer) []byte {
		ent, err := crypto.BuildKeyDelivery(testDelivery(), p, s, crypto.BuildOptions{})
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		armored, err := crypto.EncryptedPart(ent)
		if err != nil {
			t.Fatalf("the delivery is not PGP/MIME: %v", err)
		}
		return []byte(armored)
	}
	c := &interopCase{kind: kind, contact: cryptotest.Contact(t, kind), signerFpr: s.Fingerprint(), signerPub: s.PublicKey()}
	c.good = build(s)
	c.wrongSigner = build(ms)
	c.tampered = tamper(t, c.good)
	return c
}

// tamper changes one byte in the middle of the encrypted data packet.
func tamper(t testing.TB, armored []byte) []byte {
	t.Helper()
	blk, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := io.ReadAll(blk.Body)
	if err != nil {
		t.Fatal(err)
	}
	bin[len(bin)-len(bin)/4] ^= 0x01 // well past the PKESK, inside the SEIPD packet
	var out bytes.Buffer
	w, err := armor.Encode(&out, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bin); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// checkInner asserts what the technical contact reads once decrypted: the
// protected subject, the text body with the pair, and the JSON attachment
// holding the pair.
func checkInner(t testing.TB, inner []byte, d keydesk.KeyDelivery) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(inner))
	if err != nil {
		t.Fatalf("inner entity: %v", err)
	}
	mt, params, _ := e.Header.ContentType()
	if mt != "multipart/mixed" || params["protected-headers"] != "v1" {
		t.Errorf("inner Content-Type %q %v, want multipart/mixed; protected-headers=v1", mt, params)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(e.Header.Get("Subject"))
	if err != nil || !strings.Contains(subj, d.RequestID) || !strings.Contains(subj, d.Label) {
		t.Errorf("protected Subject %q (%v) does not name the request and label", subj, err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("inner entity is not multipart")
	}
	var text string
	var kf crypto.KeyFile
	var attName string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		switch ct, _, _ := p.Header.ContentType(); ct {
		case "text/plain":
			text = string(b)
		case "application/json":
			_, dp, _ := p.Header.ContentDisposition()
			attName = dp["filename"]
			if err := json.Unmarshal(b, &kf); err != nil {
				t.Errorf("the JSON attachment does not parse: %v\n%s", err, b)
			}
		default:
			t.Errorf("unexpected part %s", ct)
		}
	}
	for _, want := range []string{d.KeyID, d.APIKey, testSecret, d.Label, string(d.Environment), "trading:write", "secrets manager"} {
		if !strings.Contains(text, want) {
			t.Errorf("the text body does not hold %q:\n%s", want, text)
		}
	}
	if want := "buildmarkets-key-" + d.Label + ".json"; attName != want {
		t.Errorf("attachment named %q, want %q", attName, want)
	}
	if kf.APIKey != d.APIKey || kf.APISecret != testSecret || kf.KeyID != d.KeyID || kf.Label != d.Label ||
		kf.Environment != string(d.Environment) || len(kf.Scopes) != len(d.Scopes) || kf.RequestID != d.RequestID {
		t.Errorf("the JSON attachment does not hold the pair: %+v", kf)
	}
}

// TestInterop sends deliveries to a Curve25519 and an RSA-4096 contact key
// and opens them with GnuPG, RNP, Sequoia sq and sqop, as a technical
// contact would. Each must decrypt and verify keydesk's signature, and
// refuse a tampered message and one signed by another key.
func TestInterop(t *testing.T) {
	testenv.Short(t)
	for _, kind := range []crypto.KeyKind{crypto.Curve25519, crypto.RSA4096} {
		t.Run(kind.String(), func(t *testing.T) {
			c := newInteropCase(t, kind)
			t.Run("gpg", func(t *testing.T) { interopGPG(t, c) })
			t.Run("rnp", func(t *testing.T) { interopRNP(t, c) })
			t.Run("sq", func(t *testing.T) { interopSQ(t, c) })
			t.Run("sqop", func(t *testing.T) { interopSQOP(t, c) })
		})
	}
}

func interopGPG(t *testing.T, c *interopCase) {
	g := newGPG(t)
	g.importKey(c.contact.Private, string(c.contact.Passphrase))
	g.importKey(c.signerPub, "")
	dir := t.TempDir()
	decrypt := func(name string, msg []byte) (result, []byte) {
		in := writeTemp(t, dir, name+".asc", msg)
		out := filepath.Join(dir, name+".out")
		r := g.run(nil, "--passphrase", string(c.contact.Passphrase), "--output", out, "--decrypt", in)
		b, _ := os.ReadFile(out)
		return r, b
	}

	r, inner := decrypt("good", c.good)
	st := statusLines(r.stdout)
	if r.err != nil || !hasStatus(st, "DECRYPTION_OKAY") || !hasStatus(st, "GOODMDC") {
		t.Fatalf("gpg did not decrypt: %v", r)
	}
	validsig := false
	for _, l := range st {
		if f := strings.Fields(l); len(f) > 10 && f[0] == "VALIDSIG" && f[len(f)-1] == c.signerFpr {
			validsig = true
		}
	}
	if !validsig {
		t.Fatalf("gpg: no VALIDSIG by keydesk's key %s: %v", c.signerFpr, r)
	}
	checkInner(t, inner, testDelivery())

	r, _ = decrypt("tampered", c.tampered)
	t.Logf("tampered: %v", r)
	st = statusLines(r.stdout)
	if r.err == nil || hasStatus(st, "DECRYPTION_OKAY") || hasStatus(st, "GOODMDC") {
		t.Errorf("gpg accepted a tampered message: %v", r)
	}
	r, _ = decrypt("wrong-signer", c.wrongSigner)
	t.Logf("wrong signer: %v", r)
	st = statusLines(r.stdout)
	if r.err == nil || hasStatus(st, "VALIDSIG") || hasStatus(st, "GOODSIG") {
		t.Errorf("gpg accepted a message signed by another key: %v", r)
	}
	t.Run("packets", func(t *testing.T) {
		in := writeTemp(t, dir, "packets.asc", c.good)
		r := g.run(nil, "--passphrase", string(c.contact.Passphrase), "--list-packets", in)
		if r.err != nil {
			t.Fatalf("gpg --list-packets: %v", r)
		}
		out := r.stdout
		if n := strings.Count(out, ":pubkey enc packet: version 3,"); n != 1 {
			t.Errorf("%d PKESK v3 packets, want exactly one (to the contact only):\n%s", n, out)
		}
		if !strings.Contains(out, ":encrypted data packet:") || !strings.Contains(out, "mdc_method: 2") {
			t.Errorf("no SEIPD v1 packet with MDC:\n%s", out)
		}
		if strings.Contains(out, ":aead encrypted packet:") || strings.Contains(out, "aead") {
			t.Errorf("AEAD in a message for GnuPG 2.2:\n%s", out)
		}
		if !strings.Contains(out, ":signature packet:") || !strings.Contains(out, "\tversion 4, created") {
			t.Errorf("no v4 signature packet:\n%s", out)
		}
		if !strings.Contains(out, ":literal data packet:\n\tmode b") {
			t.Errorf("the literal data is not binary (line endings would be rewritten):\n%s", out)
		}
		if strings.Contains(out, "Version:") || strings.Contains(string(c.good), "Version:") || strings.Contains(string(c.good), "Comment:") {
			t.Errorf("the armor carries Version/Comment headers")
		}
	})
}

func interopRNP(t *testing.T, c *interopCase) {
	rnp := testenv.LookPath(t, "rnp", "rnp")
	rnpkeys := testenv.LookPath(t, "rnpkeys", "rnp")
	home := t.TempDir()
	dir := t.TempDir()
	for i, k := range []string{c.contact.Private, c.signerPub} {
		f := writeTemp(t, dir, "key"+string(rune('0'+i))+".asc", []byte(k))
		if r := run(t, nil, nil, rnpkeys, "--homedir", home, "--import", f); r.err != nil {
			t.Fatalf("rnpkeys --import: %v", r)
		}
	}
	decrypt := func(name string, msg []byte) (result, []byte) {
		in := writeTemp(t, dir, name+".asc", msg)
		out := filepath.Join(dir, name+".out")
		r := run(t, nil, nil, rnp, "--homedir", home, "--notty", "--password", string(c.contact.Passphrase), "--decrypt", in, "--output", out)
		b, _ := os.ReadFile(out)
		return r, b
	}
	// rnp exits 0 even when a signature is bad: only its words count.
	r, inner := decrypt("good", c.good)
	if r.err != nil || !strings.Contains(r.stdout+r.stderr, "Good signature") {
		t.Fatalf("rnp did not decrypt and verify: %v", r)
	}
	if !strings.Contains(strings.ToLower(r.stdout+r.stderr), strings.ToLower(c.signerFpr[24:])) {
		t.Errorf("rnp's good signature is not by keydesk's key %s: %v", c.signerFpr, r)
	}
	checkInner(t, inner, testDelivery())
	r, _ = decrypt("tampered", c.tampered)
	t.Logf("tampered: %v", r)
	if r.err == nil || strings.Contains(r.stdout+r.stderr, "Good signature") {
		t.Errorf("rnp accepted a tampered message: %v", r)
	}
	r, _ = decrypt("wrong-signer", c.wrongSigner)
	t.Logf("wrong signer: %v", r)
	if strings.Contains(r.stdout+r.stderr, "Good signature") {
		t.Errorf("rnp accepted a message signed by another key: %v", r)
	}
}

func interopSQ(t *testing.T, c *interopCase) {
	sq := testenv.LookPath(t, "sq", "sq")
	dir := t.TempDir()
	key := writeTemp(t, dir, "contact.key", []byte(unlocked(t, c.contact.Private, c.contact.Passphrase)))
	cert := writeTemp(t, dir, "keydesk.cert", []byte(c.signerPub))
	decrypt := func(name string, msg []byte) (result, []byte) {
		in := writeTemp(t, dir, name+".asc", msg)
		out := filepath.Join(dir, name+".out")
		r := run(t, nil, nil, sq, "decrypt", "--recipient-key", key, "--signer-cert", cert, "--output", out, in)
		b, _ := os.ReadFile(out)
		return r, b
	}
	r, inner := decrypt("good", c.good)
	if r.err != nil || !strings.Contains(r.stderr, "Good signature") {
		t.Fatalf("sq did not decrypt and verify: %v", r)
	}
	checkInner(t, inner, testDelivery())
	if r, out := decrypt("tampered", c.tampered); r.err == nil || len(out) > 0 {
		t.Errorf("sq accepted a tampered message (%d bytes out): %v", len(out), r)
	}
	if r, out := decrypt("wrong-signer", c.wrongSigner); r.err == nil || len(out) > 0 {
		t.Errorf("sq accepted a message signed by another key (%d bytes out): %v", len(out), r)
	}
}

func interopSQOP(t *testing.T, c *interopCase) {
	sqop := testenv.LookPath(t, "sqop", "sqop")
	dir := t.TempDir()
	key := writeTemp(t, dir, "contact.key", []byte(unlocked(t, c.contact.Private, c.contact.Passphrase)))
	cert := writeTemp(t, dir, "keydesk.cert", []byte(c.signerPub))
	decrypt := func(name string, msg []byte) (result, string) {
		ver := filepath.Join(dir, name+".verifications")
		r := run(t, nil, msg, sqop, "decrypt", "--verify-with", cert, "--verifications-out", ver, key)
		v, _ := os.ReadFile(ver)
		return r, string(v)
	}
	r, ver := decrypt("good", c.good)
	if r.err != nil || !strings.Contains(ver, c.signerFpr) {
		t.Fatalf("sqop did not decrypt and verify (verifications %q): %v", ver, r)
	}
	checkInner(t, []byte(r.stdout), testDelivery())
	if r, ver := decrypt("tampered", c.tampered); r.err == nil || strings.Contains(ver, c.signerFpr) {
		t.Errorf("sqop accepted a tampered message (verifications %q): %v", ver, r)
	}
	if r, ver := decrypt("wrong-signer", c.wrongSigner); r.err == nil || strings.Contains(ver, c.signerFpr) {
		t.Errorf("sqop accepted a message signed by another key (verifications %q): %v", ver, r)
	}
}
