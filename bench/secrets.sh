#!/bin/sh
# Secrets at boot: kiln boots with 20 secret references (10 SSM SecureStrings, 10 Secrets Manager
# secrets) against moto on loopback with signature checks on, several times. Prints the `secrets`
# phase of kiln's boot timeline (median, min, max), the API requests it made (kiln status), and
# READY=1 with references vs the same values in plain user-data.
#
# Needs: moto in target/venv (tests/run installs it). Extra arguments go to the bench:
#   bench/secrets.sh --boots 20
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin kiln --bin kiln-testkit --workspace
exec target/release/kiln-testkit secrets-bench --kiln target/release/kiln "$@"
