package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buildmarkets/keydesk"
	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/internal/testenv"
	"github.com/buildmarkets/keydesk/queue"
)

// A key delivery built by the crypto package goes all the way through the
// outbox, SMTP and the notice; the API secret is then nowhere: not in the
// NATS store's files, the logs, the audit trail or the mail that left in
// clear (the notice, and the key delivery's outer layer). It is in the
// encrypted message, for the contact's key alone.
func TestSecretIsNowhere(t *testing.T) {
	e := newEnv(t)
	p := cryptotest.Partner(t, crypto.Curve25519)
	e.reg = &keydesk.Registry{Partners: []*keydesk.Partner{p}}
	signer := cryptotest.Signer(t)
	contact := cryptotest.Contact(t, crypto.Curve25519)

	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	secretValue := "bm_secret_" + hex.EncodeToString(raw)
	r := e.generated("s\x00secret", "att-1")
	entity, err := crypto.BuildKeyDelivery(keydesk.KeyDelivery{
		RequestID: r.ID, PartnerName: p.Name, Environment: r.Environment, Scopes: r.Scopes, Label: r.Label,
		KeyID: r.KeyID, APIKey: r.APIKey, APISecret: keydesk.SecretString(secretValue), CreatedAt: time.Now(),
	}, p, signer, crypto.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := keyDelivery(r, p.TechnicalContact.Email)
	o.Entity = entity
	e.enqueue(o)
	e.start(e.opts)
	e.waitState(r.ID, keydesk.StateDelivered)
	testenv.Eventually(t, 20*time.Second, "the notice", func() bool { return len(e.mail.To(requesterAddr)) == 1 })

	keys := e.mail.To(p.TechnicalContact.Email)
	if len(keys) != 1 {
		t.Fatalf("%d key messages", len(keys))
	}
	// The test can fail: the secret is really in what the contact decrypts.
	m := parse(t, keys[0])
	var ent bytes.Buffer
	for k, v := range m.Header {
		if len(k) > 8 && k[:8] == "Content-" {
			ent.WriteString(k + ": " + v[0] + "\r\n")
		}
	}
	ent.WriteString("\r\n")
	ent.WriteString(body(t, m))
	plain, err := crypto.DecryptAndVerify(ent.Bytes(), contact.Private, contact.Passphrase, cryptotest.SigningKey(t).Public)
	if err != nil {
		t.Fatalf("the contact cannot decrypt what arrived: %v", err)
	}
	if !bytes.Contains(plain, []byte(secretValue)) {
		t.Fatal("the decrypted delivery does not hold the secret: this test would prove nothing")
	}

	secret := []byte(secretValue)
	for _, r := range e.mail.Messages() {
		if bytes.Contains(r.Data, secret) {
			t.Errorf("the secret left in clear in mail to %v", r.To)
		}
	}
	if bytes.Contains([]byte(e.logs.String()), secret) {
		t.Error("the secret is in the logs")
	}
	var mx bytes.Buffer
	e.metrics.Write(&mx)
	if bytes.Contains(mx.Bytes(), secret) {
		t.Error("the secret is in the metrics")
	}
	var audit []queue.AuditEntry
	testenv.Eventually(t, 20*time.Second, "the delivered event in the audit trail", func() bool {
		audit, _ = e.q.Audit(context.Background(), queue.AuditQuery{})
		for _, a := range audit {
			if a.To == keydesk.StateDelivered {
				return true
			}
		}
		return false
	})
	for _, a := range audit {
		b, _ := json.Marshal(a)
		if bytes.Contains(b, secret) || (a.Request != nil && bytes.Contains(mustJSON(t, a.Request), secret)) {
			t.Errorf("the secret is in audit entry %d", a.Seq)
		}
	}
	// The store, read as bytes, after the server has written everything.
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(filepath.Join(e.dataDir, "nats"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, secret) {
			t.Errorf("the secret is in the NATS store: %s", path)
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walked %d store files: %v", files, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
