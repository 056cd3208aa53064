#!/bin/bash
# Measures what a service flooding its output costs kiln (issue 10 §2): the example app plus a
# service running `yes` (stdout) and one running `yes >&2` (stderr), for 10 s. Prints kiln's CPU
# (user + system, as a share of one core), its RSS, the flooders' CPU, and what `kiln status`
# says about their dropped lines. A benchmark, not a test: it prints numbers and never fails on
# them.
# Usage: bench/output_flood.sh [--bin PATH] [--seconds N]   (run as root)
#   --bin defaults to the static release binary (packaging/build-static.sh), built if missing.
. "$(dirname "$0")/lib.sh"
bench_args "$@"
bench_binaries
bench_example example
cat >>"$config" <<'TOML'

[[service]]
name = "flood-out"
command = ["yes", "a line of a service that floods its stdout"]

[[service]]
name = "flood-err"
command = ["sh", "-c", "exec yes 'a line of a service that floods its stderr' >&2"]
TOML
bench_boot
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)
pids_of() { "$bin" status --json --socket "$socket" | python3 -c "import json,sys; print(next(u['pid'] for u in json.load(sys.stdin)['services'] if u['unit']=='$1'))"; }
out=$(pids_of flood-out) err=$(pids_of flood-err)
sleep 1
k0=$(ticks "$kiln") o0=$(ticks "$out") e0=$(ticks "$err") t0=$(date +%s%N)
lines0=$(wc -l <"$work/kiln.log")
sleep "$seconds"
k1=$(ticks "$kiln") o1=$(ticks "$out") e1=$(ticks "$err") t1=$(date +%s%N)
lines1=$(wc -l <"$work/kiln.log")
share() { awk -v d="$1" -v hz="$hz" -v ns="$((t1 - t0))" 'BEGIN {printf "%.1f %%", 100 * d / hz / (ns / 1e9)}'; }
echo "kiln $("$bin" --version) ($bin), $seconds s of two flooding services"
echo "kiln CPU:        $(share $((k1 - k0))) of one core"
echo "yes (stdout):    $(share $((o1 - o0)))"
echo "yes (stderr):    $(share $((e1 - e0)))"
echo "kiln RSS:        $(awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$kiln/status")"
echo "lines logged:    $(((lines1 - lines0) / seconds)) a second"
"$bin" status --json --socket "$socket" | python3 -c '
import json, sys
for u in json.load(sys.stdin)["services"]:
    if u["unit"].startswith("flood"):
        dropped = u.get("dropped_lines", "(not counted)")
        print("{}: {} lines dropped, last stderr line {}".format(u["unit"], dropped, u["stderr_tail"][-1:]))'
