#!/bin/bash
# Every figure of kiln with its peer, in one table (the one the README shows), with the machine
# it was measured on. Each part prints its own output first; the table comes last.
#
#   static    packaging/build-static.sh: the static binary's size (stripped, under 10 MiB)
#   readyz    /readyz against nginx's own `return 200` (wrk, same threads and connections,
#             alternating rounds, medians)
#   rss       kiln's steady RSS with the example running (target under 8 MiB)
#   page      first PHP page after start, kiln against supervisord 4.2 running the same app, and
#             their RSS (bench/first_page.sh)
#   metadata  `kiln env` against curl (bench/metadata.sh) and cloud-init's `init --local`
#             (bench/metadata-cloud-init.sh, when there; a note says when it is not)
#   seal      `kiln verify` against b3sum and sha256sum (bench/seal.sh)
#
# Usage: bench/compare.sh [--skip PART,...] [--only PART,...] [--seconds N] [--rounds N] [--reuse]
#   --seconds: each wrk round (default 3); --rounds: first-page rounds (default 5);
#   --reuse: print the last saved output of metadata and seal (target/bench/*.out) instead of
#   running them again (they take the longest). As root. A benchmark: it never fails on a figure.
. "$(dirname "$0")/lib.sh"
parts="static readyz rss page metadata seal" skip="" rounds=5 reuse=0 seconds=3
while (($#)); do
    case $1 in
        --skip) skip=${2//,/ }; shift ;;
        --only) parts=${2//,/ }; shift ;;
        --seconds) seconds=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --reuse) reuse=1 ;;
        *) echo "usage: $0 [--skip PART,...] [--only PART,...] [--seconds N] [--rounds N] [--reuse]" >&2; exit 2 ;;
    esac
    shift
done
wanted() { [[ " $parts " == *" $1 "* && " $skip " != *" $1 "* ]]; }
saved=target/bench
mkdir -p "$saved"
table=$work/table
: >"$table"
row() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$table"; }  # figure, kiln, peer, ratio
section() { printf '\n== %s\n' "$1"; }

bench_machine_line | tee "$work/machine"
if wanted static; then
    section "static binary"
    packaging/build-static.sh | tee "$work/static.out"
    size=$(stat -c %s "$bin")
    row "release binary (static, stripped)" "$(awk -v b="$size" 'BEGIN {printf "%.1f MiB", b/1048576}')" "budget 10 MiB" ""
fi
bench_binaries

wrk_rps() { wrk -t2 -c32 -d"${seconds}s" "$1" | awk '/^Requests\/sec:/ {print $2}'; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
if wanted readyz || wanted rss; then
    bench_example compare
    bench_boot
fi
if wanted readyz; then
    section "/readyz against nginx's return 200 (wrk -t2 -c32 -d${seconds}s, 3 alternating rounds)"
    for _ in 1 2 3; do
        wrk_rps "http://$health/readyz" >>"$work/kiln.rps"
        wrk_rps "http://$http/healthz" >>"$work/nginx.rps"
    done
    k=$(median <"$work/kiln.rps") n=$(median <"$work/nginx.rps")
    echo "kiln /readyz: $(paste -sd' ' "$work/kiln.rps") req/s; nginx return 200: $(paste -sd' ' "$work/nginx.rps") req/s"
    row "/readyz, requests/s (wrk -c32)" "$(printf '%.0f' "$k")" "nginx return 200: $(printf '%.0f' "$n")" "$(awk -v a="$k" -v b="$n" 'BEGIN {printf "%.2fx", a/b}')"
fi
if wanted rss; then
    section "kiln's steady RSS with the example running"
    sleep 5
    r=$(rss)
    echo "kiln (pid $kiln): $(mib "$r")"
    row "kiln's RSS, example running (steady)" "$(mib "$r")" "budget 8 MiB" ""
fi
stop_kiln

if wanted page; then
    section "first page against supervisord"
    bench/first_page.sh --bin "$bin" --rounds "$rounds" | tee "$work/page.out"
    python3 - "$work/page.out" >>"$table" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"first page kiln ([\d.]+) ms, supervisord ([\d.]+) ms \((\d+)x", text)
