#!/bin/bash
# Benchmark: whole-process `kiln env` against the local EC2 emulator (token, facts, tags,
# user-data, env file) and the same requests made by curl (bench/metadata-curl.sh), side by
# side under hyperfine, against two emulators: one that writes each answer in one segment with
# TCP_NODELAY (hyper's way), and one that writes head and body in two segments with Nagle on
# (`--split-segments`, Python http.server's way). Then `kiln env` against the split-segment
# emulator of every other cloud (GCE, Azure, OpenStack, DigitalOcean, Oracle, Hetzner, Scaleway,
# Vultr, Akamai, Alibaba, Exoscale, UpCloud; Scaleway needs root: its user-data is asked from a
# source port below 1024). Prints the medians and the
# ratio. Target: kiln <= 3 ms against the split-segment EC2 emulator and no slower than curl; the
# round trips per cloud are counted by tests/metadata_round_trips.rs. A benchmark, not a test: it
# prints numbers and never fails on them. bench/metadata-cloud-init.sh puts cloud-init beside it.
# Usage: bench/metadata.sh [--no-build] [--runs N] [--kiln PATH]      (needs hyperfine and curl)
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 runs=300 kiln=target/release/kiln
while (($#)); do
    case $1 in
        --no-build) build=0 ;;
        --runs) runs=$2; shift ;;
        --kiln) kiln=$2; shift ;;
        *) echo "usage: $0 [--no-build] [--runs N] [--kiln PATH]" >&2; exit 2 ;;
    esac
    shift
done
((build)) && cargo build --release -p kiln --bin kiln -p testkit --bin kiln-testkit
# The env file goes where a boot puts it: state_dir is /run/kiln, a tmpfs, where the two fsyncs
# of the atomic write are free. On a disk they cost ~10-15 ms here (see the note it prints).
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
emulators=()
cleanup() {
    for pid in "${emulators[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

printf 'APP_SECRET=bench-secret\nDATABASE_URL="postgres://app@db.internal/app"\nAPP_DEBUG=0\n' >"$work/user-data"
# start_emulator NAME PROVIDER [FLAGS]: an emulator of PROVIDER; writes kiln's config to
# $work/NAME/kiln.toml and its URL to $work/NAME/url.
start_emulator() {
    local name=$1 provider=$2 url
    shift 2
    mkdir -p "$work/$name"
    target/release/kiln-testkit metadata --provider "$provider" --listen 127.0.0.1:0 --user-data "$work/user-data" \
        --tag env.APP_ENV=prod --tag env.FEATURE_FLAGS=a,b --tag Name=web-1 "$@" >"$work/$name/emulator.out" &
    emulators+=($!)
    for _ in $(seq 100); do
        grep -q '^listening on ' "$work/$name/emulator.out" && break
        sleep 0.1
    done
    url=$(sed -n 's/^listening on //p' "$work/$name/emulator.out")
    [[ -n $url ]] || { echo "the $name emulator did not start" >&2; exit 1; }
    echo "$url" >"$work/$name/url"
    cat >"$work/$name/kiln.toml" <<TOML
[metadata]
provider = "$provider"
endpoint = "$url"
tags_prefix = "env."
[env]
required = ["APP_SECRET", "DATABASE_URL"]
TOML
    # Both must work before they are timed.
    "$kiln" env --config "$work/$name/kiln.toml" --write-to "$work/$name/kiln" >/dev/null
    [[ $provider == ec2 ]] || return 0
    bench/metadata-curl.sh "$url" "$work/$name/curl"
    for var in $(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$work/$name/curl/env"); do
        grep -q "^$var=" "$work/$name/kiln/env" || { echo "kiln's env file lacks $var (curl's has it)" >&2; exit 1; }
    done
}
start_emulator one-segment ec2
start_emulator split ec2 --split-segments
clouds=(gce azure openstack digitalocean oracle hetzner scaleway vultr akamai alibaba exoscale upcloud)
for cloud in "${clouds[@]}"; do
    start_emulator "$cloud" "$cloud" --split-segments
done

commands=()
for name in one-segment split; do
    commands+=(-n "kiln env, $name" "$kiln env --config $work/$name/kiln.toml --write-to $work/$name/kiln")
    commands+=(-n "curl script, $name" "bench/metadata-curl.sh $(<"$work/$name/url") $work/$name/curl")
done
for cloud in "${clouds[@]}"; do
    commands+=(-n "kiln env, $cloud split" "$kiln env --config $work/$cloud/kiln.toml --write-to $work/$cloud/kiln")
done
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/results.json" "${commands[@]}"

echo "kiln: $kiln; work directory on $(df --output=fstype "$work" | tail -1)"
python3 - "$work/results.json" "${clouds[@]}" <<'PY'
import json, sys
results = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
for name in ("one-segment", "split"):
    kiln, curl = results[f"kiln env, {name}"], results[f"curl script, {name}"]
    print(f"\nec2, {name} emulator:")
    print(f"  median kiln env    {kiln:6.2f} ms   (target <= 3 ms, split)")
    print(f"  median curl script {curl:6.2f} ms")
    print(f"  ratio kiln/curl    {kiln / curl:6.2f}    (target <= 1)")
print("\nother clouds, split-segment emulators:")
for cloud in sys.argv[2:]:
    print(f"  median kiln env, {cloud:12} {results[f'kiln env, {cloud} split']:6.2f} ms")
PY
