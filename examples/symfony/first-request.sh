#!/bin/sh
# Measures what a fresh php-fpm costs the Symfony example: the first request (OPcache empty, the
# files compiled once) against the requests after it (OPcache warm, validate_timestamps=0), over
# ROUNDS fresh boots (default 3). Renders the example once into a temporary directory under /run,
# without its [warm] section (which would pay the first request before /readyz), then per round
# boots kiln, waits for /readyz, times GET / with curl, and stops kiln.
#
#   examples/symfony/first-request.sh          # after examples/symfony/run.sh built everything
#
# KILN (default target/release/kiln), ROUNDS (3), LATER (requests after the first, 20),
# KILN_EXAMPLE_HTTP / KILN_EXAMPLE_HEALTH (127.0.0.1:18090 / 127.0.0.1:19190).
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
kiln=${KILN:-$repo/target/release/kiln}
rounds=${ROUNDS:-3}
later=${LATER:-20}
http=${KILN_EXAMPLE_HTTP:-127.0.0.1:18090}
health=${KILN_EXAMPLE_HEALTH:-127.0.0.1:19190}
[ -x "$kiln" ] || { echo "first-request: no kiln at $kiln (cargo build --release --bin kiln)" >&2; exit 1; }
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin"; export PATH ;; esac

dir=$(mktemp -d /run/kiln-first-request.XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM
cd "$repo"
cargo run -q -p testkit --bin kiln-testkit -- example render --app symfony "$dir" --http "$http" --health "$health" >/dev/null
sed -i '/^\[warm\]/,/^$/d' "$dir/kiln.toml"

ms() { curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://$http/" | awk '$1 != 200 { print "HTTP " $1 > "/dev/stderr"; exit 1 } { printf "%.2f\n", $2 * 1000 }'; }

echo "round  first (ms)  later: median  min  max (ms, $later requests)"
i=1
while [ "$i" -le "$rounds" ]; do
    "$kiln" boot --config "$dir/kiln.toml" >"$dir/kiln-$i.log" 2>&1 &
    pid=$!
    until curl -sf "http://$health/readyz" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/kiln-$i.log" >&2; exit 1; }
        sleep 0.05
    done
    first=$(ms)
    rest=$(j=0; while [ "$j" -lt "$later" ]; do ms; j=$((j + 1)); done | sort -n)
    median=$(echo "$rest" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    printf '%5d  %10s  %13s  %s  %s\n' "$i" "$first" "$median" "$(echo "$rest" | head -1)" "$(echo "$rest" | tail -1)"
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
    i=$((i + 1))
done
