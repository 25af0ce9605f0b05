#!/bin/sh
# bench/crypto.sh: PGP/MIME key deliveries built per second by keydesk in
# process (the Go benchmark BenchmarkBuildKeyDelivery), as a ratio to gpg
# run once per message with --encrypt --sign (what mail gateways do), to the
# same kind of key (Ed25519 signer, Curve25519 contact) and a plaintext of
# the same size. Goal: ratio >= 20.
#
# Usage: bench/crypto.sh            (N=200 gpg runs, BENCHTIME=3s)
# Needs: go, gpg (Debian gnupg).
set -eu

N=${N:-200}
BENCHTIME=${BENCHTIME:-3s}
cd "$(dirname "$0")/.."

command -v gpg >/dev/null || { echo "bench/crypto.sh: gpg is not installed (apt-get install gnupg)" >&2; exit 2; }

echo "== keydesk in process (go test -bench BuildKeyDelivery/curve25519, $BENCHTIME)"
out=$(go test -run '^$' -bench 'BuildKeyDelivery/curve25519$' -benchtime "$BENCHTIME" ./crypto/)
echo "$out" | grep Benchmark
go_rate=$(echo "$out" | awk '/^BenchmarkBuildKeyDelivery\/curve25519/ { for (i = 1; i < NF; i++) if ($(i+1) == "deliveries/s") print $i }')
[ -n "$go_rate" ] || { echo "bench/crypto.sh: no rate in the benchmark output" >&2; exit 1; }

# A short GNUPGHOME: gpg-agent's socket path must fit in a sockaddr_un.
home=$(mktemp -d /tmp/kdbench.XXXXXX)
trap 'gpgconf --homedir "$home" --kill all 2>/dev/null || true; rm -rf "$home"' EXIT INT TERM
chmod 700 "$home"
g() { gpg --homedir "$home" --batch --no-tty --pinentry-mode loopback --passphrase '' "$@"; }
g --quick-gen-key 'Buildmarkets keydesk bench <keydesk@bench.example>' ed25519 sign,cert never 2>/dev/null
g --quick-gen-key 'Contact bench <sec@bench.example>' ed25519 sign,cert never 2>/dev/null
contact=$(g --with-colons --list-keys sec@bench.example 2>/dev/null | awk -F: '/^fpr/ { print $10; exit }')
g --quick-add-key "$contact" cv25519 encr never 2>/dev/null

# The plaintext: a real decrypted delivery (the golden inner entity).
plain=crypto/testdata/key-delivery-production.inner.golden
enc() {
	g --trust-model always --armor --local-user keydesk@bench.example --recipient "$contact" \
		--encrypt --sign --output - "$plain" >/dev/null 2>&1
}
enc # start gpg-agent before timing

echo "== gpg --encrypt --sign, once per message, $N messages"
start=$(date +%s.%N)
i=0
while [ "$i" -lt "$N" ]; do
	enc
	i=$((i + 1))
done
end=$(date +%s.%N)

awk -v n="$N" -v s="$start" -v e="$end" -v go="$go_rate" 'BEGIN {
	gpg = n / (e - s)
	ratio = go / gpg
	printf "keydesk (in process): %10.1f deliveries/s\n", go
	printf "gpg (per message):    %10.1f messages/s\n", gpg
	printf "ratio:                %10.1f  (goal >= 20: %s)\n", ratio, (ratio >= 20 ? "met" : "NOT met")
}'
