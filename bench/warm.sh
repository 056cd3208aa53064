#!/bin/sh
# Warm before traffic: a new instance of the Symfony example (OPcache on, validate_timestamps=0)
# joins a real HAProxy under a steady load, 3 rounds with [warm] and 3 without, alternating.
# Prints, per round and as medians: p50/p99/max of the new instance's first 200 requests through
# HAProxy, and READY=1 after kiln's start (kiln's timeline) with the warm-up phase's share.
#
# Needs: haproxy, nginx, php-fpm8.2 and Debian's Symfony 5.4 packages (examples/symfony/run.sh
# installs them). Extra arguments go to the bench:
#   bench/warm.sh --rounds 5 --first 200 --workers 4 --pause 5
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin kiln --bin kiln-testkit --workspace
exec target/release/kiln-testkit warm-bench --kiln target/release/kiln "$@"
