#!/usr/bin/env bash
# `kiln seal` and `kiln verify` against `find | xargs sha256sum` over a tree shaped like a Symfony
# release (bench/seal_tree.py: ~20,000 small files, a few of tens of MB, ~350 MB), warm page
# cache, whole processes, with hyperfine. Prints both and the ratio. Target: >= 3x faster.
#
# Usage: bench/seal.sh [WORKDIR]   (default /tmp/kiln-bench-seal; the tree is kept for reruns)
# Env: RUNS (default 10).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${1:-/tmp/kiln-bench-seal}
tree=$work/tree
runs=${RUNS:-10}

command -v hyperfine >/dev/null || apt-get install -y --no-install-recommends hyperfine >/dev/null
(cd "$repo" && cargo build --release --quiet --bin kiln)
kiln=$repo/target/release/kiln

[ -d "$tree" ] || python3 "$here/seal_tree.py" "$tree"
config=$work/kiln.toml
cat >"$config" <<TOML
[seal]
paths = ["$tree"]
exclude = ["$tree/var/cache"]
manifest = "$work/seal"
TOML

files=$(find "$tree" -type f | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
echo "tree: $tree: $files files, $((bytes / 1000000)) MB; $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# Warm the page cache, and make sure the manifest exists and matches for verify.
find "$tree" -type f -print0 | xargs -0 cat >/dev/null
"$kiln" seal --config "$config" >/dev/null
"$kiln" verify --config "$config" >/dev/null

json=$work/hyperfine.json
hyperfine --warmup 2 --runs "$runs" --export-json "$json" \
  -n "kiln seal" "$kiln seal --config $config" \
  -n "kiln verify" "$kiln verify --config $config" \
  -n "find | xargs sha256sum" "find $tree -type f -print0 | xargs -0 sha256sum >/dev/null"

python3 - "$json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["find | xargs sha256sum"]["mean"]
print()
print(f"{'command':<24}{'mean':>10}{'stddev':>10}{'vs sha256sum':>15}")
for name in ("kiln seal", "kiln verify", "find | xargs sha256sum"):
    m, s = r[name]["mean"], r[name]["stddev"] or 0.0
    print(f"{name:<24}{m * 1000:>8.0f}ms{s * 1000:>8.0f}ms{base / m:>14.1f}x")
PY
