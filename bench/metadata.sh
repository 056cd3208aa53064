#!/bin/bash
# Benchmark: whole-process `kiln env` against the local EC2 emulator (token, facts, tags,
# user-data, env file) and the same requests made by curl (bench/metadata-curl.sh), side by
# side under hyperfine, against two emulators: one that writes each answer in one segment with
# TCP_NODELAY (hyper's way), and one that writes head and body in two segments with Nagle on
# (`--split-segments`, Python http.server's way). Prints the medians and the ratio. Target: kiln
# <= 20 ms against both and no slower than curl. A benchmark, not a test: it prints numbers and
# never fails on them.
#
# `--provider NAME` (any cloud `kiln-testkit metadata` emulates) times `kiln env` alone against
# that cloud's emulator (token, facts, user-data as the cloud serves them); `--provider all`
# does so for every cloud and prints one median a cloud. Scaleway needs root (its user-data is
# asked from a source port below 1024).
# Usage: bench/metadata.sh [--no-build] [--runs N] [--kiln PATH] [--provider NAME|all]
#        (needs hyperfine, and curl for the EC2 comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 runs=300 kiln=target/release/kiln provider=
while (($#)); do
    case $1 in
        --no-build) build=0 ;;
        --runs) runs=$2; shift ;;
        --kiln) kiln=$2; shift ;;
        --provider) provider=$2; shift ;;
        *) echo "usage: $0 [--no-build] [--runs N] [--kiln PATH] [--provider NAME|all]" >&2; exit 2 ;;
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
# start_emulator NAME [FLAGS]: an EC2 emulator; writes kiln's config to $work/NAME/kiln.toml and
# its URL to $work/NAME/url.
start_emulator() {
    local name=$1 url
    shift
    mkdir -p "$work/$name"
    target/release/kiln-testkit metadata --provider ec2 --listen 127.0.0.1:0 --user-data "$work/user-data" \
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
provider = "ec2"
endpoint = "$url"
tags_prefix = "env."
[env]
required = ["APP_SECRET", "DATABASE_URL"]
TOML
    # Both must work before they are timed.
    "$kiln" env --config "$work/$name/kiln.toml" --write-to "$work/$name/kiln" >/dev/null
    bench/metadata-curl.sh "$url" "$work/$name/curl"
    for var in $(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$work/$name/curl/env"); do
        grep -q "^$var=" "$work/$name/kiln/env" || { echo "kiln's env file lacks $var (curl's has it)" >&2; exit 1; }
    done
}
# time_provider NAME: `kiln env` against NAME's emulator, alone; prints its median.
time_provider() {
    local name=$1 url
    mkdir -p "$work/$name"
    target/release/kiln-testkit metadata --provider "$name" --listen 127.0.0.1:0 --user-data "$work/user-data" \
        --tag env.APP_ENV=prod >"$work/$name/emulator.out" &
    emulators+=($!)
    for _ in $(seq 100); do
        grep -q '^listening on ' "$work/$name/emulator.out" && break
        sleep 0.1
    done
    url=$(sed -n 's/^listening on //p' "$work/$name/emulator.out")
    [[ -n $url ]] || { echo "the $name emulator did not start" >&2; exit 1; }
    printf '[metadata]\nprovider = "%s"\nendpoint = "%s"\ntags_prefix = "env."\n[env]\nrequired = ["APP_SECRET", "DATABASE_URL"]\n' \
        "$name" "$url" >"$work/$name/kiln.toml"
    "$kiln" env --config "$work/$name/kiln.toml" --write-to "$work/$name/kiln" >/dev/null
    hyperfine -N --warmup 20 --runs "$runs" --style none --export-json "$work/$name/results.json" \
        -n "kiln env, $name" "$kiln env --config $work/$name/kiln.toml --write-to $work/$name/kiln" >/dev/null
    python3 - "$work/$name/results.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
ms = {k: r[k] * 1000 for k in ("median", "min", "max")}
print(f"{sys.argv[2]:14} median {ms['median']:6.2f} ms  (min {ms['min']:.2f}, max {ms['max']:.2f})")
PY
}
if [[ -n $provider && $provider != ec2-vs-curl ]]; then
    [[ $provider == all ]] && provider="ec2 gce azure openstack digitalocean oracle hetzner scaleway vultr akamai alibaba exoscale upcloud"
    echo "kiln env, $runs runs a cloud (kiln: $kiln; work directory on $(df --output=fstype "$work" | tail -1)):"
    for name in $provider; do
        time_provider "$name"
    done
    exit 0
fi

start_emulator one-segment
start_emulator split --split-segments

commands=()
for name in one-segment split; do
    commands+=(-n "kiln env, $name" "$kiln env --config $work/$name/kiln.toml --write-to $work/$name/kiln")
    commands+=(-n "curl script, $name" "bench/metadata-curl.sh $(<"$work/$name/url") $work/$name/curl")
done
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/results.json" "${commands[@]}"

echo "kiln: $kiln; work directory on $(df --output=fstype "$work" | tail -1)"
python3 - "$work/results.json" <<'PY'
import json, sys
results = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
for name in ("one-segment", "split"):
    kiln, curl = results[f"kiln env, {name}"], results[f"curl script, {name}"]
    print(f"\n{name} emulator:")
    print(f"  median kiln env    {kiln:6.2f} ms   (target <= 20 ms)")
    print(f"  median curl script {curl:6.2f} ms")
    print(f"  ratio kiln/curl    {kiln / curl:6.2f}    (target <= 1)")
PY
