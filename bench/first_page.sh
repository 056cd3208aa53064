#!/bin/bash
# The first PHP page of the example after `kiln boot`, against supervisord 4.2 (Debian's
# `supervisor` package) running the same services from the same files, and against the app's own
# chain: the same processes started by a script that starts nginx the moment php-fpm says it is
# ready (with the workers, and without them). One run, side by side, round by round
# (bench/first_page.py says how each figure is taken). Also the RSS of kiln and of supervisord
# with the example running.
# Targets: kiln within 5 ms of the app's own chain, and at least 30x faster than supervisord.
#
# Usage: bench/first_page.sh [--bin PATH] [--rounds N] [--workers-last]
#   (as root; --bin defaults to the static release binary, built if missing; supervisord is
#   Debian's, unpacked from its .deb into target/bench/ if it is not installed: nothing is
#   installed and no service is started). --workers-last gives the workers `after = ["nginx"]`,
#   so that they do not take the CPU php-fpm and nginx need for the first page (the chain
#   follows it; supervisord has no such order: its figure is unchanged).
. "$(dirname "$0")/lib.sh"
rounds=10
while (($#)); do
    case $1 in
        --bin) bin=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --workers-last) workers_last=1 ;;
        *) echo "usage: $0 [--bin PATH] [--rounds N] [--workers-last]" >&2; exit 2 ;;
    esac
    shift
done
bench_binaries
bench_supervisord
bench_machine_line
echo "supervisord $("${supervisord[@]}" --version)"
bench_example page
if [[ -n ${workers_last:-} ]]; then
    sed -i 's/^name = "worker" .*$/name = "worker"\nafter = ["nginx"]/' "$config"
    grep -q '^after = \["nginx"\]' "$config" || { echo "--workers-last: no worker in $config" >&2; exit 1; }
    echo "workers after nginx"
fi
python3 bench/first_page.py --kiln "$bin" --config "$config" --http "$http" --rounds "$rounds" \
    --supervisord "${supervisord[*]}"