v = re.search(r"supervisord (\S+)\n", text)
if m:
    print(f"first PHP page after start\t{m[1]} ms\tsupervisord {v[1] if v else ''}: {m[2]} ms\t{m[3]}x faster")
c = re.search(r"the app's own chain ([\d.]+) ms; kiln ([+-][\d.]+) ms", text)
if c:
    print(f"first page beyond the app's own chain\t{c[2]} ms\ta script, same processes: {c[1]} ms\t")
r = re.search(r"RSS with the example running: kiln ([\d.]+) MiB, supervisord ([\d.]+) MiB", text)
if r:
    print(f"supervisor's RSS, example running\t{r[1]} MiB\tsupervisord: {r[2]} MiB\t{float(r[2]) / float(r[1]):.1f}x smaller")
PY
fi

# run_saved NAME CMD...: runs CMD saving its output to target/bench/NAME.out, or with --reuse
# prints the saved output (with its date).
run_saved() {
    local name=$1 out=$saved/$1.out
    shift
    if ((reuse)) && [[ -s $out ]]; then
        echo "(saved $(date -r "$out" '+%F %R'), $out)"
        cat "$out"
    else
        "$@" 2>&1 | tee "$out"
    fi
}
if wanted metadata; then
    section "kiln env against curl and cloud-init"
    if [[ -x bench/metadata.sh ]]; then
        run_saved metadata bench/metadata.sh --no-build --kiln "$(realpath "$bin")" --runs 100 >"$work/metadata.out"
        cat "$work/metadata.out"
        python3 - "$work/metadata.out" >>"$table" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for name, block in re.findall(r"\n(?:\w+, )?(\S+) emulator:\n((?:  .*\n?)+)", text):
    k = re.search(r"median kiln env\s+([\d.]+) ms", block)
    c = re.search(r"median curl script\s+([\d.]+) ms", block)
    if k and c:
        print(f"kiln env, EC2 metadata ({name})\t{k[1]} ms\tcurl script: {c[1]} ms\t{float(c[1]) / float(k[1]):.1f}x faster")
PY
    else
        echo "(bench/metadata.sh is not there: no kiln env figures)"
    fi
    # Written on another branch (metadata-fast); used when it is there.
    if [[ -x bench/metadata-cloud-init.sh ]]; then
        run_saved metadata-cloud-init bench/metadata-cloud-init.sh --no-build >"$work/cloud-init.out"
        cat "$work/cloud-init.out"
        python3 - "$work/cloud-init.out" >>"$table" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ci = re.search(r"cloud-init init --local\s+([\d.]+) ms", text)
k = re.search(r"^\s+kiln env\s+([\d.]+) ms", text, re.M)
if ci and k:
    print(f"kiln env vs cloud-init init --local (EC2)\t{k[1]} ms\tcloud-init 22.4: {ci[1]} ms\t{float(ci[1]) / float(k[1]):.0f}x")
PY
    else
        echo "(bench/metadata-cloud-init.sh is not there yet (branch metadata-fast): no cloud-init figure)"
    fi
fi
if wanted seal; then
    section "kiln verify against b3sum and sha256sum"
    if [[ -x bench/seal.sh ]]; then
        run_saved seal env RUNS=3 bench/seal.sh >"$work/seal.out"
        cat "$work/seal.out"
        python3 - "$work/seal.out" >>"$table" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
warm = {m[1]: float(m[2]) for m in re.finditer(r"^(kiln verify|b3sum|sha256sum)\s+(\d+)ms", text, re.M)}
if "kiln verify" in warm:
    for peer in ("b3sum", "sha256sum"):
        if peer in warm:
            print(f"verify a release tree (warm cache)\t{warm['kiln verify']:.0f} ms\t{peer}: {warm[peer]:.0f} ms\t{warm[peer] / warm['kiln verify']:.1f}x")
PY
    fi
fi

section "kiln and its peers"
cat "$work/machine"
python3 - "$table" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])] if len(sys.argv) > 1 else []
head = ("figure", "kiln", "peer", "ratio")
widths = [max(len(r[i]) for r in rows + [list(head)]) for i in range(4)]
for r in [list(head), ["-" * w for w in widths]] + rows:
    print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
PY
