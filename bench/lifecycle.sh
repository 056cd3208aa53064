#!/bin/sh
# Leaving for a platform notice, timed: two kiln instances of the example PHP app behind one real
# HAProxy (retries 0, so no failure is hidden) under a steady load, each with its own metadata
# emulator; the platform announces that one goes away (EC2 spot interruption, Azure Preempt, GCE
# preemption) and its kiln leaves by itself. Several runs per cloud.
#
# Prints, per cloud: median and max from the notice appearing in the metadata service to the
# instance out of the load balancer (its server gone from HAProxy's backend) and to every service
# stopped (queue workers finish a 1 s job in hand), the requests sent and failed, and the metadata
# requests a minute an idle kiln with [lifecycle] makes. poll_interval is kiln's default (5 s)
# unless given; GCE is long-polled and does not depend on it.
#
# Needs: haproxy, nginx, php-fpm8.2 (Debian 12 packages). Extra arguments go to the bench:
#   bench/lifecycle.sh --runs 9 --poll-interval 1000 --idle-seconds 60 --clouds ec2,azure,gce
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin kiln --bin kiln-testkit --workspace
exec target/release/kiln-testkit lifecycle-bench --kiln target/release/kiln "$@"
