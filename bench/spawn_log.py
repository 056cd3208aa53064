"""Reads kiln's own log (stderr, one event a line, RFC 3339 time first) for the spawn benches.

    python3 bench/spawn_log.py boot-gaps   LABEL=LOG... # php-fpm ready -> nginx started, per boot
    python3 bench/spawn_log.py restart-gaps UNIT DELAY_MS LABEL=LOG...   # exited -> started - delay

Each LABEL is a spawn path (`procs`, `clone3`); several logs per label. Prints a table per boot
(or per restart) and the median and max of each label. Times are kiln's, taken when it logs.
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


def boot_gaps(args):
    """Per boot, relative to `php-fpm: started`: php-fpm's own "ready to handle connections"
    (as kiln forwards it: `php-fpm| NOTICE: ready to handle connections`), kiln's `php-fpm: ready`, kiln's `nginx: started`, and the gap."""
    results = {}
    for label, paths in by_label(args).items():
        print(f"\n{label}: ms after kiln's `php-fpm: started`")
        print(f"{'boot':>5} {'php-fpm says ready':>19} {'kiln: php-fpm ready':>20} {'kiln: nginx started':>20} {'gap':>7}")
        gaps = []
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
            print(f"{n:>5} {rel(says):>19} {rel(ready):>20} {rel(nginx):>20} {gap:>7.2f}")
        results[label] = gaps
    print("\nphp-fpm ready -> nginx started (target after: median <= 1 ms, max <= 3 ms)")
    for label, gaps in results.items():
        summary(label, gaps, "kiln's log")


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
