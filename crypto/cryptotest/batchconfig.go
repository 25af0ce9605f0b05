package cryptotest

import (
	"fmt"
	"testing"

	"github.com/buildmarkets/keydesk/crypto"
)

// BatchRoleConfig writes, into dir, what `keydesk serve --roles batch`
// needs for partner acme's sandbox: the contact and signing keys, a
// partners.yaml with the given keys:manage credentials, and a keydesk.yaml
// on the NATS server at natsURL and the API at apiURL, with a schedule that
// never fires (batches are asked for). It returns keydesk.yaml's path.
func BatchRoleConfig(t testing.TB, dir, natsURL, apiURL, apiKey, apiSecret string) string {
	t.Helper()
	contact := Contact(t, crypto.Curve25519)
	WriteFile(t, dir, "acme.asc", contact.Public)
	WriteFile(t, dir, "signing.asc", SigningKey(t).Private)
	WriteFile(t, dir, "partners.yaml", fmt.Sprintf(`partners:
  - id: acme
    name: Acme Capital
    requesters: ["*@acme.example"]
    technical_contact: {email: sec@acme.example, pgp_key_file: acme.asc, fingerprint: "%s"}
    environments:
      sandbox: {api_key: %s, api_secret: %s}
`, contact.Fingerprint, apiKey, apiSecret))
	return WriteFile(t, dir, "keydesk.yaml", fmt.Sprintf(`data_dir: ./data
nats: {url: "%s"}
api:
  sandbox: {base_url: "%s", timeout: 5s, rate_limit: 100}
signing_key: {file: signing.asc, passphrase: "%s"}
batch: {schedule: "@every 1000h", concurrency: 1, lease_ttl: 1s}
review: {listen: "127.0.0.1:0"}
smtp: {support_address: support@buildmarkets.example}
log: {level: debug, format: json}
partners_file: partners.yaml
`, natsURL, apiURL, Passphrase))
}
