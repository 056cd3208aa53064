# Sourced by the bench scripts (bash): the start every one of them repeats.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_args "$@"          # --bin PATH, --seconds N; sets $bin, $seconds
#   bench_binaries           # the static kiln (packaging/build-static.sh) and kiln-testkit, if missing
#   bench_example NAME       # renders the example into $work/NAME; sets $health, $http, $config, $socket
#   bench_boot [PREFIX...]   # boots $config (under PREFIX, e.g. prlimit), waits for /readyz; sets $kiln
#   ready, wait_ready [LOG], port, rss [PID], mib KIB
#   bench_machine_line       # prints cores, CPU, kernel and load: every figure goes with it
#   bench_supervisord        # sets $supervisord (an array): Debian's, installed or unpacked
#
# It runs from the repository's root, makes $work (in /dev/shm where there is one) and removes it
# on exit, after stopping the kiln it booted. Benchmarks print numbers and never fail on them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=target/x86_64-unknown-linux-musl/release/kiln
seconds=10
kiln=
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
# Services that drop privileges (nginx's workers, php-fpm's pool) reach their sockets through it.
chmod 755 "$work"
bench_cleanup_hooks=()

stop_kiln() {
    if [[ -n $kiln ]]; then
        kill -TERM "$kiln" 2>/dev/null && wait "$kiln" 2>/dev/null || true
    fi
    kiln=
}
bench_cleanup() {
    stop_kiln
    local hook
    for hook in "${bench_cleanup_hooks[@]}"; do "$hook" || true; done
    rm -rf "$work"
}
trap bench_cleanup EXIT

# The options most benches take; anything else is a usage error naming what the script takes.
bench_args() {
    while (($#)); do
        case $1 in
            --bin) bin=$2; shift ;;
            --seconds) seconds=$2; shift ;;
            *) echo "usage: $0 [--bin PATH] [--seconds N]" >&2; exit 2 ;;
        esac
        shift
    done
}

bench_binaries() {
    [[ -x $bin ]] || packaging/build-static.sh
    [[ -x target/release/kiln-testkit ]] || cargo build --release -p testkit --bin kiln-testkit
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k/1024}'; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/${1:-$kiln}/status"; }

bench_example() {
    local dir=$work/$1
    health=127.0.0.1:$(port) http=127.0.0.1:$(port)
    target/release/kiln-testkit example render "$dir" --http "$http" --health "$health" >/dev/null
    config=$dir/kiln.toml
    socket=$dir/run/kiln/control.sock
}

ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$health/readyz") == 200 ]]; }
# wait_ready [LOG]: until /readyz answers 200 (30 s at most; then LOG's tail and exit).
wait_ready() {
    local _
    for _ in $(seq 300); do ready && return 0; sleep 0.1; done
    echo "kiln is not ready after 30 s; its log:" >&2
    tail -20 "${1:-$work/kiln.log}" >&2
    exit 1
}

bench_machine_line() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
bench_boot() {
    "$@" "$bin" boot --config "$config" >"$work/kiln.log" 2>&1 &
    kiln=$!
    wait_ready
}

# Debian's supervisord: the installed one, else the package unpacked into target/bench/ (apt-get
# download, dpkg-deb -x): installing it would start a system supervisord (its package enables one).
bench_supervisord() {
    if command -v supervisord >/dev/null; then
        supervisord=(supervisord)
        return
    fi
    local dir=$PWD/target/bench root=$PWD/target/bench/supervisor
    if [[ ! -f $root/usr/bin/supervisord ]]; then
        mkdir -p "$dir"
        (cd "$dir" && apt-get download -q supervisor >/dev/null 2>&1) ||
            { echo "cannot download Debian's supervisor package (apt-get download supervisor)" >&2; exit 1; }
        dpkg-deb -x "$dir"/supervisor_*.deb "$root"
    fi
    supervisord=(env "PYTHONPATH=$root/usr/lib/python3/dist-packages" python3 "$root/usr/bin/supervisord")
}
