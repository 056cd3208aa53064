#!/usr/bin/env bash
# `kiln verify` (and `kiln seal`) beside what a user would otherwise run over the same tree: b3sum
# (Debian's, the same hash) and sha256sum through `find | xargs`, and `cat` of every file (the
# floor: reading alone), with the page cache warm and cold (dropped before each run). The tree is
# shaped like a Symfony release (bench/seal_tree.py: ~20,000 small files and a few of tens of MB,
# ~350 MB). Then the cost split in two, for budgeting a boot: the small files alone (ms per 1,000
# files) and the large files alone (ms per 100 MB). Whole processes, with hyperfine.
#
# Usage: bench/seal.sh [WORKDIR]   (as root, for the cold runs; default /tmp/kiln-bench-seal; the
#                                   tree is kept for reruns)
# Env: RUNS (default 10 warm, a third of it cold).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${1:-/tmp/kiln-bench-seal}
tree=$work/tree
runs=${RUNS:-10}
cold_runs=$(((runs + 2) / 3))

for tool in hyperfine b3sum; do
    command -v "$tool" >/dev/null || apt-get install -y --no-install-recommends "$tool" >/dev/null
done
(cd "$repo" && cargo build --release --quiet --bin kiln)
kiln=$repo/target/release/kiln

[ -d "$tree" ] || python3 "$here/seal_tree.py" "$tree"
large=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import seal_tree; print(" ".join(p for p, _ in seal_tree.LARGE))' "$here")

# config NAME PATHS EXCLUDES: a [seal] config sealing PATHS (quoted TOML strings) in $work/NAME.
config() {
    cat >"$work/$1.toml" <<TOML
[seal]
paths = [$2]
exclude = [$3]
manifest = "$work/$1.seal"
TOML
}
quoted() { local p out=""; for p in "$@"; do out+="\"$p\", "; done; printf '%s' "${out%, }"; }
large_paths=()
for p in $large; do large_paths+=("$tree/$p"); done
config whole "$(quoted "$tree")" "$(quoted "$tree/var/cache")"
config small "$(quoted "$tree")" "$(quoted "$tree/var/cache" "${large_paths[@]}")"
config large "$(quoted "${large_paths[@]}")" ""

count() { find "$@" -type f | wc -l; }
bytes() { find "$@" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
files=$(count "$tree") size=$(bytes "$tree")
echo "tree: $tree: $files files, $((size / 1000000)) MB; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"

for name in whole small large; do
    "$kiln" seal --config "$work/$name.toml" >/dev/null
    "$kiln" verify --config "$work/$name.toml" >/dev/null
done
all_files="find $tree -type f -not -path '$tree/var/cache/*' -print0"
drop='sync; echo 3 >/proc/sys/vm/drop_caches'

json=$work/warm.json
find "$tree" -type f -print0 | xargs -0 cat >/dev/null
hyperfine --warmup 2 --runs "$runs" --export-json "$json" \
    -n "kiln verify" "$kiln verify --config $work/whole.toml" \
    -n "kiln seal" "$kiln seal --config $work/whole.toml" \
    -n "b3sum" "$all_files | xargs -0 b3sum >/dev/null" \
    -n "sha256sum" "$all_files | xargs -0 sha256sum >/dev/null" \
    -n "cat" "$all_files | xargs -0 cat >/dev/null" \
    -n "verify: small files" "$kiln verify --config $work/small.toml" \
    -n "verify: large files" "$kiln verify --config $work/large.toml" >/dev/null
cold=$work/cold.json
if [ -w /proc/sys/vm/drop_caches ]; then
    hyperfine --runs "$cold_runs" --prepare "$drop" --export-json "$cold" \
        -n "kiln verify" "$kiln verify --config $work/whole.toml" \
        -n "b3sum" "$all_files | xargs -0 b3sum >/dev/null" \
        -n "sha256sum" "$all_files | xargs -0 sha256sum >/dev/null" \
        -n "cat" "$all_files | xargs -0 cat >/dev/null" >/dev/null
else
    echo "(not root: no cold runs)"
    echo '{"results": []}' >"$cold"
fi

small_files=$(($(count "$tree" -not -path "$tree/var/cache/*") - ${#large_paths[@]}))
large_bytes=$(stat -c %s "${large_paths[@]}" | awk '{s += $1} END {print s}')
python3 - "$json" "$cold" "$small_files" "$large_bytes" <<'PY'
import json, sys
warm = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
cold = {x["command"]: x for x in json.load(open(sys.argv[2]))["results"]}
small_files, large_bytes = int(sys.argv[3]), int(sys.argv[4])
print(f"\n{'':<22}{'warm':>10}{'':>9}{'cold':>10}{'':>9}")
print(f"{'command':<22}{'mean':>10}{'vs kiln':>9}{'mean':>10}{'vs kiln':>9}")
for name in ("kiln verify", "kiln seal", "b3sum", "sha256sum", "cat"):
    row = f"{name:<22}"
    for runs in (warm, cold):
        if name in runs:
            mean, kiln = runs[name]["mean"], runs["kiln verify"]["mean"]
            row += f"{mean * 1000:>8.0f}ms{mean / kiln:>8.1f}x"
        else:
            row += f"{'':>19}"
    print(row)
per_files = warm["verify: small files"]["mean"] * 1000 / (small_files / 1000)
per_bytes = warm["verify: large files"]["mean"] * 1000 / (large_bytes / 100e6)
print(f"\nverify, warm: {per_files:.1f} ms per 1,000 small files ({small_files} files), "
      f"{per_bytes:.1f} ms per 100 MB of large files ({large_bytes / 1e6:.0f} MB)")
PY
