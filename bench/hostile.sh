#!/bin/bash
# Measures kiln under hostile clients of its health port (issue 10 §2): the example app booted
# under `prlimit --nofile=N`, then
#   1. 1,100 idle connections (more than the fd limit allows): /readyz latency on fresh
#      connections meanwhile, `kiln status`, and a SIGKILLed php-fpm restarted and ready again;
#   2. `wrk -c 5000 -d 5s` on /readyz: RSS at its peak, 2 s and 10 s after;
#   3. 2,000 slowloris connections, then 2,000 idle ones: RSS while they are held, and after.
# A benchmark, not a test: it prints numbers and never fails on them. Loopback only; every
# client stops by itself.
# Usage: bench/hostile.sh [--bin PATH] [--nofile N]    (run as root; needs wrk, python3, curl)
#   --bin defaults to the static release binary (packaging/build-static.sh), built if missing.
. "$(dirname "$0")/lib.sh"
nofile=1024
while (($#)); do
    case $1 in
        --bin) bin=$2; shift ;;
        --nofile) nofile=$2; shift ;;
        *) echo "usage: $0 [--bin PATH] [--nofile N]" >&2; exit 2 ;;
    esac
    shift
done
bench_binaries
ulimit -n "$(ulimit -Hn)"  # for the clients; kiln gets its own limit from prlimit
clients="python3 bench/hostile_clients.py"

bench_example example
bench_boot prlimit --nofile="$nofile"
fds() { ls "/proc/$kiln/fd" | wc -l; }
php_pid() {
    "$bin" status --json --socket "$socket" 2>/dev/null |
        python3 -c 'import json,sys; print(next(u["pid"] for u in json.load(sys.stdin)["services"] if u["unit"]=="php-fpm"))'
}
echo "kiln $("$bin" --version) ($bin), pid $kiln, nofile $(prlimit --nofile --output SOFT,HARD --noheadings --pid "$kiln")"
sleep 2
echo "steady: RSS $(mib "$(rss)"), $(fds) fds"

echo
echo "== 1. 1,100 idle connections under nofile=$nofile"
$clients idle "$health" 1100 12 --ready "$work/held" >"$work/idle.out" 2>&1 &
attack=$!
for _ in $(seq 300); do [[ -e $work/held ]] && break; sleep 0.1; done
sleep 1
echo "held: $(head -1 "$work/idle.out"); kiln has $(fds) fds, RSS $(mib "$(rss)")"
echo "/readyz on fresh connections for 3 s:"
$clients probe "http://$health/readyz" 3 | sed 's/^/  /'
started=$(date +%s%N)
if status=$(timeout 10 "$bin" status --socket "$socket" 2>&1); then
    echo "kiln status: answered in $((($(date +%s%N) - started) / 1000000)) ms: $(head -1 <<<"$status")"
else
    echo "kiln status: FAILED ($(head -1 <<<"$status"))"
fi
old=$(php_pid 2>/dev/null || echo "")
if [[ $old =~ ^[0-9]+$ ]]; then
    kill -KILL "$old"
    started=$(date +%s%N)
    back=""
    for _ in $(seq 200); do
        new=$(php_pid 2>/dev/null || echo "")
        if [[ $new =~ ^[0-9]+$ && $new != "$old" ]] && ready; then back=yes; break; fi
        sleep 0.1
    done
    if [[ -n $back ]]; then
        echo "SIGKILLed php-fpm: restarted and ready again after $((($(date +%s%N) - started) / 1000000)) ms"
    else
        echo "SIGKILLed php-fpm: NOT back within 20 s"
    fi
else
    echo "php-fpm pid unknown (kiln status did not answer, or php-fpm is down: $old)"
fi
wait "$attack" || true
tail -1 "$work/idle.out"
echo "'Too many open files' in kiln's log: $(grep -c 'Too many open files' "$work/kiln.log" || true)"
wait_ready

peak_during() {  # samples RSS every 100 ms while PID runs; prints the peak
    local pid=$1 peak=0 now
    while kill -0 "$pid" 2>/dev/null; do
        now=$(rss); ((now > peak)) && peak=$now
        sleep 0.1
    done
    echo "$peak"
}

echo
echo "== 2. wrk -c 5000 -d 5s on /readyz"
wrk -t 2 -c 5000 -d 5s "http://$health/readyz" >"$work/wrk.out" 2>&1 &
load=$!
# A load balancer's check on a fresh connection meanwhile: it waits behind the connections queued
# before it (the listen queue holds up to net.core.somaxconn per serving thread).
(sleep 1; $clients probe "http://$health/readyz" 3) >"$work/wrk-probe.out" 2>&1 &
probe=$!
peak=$(peak_during "$load")
wait "$load" || true
wait "$probe" || true
grep -E 'Requests/sec|Socket errors|Non-2xx' "$work/wrk.out" | sed 's/^ */  /'
echo "/readyz on fresh connections during the flood:"
sed 's/^/  /' "$work/wrk-probe.out"
echo "RSS peak $(mib "$peak")"
sleep 2; echo "RSS 2 s after $(mib "$(rss)"), $(fds) fds"
sleep 8; echo "RSS 10 s after $(mib "$(rss)")"

for mode in slowloris idle; do
    echo
    echo "== 3. 2,000 $mode connections, held 15 s"
    before=$(rss)
    rm -f "$work/held"
    $clients "$mode" "$health" 2000 15 --ready "$work/held" >"$work/$mode.out" 2>&1 &
    attack=$!
    for _ in $(seq 300); do [[ -e $work/held ]] && break; sleep 0.1; done
    sleep 3
    held=$(rss)
    echo "$(head -1 "$work/$mode.out"); after 3 s kiln has $(fds) fds, RSS $(mib "$held") ($(((held - before) * 1024 / 2000)) bytes per connection opened)"
    wait "$attack" || true
    tail -1 "$work/$mode.out"
    sleep 2
    echo "RSS 2 s after they closed: $(mib "$(rss)")"
done
