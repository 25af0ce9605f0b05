#!/bin/sh
# bench/batch.sh: wall time of one batch of N approved requests against the
# API simulator (latency per call, rate limit enforced with 429), on a real
# embedded JetStream with real OpenPGP sealing, as a ratio to N/rate: the
# least time any client that respects the limit needs. Goal: ratio <= 1.10,
# and 0 duplicates (no request with two live keys).
#
# Usage: bench/batch.sh          (N=1000 RATE=50 LATENCY=20ms)
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/batch -n "${N:-1000}" -rate "${RATE:-50}" -latency "${LATENCY:-20ms}" -concurrency "${CONCURRENCY:-8}"
