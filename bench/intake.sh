#!/bin/sh
# bench/intake.sh: the intake path against a real Dovecot on loopback
# (Debian package dovecot-imapd; started privately, the system service is
# not used):
#   - throughput of a backlog of N request emails (fetch, parse,
#     authenticate, store, enqueue the acknowledgement, move) as a ratio to
#     a bare go-imap fetch of the same mailbox (goal >= 0.5);
#   - peak RSS of a poller process taking in a backlog with 20 MB
#     attachments (goal < 150 MB);
#   - APPEND-to-queued latency with IDLE (goal p50 < 0.5 s).
#
# Usage: bench/intake.sh                 (N=10000 BIG=5 LATENCY_N=50)
#        N=500 BIG=2 LATENCY_N=20 bench/intake.sh   (a quick run)
set -eu
cd "$(dirname "$0")/.."
exec go run ./bench/intake -n "${N:-10000}" -big "${BIG:-5}" -small "${SMALL:-200}" -latency-n "${LATENCY_N:-50}"
