#!/bin/sh
# The zero-loss drill as a benchmark: two kiln instances of the example PHP app behind one real
# HAProxy (retries 0, so no failure is hidden), a steady load through HAProxy, SIGTERM to one kiln.
# Prints: requests sent, requests failed, drain duration (SIGTERM -> server gone from the backend,
# and kiln's own figure), and the time from READY=1 to the server UP in HAProxy.
#
# Targets: 0 failed; drain <= drain_timeout; READY=1 -> UP within one HAProxy check interval.
# Needs: haproxy, nginx, php-fpm8.2 (Debian 12 packages). Extra arguments go to the drill, e.g.
#   bench/zero_loss.sh --workers 8 --pause 1 --warm 500 --drain-timeout 30000
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin kiln --bin kiln-testkit --workspace
exec target/release/kiln-testkit zero-loss --kiln target/release/kiln "$@"
