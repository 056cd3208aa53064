#!/bin/sh
# The fleet drill as a benchmark: four kiln instances of the example PHP app, each a host of its
# own (network namespace and address, kiln as PID 1 of a PID namespace), behind one real HAProxy
# (retries 0, so no failure is hidden) under a steady load: roll forward v1 -> v2, roll back,
# a tampered instance, a hard kill (SIGKILL to an instance's PID 1), two instances added under
# load, and `kiln fleet` at every step.
#
# Prints: per roll the total time, the time per replacement, requests sent and failed, the
# slowest request during the roll vs before it; for the hard kill the failed requests with
# retries 0, with retries 3 + redispatch, and with retry-on empty-response too, against HAProxy's
# check interval; each `kiln fleet` verdict and its wall time.
#
# Targets: 0 failed in the rolls, the tamper and the scale-out; kiln fleet right at every step.
# Needs: root, haproxy, nginx, php-fpm8.2 (Debian 12 packages). Extra arguments go to the drill:
#   bench/fleet.sh --instances 4 --scale-out 2 --workers 4 --pause 2 --check-inter 1000 --fall 2
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin kiln --bin kiln-testkit --workspace
exec target/release/kiln-testkit fleet-drill --kiln target/release/kiln \
    --instances 4 --scale-out 2 --workers 4 --pause 2 --warm 200 "$@"
