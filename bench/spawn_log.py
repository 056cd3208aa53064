"""Reads kiln's own log (stderr, one event a line, RFC 3339 time first) for the spawn benches.

    python3 bench/spawn_log.py boot-gaps [--execs FILE] LABEL=LOG... # php-fpm ready -> nginx started
    python3 bench/spawn_log.py restart-gaps UNIT DELAY_MS LABEL=LOG...   # exited -> started - delay

Each LABEL is a spawn path (`procs`, `clone3`); several logs per label. Prints a table per boot
(or per restart) and the median and max of each label. Times are kiln's, taken when it logs.

--execs FILE: the kernel's own time of each exec, from `perf record -k mono -e
sched:sched_process_exec` (lines `PID MONOTONIC_SECONDS`, then a last line `offset SECONDS`:
realtime minus monotonic). Then nginx's exec is also given as the kernel saw it, which kiln's log
can only follow: kiln logs `started` once its own thread runs again after the exec.
"""

import statistics
import sys
from datetime import datetime


def events(path):
    """(seconds, message) of each line of a kiln log."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            stamp, _, rest = line.partition(" ")
            try:
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            out.append((at, rest.strip()))
    return out


def first(evs, *needles, after=0.0):
    for at, msg in evs:
        if at >= after and all(n in msg for n in needles):
            return at
    return None


def by_label(args):
    logs = {}
    for arg in args:
        label, _, path = arg.partition("=")
        logs.setdefault(label, []).append(path)
    return logs


def summary(label, gaps, target):
    if not gaps:
        print(f"{label}: no figures")
        return
    print(
        f"{label:>7}: {len(gaps)} runs, gap median {statistics.median(gaps):6.2f} ms, "
        f"max {max(gaps):6.2f} ms   ({target})"
    )


def kernel_execs(path):
    """{pid: realtime seconds of its exec} from an --execs file."""
    execs, offset = {}, 0.0
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().partition(" ")
            if key == "offset":
                offset = float(value)
            elif key.isdigit():
                execs.setdefault(int(key), float(value))
    return {pid: at + offset for pid, at in execs.items()}


def pid_of(evs, needle):
    for _, msg in evs:
        if needle in msg:
            return int(msg.split(needle, 1)[1].split(")", 1)[0])
    return None


def boot_gaps(args):
    """Per boot, relative to `php-fpm: started`: php-fpm's own "ready to handle connections"
    (as kiln forwards it: `php-fpm| NOTICE: ready to handle connections`), kiln's `php-fpm: ready`, kiln's `nginx: started`, and the gap."""
    execs = {}
    if args and args[0] == "--execs":
        execs, args = kernel_execs(args[1]), args[2:]
    results, kernel = {}, {}
    for label, paths in by_label(args).items():
        print(f"\n{label}: ms after kiln's `php-fpm: started`")
        print(f"{'boot':>5} {'php-fpm says ready':>19} {'kiln: php-fpm ready':>20} {'kiln: nginx started':>20} {'gap':>7}"
              + (f" {'nginx exec (kernel)':>20} {'gap':>7}" if execs else ""))
        gaps, kernel_gaps = [], []
        for n, path in enumerate(paths, 1):
            evs = events(path)
            started = first(evs, "php-fpm: started (pid")
            says = first(evs, "php-fpm|", "ready to handle connections")
            ready = first(evs, "php-fpm: ready (")
            nginx = first(evs, "nginx: started (pid")
            if None in (started, ready, nginx):
                print(f"{n:>5} (incomplete log: {path})")
                continue
            rel = lambda t: "-" if t is None else f"{(t - started) * 1000:.2f}"
            gap = (nginx - ready) * 1000
            gaps.append(gap)
            row = f"{n:>5} {rel(says):>19} {rel(ready):>20} {rel(nginx):>20} {gap:>7.2f}"
            exec_at = execs.get(pid_of(evs, "nginx: started (pid "))
            if exec_at is not None:
                kernel_gaps.append((exec_at - ready) * 1000)
                row += f" {rel(exec_at):>20} {kernel_gaps[-1]:>7.2f}"
            print(row)
        results[label], kernel[label] = gaps, kernel_gaps
    print("\nphp-fpm ready -> nginx started (target after: median <= 1 ms, max <= 3 ms)")
    for label, gaps in results.items():
        summary(label, gaps, "kiln's log")
        if kernel.get(label):
            summary(label, kernel[label], "nginx's exec as the kernel saw it")


def restart_gaps(args):
    """Per restart of UNIT: kiln's `UNIT: exited` -> `UNIT: started`, minus the backoff delay."""
    unit, delay = args[0], float(args[1])
    print(f"\n{unit}: `exited` -> `started` minus the {delay:g} ms backoff delay (target <= 2 ms)")
    for label, paths in by_label(args[2:]).items():
        gaps = []
        for path in paths:
            evs = events(path)
            exits = [at for at, msg in evs if msg.split(" ", 1)[-1].startswith(f"{unit}: exited (")]
            for exited in exits:
                started = first(evs, f"{unit}: started (pid", after=exited)
                if started is not None:
                    gaps.append((started - exited) * 1000 - delay)
        summary(label, gaps, "each restart")


if __name__ == "__main__":
    {"boot-gaps": boot_gaps, "restart-gaps": restart_gaps}[sys.argv[1]](sys.argv[2:])
