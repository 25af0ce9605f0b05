package cryptotest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/buildmarkets/keydesk"
)

// Unusable kinds of contact key: each loads as the pinned key (its file is
// the one partners.yaml names) and is refused by the full contact-key check.
const (
	UnusableRevoked  = "revoked"   // the primary key is revoked
	UnusableSignOnly = "sign-only" // no encryption subkey
	UnusableRSA1024  = "rsa-1024"  // too weak to encrypt to
)

// UnusablePartner returns a partner (ID acme) whose technical contact holds
// a freshly made key of the unusable kind named.
func UnusablePartner(t testing.TB, kind string) *keydesk.Partner {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	if kind == UnusableRSA1024 {
		cfg = &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024}
	}
	e, err := openpgp.NewEntity("Acme Security Team", "", "sec@acme.example", cfg)
	if err != nil {
		t.Fatalf("cryptotest: generate %s key: %v", kind, err)
	}
	switch kind {
	case UnusableRevoked:
		if err := e.RevokeKey(packet.KeyCompromised, "laptop stolen", nil); err != nil {
			t.Fatalf("cryptotest: revoke: %v", err)
		}
	case UnusableSignOnly:
		e.Subkeys = nil
	case UnusableRSA1024:
	default:
		t.Fatalf("cryptotest: unknown unusable kind %q", kind)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatalf("cryptotest: serialize %s key: %v", kind, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &keydesk.Partner{
		ID: "acme", Name: "Acme Capital", Requesters: []string{"*@acme.example"},
		TechnicalContact: keydesk.TechnicalContact{
			Email: "sec@acme.example", KeyFile: "keys/acme-" + kind + ".asc",
			Fingerprint: strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint)), ArmoredKey: b.String(),
		},
	}
}
