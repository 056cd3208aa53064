#!/bin/sh
# Runs every fuzz target (or those named) for SECONDS each, one job at a time, from the seeds in
# fuzz/corpus/<target>/. New inputs go to a scratch corpus ($KILN_FUZZ_WORK, default a temp dir),
# never into the committed seeds; a crash is saved under fuzz/artifacts/<target>/ and fails the
# run. Prints each target's executions.
#
#   fuzz/run.sh 30                 # CI: 30 s per target
#   fuzz/run.sh 600 user_data      # one target, longer
#
# libFuzzer needs unstable rustc flags (-Zsanitizer): the one stable toolchain here runs them
# with RUSTC_BOOTSTRAP=1.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-$(sed -n 's/^name = "\(.*\)"/\1/p' "$here/Cargo.toml" | grep -v '^kiln-fuzz$')}
PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
# The fuzz crate has its own workspace: build against kiln's own locked dependencies.
cp "$here/../Cargo.lock" "$here/Cargo.lock"
work=${KILN_FUZZ_WORK:-$(mktemp -d)}
export RUSTC_BOOTSTRAP=1
cd "$here"
for t in $targets; do
    cargo fuzz build -O "$t" >/dev/null 2>&1 || cargo fuzz build -O "$t"
done
status=0
for t in $targets; do
    mkdir -p "$work/$t"
    log="$work/$t.log"
    if cargo fuzz run -O "$t" "$work/$t" "corpus/$t" -- -max_total_time="$seconds" \
        -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        echo "fuzz: $t: ${runs:-?} executions in ${seconds}s, $cov, no crash"
    else
        echo "fuzz: $t: FAILED, see $log and fuzz/artifacts/$t/" >&2
        grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 >&2
        status=1
    fi
done
exit $status
