#!/bin/bash
# What kiln costs between a fact and the process that follows it, with each spawn path, side by
# side (boots interleaved, so that the machine's load weighs on both alike):
#
#   1. boots of the example: php-fpm ready -> nginx started (nginx waits for php-fpm), per boot:
#      php-fpm's own "ready to handle connections", kiln's `php-fpm: ready`, kiln's `nginx:
#      started` (after nginx's exec), in ms after kiln's `php-fpm: started`, and the gap;
#   2. restarts: a service killed RESTARTS times, 300 ms apart: kiln's `exited` -> `started`
#      minus its backoff delay (50 ms, capped: the same for every restart).
#
# `procs` is the fallback, forced (KILN_TEST_SPAWN=procs: fork, then `0` into the unit's
# cgroup.procs); `clone3` is clone3(CLONE_INTO_CGROUP). Times are kiln's own log's.
# Targets (clone3): boot gap median <= 1 ms and max <= 3 ms over 30 boots; restart <= 2 ms.
#
# Usage: bench/spawn.sh [--bin PATH] [--boots N] [--restarts N] [--paths "procs clone3"]
#   (as root; --bin defaults to the static release binary, built if missing)
. "$(dirname "$0")/lib.sh"
boots=30 restarts=30 paths="procs clone3"
while (($#)); do
    case $1 in
        --bin) bin=$2; shift ;;
        --boots) boots=$2; shift ;;
        --restarts) restarts=$2; shift ;;
        --paths) paths=$2; shift ;;
        *) echo "usage: $0 [--bin PATH] [--boots N] [--restarts N] [--paths \"procs clone3\"]" >&2; exit 2 ;;
    esac
    shift
done
bench_binaries
bench_machine_line

# boot_with PATH LOG: boots $config with spawn path PATH, logging to LOG; waits for /readyz.
boot_with() {
    local force=()
    [[ $1 == procs ]] && force=(env KILN_TEST_SPAWN=procs)
    "${force[@]}" "$bin" boot --config "$config" >"$2" 2>&1 &
    kiln=$!
    wait_ready "$2"
}

# The kernel's time of each exec, where perf is there: kiln's log follows it by however long kiln's
# own thread waits for a CPU after the exec.
execs=()
if command -v perf >/dev/null; then
    perf record -q -k mono -e sched:sched_process_exec -a -o "$work/execs.perf" >/dev/null 2>&1 &
    perf_pid=$!
    stop_perf() { kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" 2>/dev/null || true; }
    bench_cleanup_hooks+=(stop_perf)
fi

bench_example gap
gap_logs=()
for n in $(seq "$boots"); do
    for path in $paths; do
        boot_with "$path" "$work/boot-$path-$n.log"
        stop_kiln
        gap_logs+=("$path=$work/boot-$path-$n.log")
    done
done
if [[ -n ${perf_pid:-} ]]; then
    stop_perf
    {
        perf script -i "$work/execs.perf" -F pid,time --ns 2>/dev/null | tr -d ':' | awk '{print $1, $2}'
        echo "offset $(python3 -c 'import time; print(time.time() - time.monotonic())')"
    } >"$work/execs"
    execs=(--execs "$work/execs")
fi
python3 bench/spawn_log.py boot-gaps "${execs[@]}" "${gap_logs[@]}"

# One service that sleeps, restarted after 50 ms whatever its failures in a row.
bench_example restart
sed -i '/^\[\[service\]\]/,$d' "$config"
cat >>"$config" <<'TOML'
[[service]]
name = "sleeper"
command = ["sleep", "3600"]
ready_after = "10ms"
restart_delay = "50ms"
restart_delay_max = "50ms"
TOML
restart_logs=()
for path in $paths; do
    log=$work/restart-$path.log
    boot_with "$path" "$log"
    for n in $(seq "$restarts"); do
        pid=$(sed -n 's/.* sleeper: started (pid \([0-9]*\)).*/\1/p' "$log" | tail -1)
        kill -KILL "$pid"
        for _ in $(seq 500); do
            (($(grep -c 'sleeper: started (pid' "$log") > n)) && break
            sleep 0.01
        done
        sleep 0.3
    done
    stop_kiln
    restart_logs+=("$path=$log")
done
python3 bench/spawn_log.py restart-gaps sleeper 50 "${restart_logs[@]}"
