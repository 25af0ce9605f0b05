package crypto_test

import (
	"testing"
	"time"

	"github.com/buildmarkets/keydesk/crypto"
	"github.com/buildmarkets/keydesk/crypto/cryptotest"
	"github.com/buildmarkets/keydesk/templates"
)

// BenchmarkBuildKeyDelivery measures complete PGP/MIME key deliveries built
// in process: key check, template, JSON, sign, encrypt, armor, MIME.
// bench/crypto.sh compares its rate with gpg run once per message.
func BenchmarkBuildKeyDelivery(b *testing.B) {
	for _, kind := range []crypto.KeyKind{crypto.Curve25519, crypto.RSA4096} {
		b.Run(kind.String(), func(b *testing.B) {
			p := cryptotest.Partner(b, kind)
			s := cryptotest.Signer(b)
			opt := crypto.BuildOptions{Templates: templates.MustLoadEmbedded()}
			d := testDelivery()
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if _, err := crypto.BuildKeyDelivery(d, p, s, opt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}
