#!/bin/bash
# Measures /metrics (issue 14): for the example app (4 units), the example with 46 more units
# (50 in all), and the example with its php-fpm pool's status page read at each scrape
# ([service.phpfpm_status], issue 21),
#   1. the time kiln takes to answer a scrape (curl's time to first byte minus its connect, over
#      200 scrapes on fresh connections, as Prometheus makes them) and the bytes of one scrape in
#      each format;
#   2. /readyz requests per second under `wrk -t1 -c16`, alone and with a second wrk scraping
#      /metrics flat out at the same time (far harsher than a Prometheus at 15 s), and with one
#      scrape a second.
# A benchmark, not a test: it prints numbers and never fails on them. Loopback only.
# Usage: bench/metrics.sh [--bin PATH] [--seconds N]    (run as root; needs wrk, curl, python3)
#   --bin defaults to the static release binary (packaging/build-static.sh), built if missing.
. "$(dirname "$0")/lib.sh"
bench_args "$@"
bench_binaries

ms() { awk '{printf "%.2f ms", $1 * 1000}'; }
quantiles() {  # seconds on stdin, one a line: "median M, p90 P, max X"
    sort -n | awk '{v[NR]=$1} END {printf "median %.2f ms, p90 %.2f ms, max %.2f ms", v[int(NR/2)+1]*1000, v[int(NR*0.9)]*1000, v[NR]*1000}'
}
rps() { awk '/^Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {printf "%.0f req/s, p99 %s", r, p}' "$1"; }

# boot NAME EXTRA_UNITS [pool]: renders the example into $work/NAME with EXTRA_UNITS idle units
# more (and with `pool`, php-fpm's status page read at each scrape), /metrics on a port of its
# own, and boots it.
boot() {
    local dir=$work/$1
    health=127.0.0.1:$(port) metrics=127.0.0.1:$(port)
    target/release/kiln-testkit example render "$dir" --http "127.0.0.1:$(port)" --health "$health" >/dev/null
    if [[ ${3:-} == pool ]]; then
        python3 - "$dir" <<'PY'
import sys
path = sys.argv[1] + "/kiln.toml"
text = open(path).read()
page = '[service.phpfpm_status]\nfastcgi = "unix:%s/run/php-fpm.sock"\n\n' % sys.argv[1]
open(path, "w").write(text.replace("[service.startup]", page + "[service.startup]", 1))
PY
    fi
    if (($2 > 0)); then
        printf '\n[[service]]\nname = "idle"\ncommand = ["sleep", "3600"]\nreplicas = %d\nready_after = "100ms"\n' "$2" >>"$dir/kiln.toml"
    fi
    printf '\n[metrics]\nlisten = "%s"\n' "$metrics" >>"$dir/kiln.toml"
    "$bin" boot --config "$dir/kiln.toml" >"$dir/kiln.log" 2>&1 &
    kiln=$!
    for _ in $(seq 600); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$health/readyz") == 200 ]] && return 0
        sleep 0.1
    done
    echo "kiln is not ready after 60 s; its log:" >&2
    tail -20 "$dir/kiln.log" >&2
    exit 1
}

measure() {
    local name=$1 extra=$2
    boot "$name" "$extra" "${3:-}"
    sleep 2
    local units
    units=$(curl -s "http://$metrics/metrics" | grep -c '^kiln_unit_ready{')
    echo "== $name: $units units"
    if [[ ${3:-} == pool ]]; then
        echo "pool read at each scrape: $(curl -s "http://$metrics/metrics" | grep '^kiln_phpfpm_up')"
    fi
    local text openmetrics
    text=$(curl -s -o /dev/null -w '%{size_download}' "http://$metrics/metrics")
    openmetrics=$(curl -s -o /dev/null -w '%{size_download}' -H 'Accept: application/openmetrics-text;version=1.0.0' "http://$metrics/metrics")
    echo "bytes per scrape: $text (text format), $openmetrics (OpenMetrics)"
    local urls=()
    for _ in $(seq 200); do urls+=(-o /dev/null "http://$metrics/metrics"); done
    curl -s -w '%{time_connect} %{time_starttransfer}\n' "${urls[@]}" |
        awk '{print $2 - $1}' >"$work/$name.render"
    echo "answer time (first byte after connect, 200 scrapes): $(quantiles <"$work/$name.render")"

    wrk --latency -t1 -c16 -d"${seconds}s" "http://$health/readyz" >"$work/$name.alone" 2>&1
    echo "/readyz alone:                     $(rps "$work/$name.alone")"
    wrk --latency -t1 -c16 -d"${seconds}s" "http://$health/readyz" >"$work/$name.with" 2>&1 &
    local readyz=$!
    wrk --latency -t1 -c2 -d"${seconds}s" "http://$metrics/metrics" >"$work/$name.scrapes" 2>&1
    wait "$readyz"
    echo "/readyz with /metrics flat out:    $(rps "$work/$name.with") (and /metrics $(rps "$work/$name.scrapes" | sed "s/req/scrapes/"))"
    wrk --latency -t1 -c16 -d"${seconds}s" "http://$health/readyz" >"$work/$name.paced" 2>&1 &
    readyz=$!
    for _ in $(seq "$seconds"); do curl -s -o /dev/null "http://$metrics/metrics"; sleep 1; done
    wait "$readyz"
    echo "/readyz with one scrape a second:  $(rps "$work/$name.paced")"
    echo "kiln RSS after: $(awk '/^VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$kiln/status")"
    stop_kiln
    echo
}

echo "kiln $("$bin" --version) ($bin), $(nproc) cores"
echo
measure example 0
measure fifty-units 46
measure php-fpm-pool 0 pool
