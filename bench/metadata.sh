#!/bin/bash
# Benchmark: whole-process `kiln env` against the local EC2 emulator (token, facts, tags,
# user-data, env file) and the same requests made by curl (bench/metadata-curl.sh), side by
# side under hyperfine. Prints both medians and the ratio. Target: kiln <= 20 ms and no slower
# than curl. A benchmark, not a test: it prints numbers and never fails on them.
# Usage: bench/metadata.sh [--no-build] [--runs N]      (needs hyperfine and curl)
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 runs=300
while (($#)); do
    case $1 in
        --no-build) build=0 ;;
        --runs) runs=$2; shift ;;
        *) echo "usage: $0 [--no-build] [--runs N]" >&2; exit 2 ;;
    esac
    shift
done
((build)) && cargo build --release -p kiln --bin kiln -p testkit --bin kiln-testkit
# The env file goes where a boot puts it: state_dir is /run/kiln, a tmpfs, where the two fsyncs
# of the atomic write are free. On a disk they cost ~10-15 ms here (see the note it prints).
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
emulator=
cleanup() {
    [[ -n $emulator ]] && kill "$emulator" 2>/dev/null && wait "$emulator" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

printf 'APP_SECRET=bench-secret\nDATABASE_URL="postgres://app@db.internal/app"\nAPP_DEBUG=0\n' >"$work/user-data"
target/release/kiln-testkit metadata --provider ec2 --listen 127.0.0.1:0 --user-data "$work/user-data" \
    --tag env.APP_ENV=prod --tag env.FEATURE_FLAGS=a,b --tag Name=web-1 >"$work/emulator.out" &
emulator=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$work/emulator.out" && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/emulator.out")
[[ -n $url ]] || { echo "the emulator did not start" >&2; exit 1; }

cat >"$work/kiln.toml" <<TOML
[metadata]
provider = "ec2"
endpoint = "$url"
tags_prefix = "env."
[env]
required = ["APP_SECRET", "DATABASE_URL"]
TOML

# Both must work before they are timed.
target/release/kiln env --config "$work/kiln.toml" --write-to "$work/kiln" >/dev/null
bench/metadata-curl.sh "$url" "$work/curl"
for name in $(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$work/curl/env"); do
    grep -q "^$name=" "$work/kiln/env" || { echo "kiln's env file lacks $name (curl's has it)" >&2; exit 1; }
done

hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/results.json" \
    -n "kiln env" "target/release/kiln env --config $work/kiln.toml --write-to $work/kiln" \
    -n "curl script" "bench/metadata-curl.sh $url $work/curl"

echo "work directory on $(df --output=fstype "$work" | tail -1)"
python3 - "$work/results.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
kiln, curl = results["kiln env"]["median"] * 1000, results["curl script"]["median"] * 1000
print(f"\nmedian kiln env    {kiln:6.2f} ms   (target <= 20 ms)")
print(f"median curl script {curl:6.2f} ms")
print(f"ratio kiln/curl    {kiln / curl:6.2f}    (target <= 1)")
PY
