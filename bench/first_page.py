"""First PHP page of the example: kiln against supervisord, and against the same app started
by a script that knows exactly when each step is done.

    python3 bench/first_page.py --kiln BIN --config KILN_TOML --http ADDR --rounds N \
        --supervisord "CMD ..." [--rss-after SECONDS]

Each round, one after the other, each from its start to the first 200 of GET / (polled every
millisecond, the same loop for all):
  - kiln: `kiln boot`;
  - supervisord: the same services from a supervisord.conf rendered from the same kiln.toml
    (php-fpm, nginx, the workers; their commands, environment, directories, stop signals and nice
    levels, as `nice -n N`);
  - the app's own chain: php-fpm and the workers started at once by a script (workers `after`
    nginx start once nginx answers /healthz, as kiln's ready probe sees it), nginx the moment
    php-fpm says "ready to handle connections": the order a supervisor must keep, with no probe
    and no bookkeeping of its own (the script's own process starts are in it);
  - the chain alone: the same without the workers, so that what they cost on this machine shows.
The first round also reads each supervisor's own RSS (VmRSS) once the example has run a while.
Prints each round and the medians; never fails on a figure.
"""

import argparse
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import tomllib


def status_of(addr, path):
    """The HTTP status of GET path, or None when nothing answers yet."""
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
            head = s.recv(64).split(b" ", 2)
            return int(head[1]) if len(head) > 1 else None
    except (OSError, ValueError):
        return None


def until_200(addr, path, started, proc, deadline=30.0):
    """Ms from `started` to the first 200 of `path`, polled every millisecond."""
    while time.monotonic() - started < deadline:
        if status_of(addr, path) == 200:
            return (time.monotonic() - started) * 1000
        if proc.poll() is not None:
            sys.exit(f"{proc.args[0]} exited ({proc.returncode}) before the page answered")
        time.sleep(0.001)
    sys.exit(f"{proc.args[0]}: no 200 for {path} within {deadline:g} s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop(proc, sig=signal.SIGTERM, grace=30):
    """Stops a supervisor (which stops its services) and waits for it."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def first_page(argv, addr, rss_after, log, env=None):
    """(ms to the first 200 of /, the supervisor's RSS in KiB or None)."""
    with open(log, "ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True, env=env)
        ms = until_200(addr, "/", started, proc)
        rss = None
        if rss_after:
            time.sleep(rss_after)
            rss = rss_kib(proc.pid)
        stop(proc)
    return ms, rss


def command(service):
    """A service's command, under `nice -n N` where it has a `nice`: each runs at its level."""
    niced = ["nice", "-n", str(service["nice"])] if "nice" in service else []
    return niced + service["command"]


def started(service, env, **kw):
    """One process of a service, as its config says (command, directory, environment, nice)."""
    env = dict(env)
    env.update(service.get("env", {}))
    return subprocess.Popen(command(service), cwd=service.get("working_dir"), env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def chain(services, addr, env, workers=True):
    """Ms from the start to the first 200 of /: php-fpm (and the workers that wait for nothing)
    at once, nginx as soon as php-fpm's own log says it is ready."""
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = []
    t0 = time.monotonic()
    fpm = started(services["php-fpm"], env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    procs.append((fpm, signal.SIGQUIT))
    others = [s for name, s in services.items() if name not in ("php-fpm", "nginx")] if workers else []
    later = [s for s in others if s.get("after")]
    for s in others:
        if not s.get("after"):
            procs += [(started(s, env, **quiet), signal.SIGTERM) for _ in range(s.get("replicas", 1))]
    for line in fpm.stderr:
        if b"ready to handle connections" in line:
            break
    else:
        sys.exit("php-fpm ended before it was ready")
    web = started(services["nginx"], env, **quiet)
    procs.append((web, signal.SIGQUIT))
    if later:
        # As kiln starts them: once nginx answers its own /healthz (its ready probe).
        until_200(addr, "/healthz", t0, web)
        for s in later:
            procs += [(started(s, env, **quiet), signal.SIGTERM) for _ in range(s.get("replicas", 1))]
    ms = until_200(addr, "/", t0, web)
    for proc, sig in reversed(procs):
        stop(proc, sig)
    fpm.stderr.close()
    return ms


def supervisord_conf(config, path):
    """supervisord.conf for the services of kiln.toml `config`, written next to `path`."""
    services = tomllib.load(open(config, "rb"))["service"]
    here = os.path.dirname(path)
    lines = [
        "[supervisord]", "nodaemon=true", f"logfile={here}/supervisord.log",
        f"pidfile={here}/supervisord.pid", f"childlogdir={here}", "loglevel=info",
    ]
    if os.geteuid() == 0:
        lines.append("user=root")
    for s in services:
        lines += ["", f"[program:{s['name']}]", f"command={shlex.join(command(s))}",
                  "autorestart=true", "redirect_stderr=true",
                  f"stdout_logfile={here}/{s['name']}.log",
                  f"stopsignal={s.get('stop_signal', 'SIGTERM').removeprefix('SIG')}", "stopwaitsecs=10"]
        if s.get("env"):
            lines.append("environment=" + ",".join(f'{k}="{v}"' for k, v in s["env"].items()))
        if s.get("working_dir"):
            lines.append(f"directory={s['working_dir']}")
        if s.get("replicas", 1) > 1:
            lines += [f"numprocs={s['replicas']}", "process_name=%(program_name)s_%(process_num)d"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kiln", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--supervisord", required=True, help="the command that runs supervisord")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--rss-after", type=float, default=3.0)
    a = p.parse_args()
    here = os.path.dirname(os.path.abspath(a.config))
    conf = os.path.join(here, "supervisord.conf")
    supervisord_conf(a.config, conf)
    services = {s["name"]: s for s in tomllib.load(open(a.config, "rb"))["service"]}
    env = dict(os.environ)
    env.update(services["php-fpm"].get("env", {}))

    rows = []
    print(f"{'round':>5} {'kiln':>9} {'supervisord':>12} {'the chain':>10} {'kiln - chain':>13} {'chain alone':>12}")
    for n in range(1, a.rounds + 1):
        rss = a.rss_after if n == 1 else 0
        kiln, kiln_rss = first_page([a.kiln, "boot", "--config", a.config], a.http, rss, f"{here}/kiln.log")
        sup, sup_rss = first_page(shlex.split(a.supervisord) + ["-n", "-c", conf], a.http, rss,
                                  f"{here}/supervisord.out")
        own = chain(services, a.http, env)
        alone = chain(services, a.http, env, workers=False)
        if n == 1:
            rss_line = f"RSS with the example running: kiln {kiln_rss / 1024:.1f} MiB, supervisord {sup_rss / 1024:.1f} MiB"
        rows.append((kiln, sup, own, alone))
        print(f"{n:>5} {kiln:>7.1f}ms {sup:>10.1f}ms {own:>8.1f}ms {kiln - own:>11.1f}ms {alone:>10.1f}ms")
    kiln, sup, own, alone = [statistics.median(c) for c in zip(*rows)]
    gaps = sorted(r[0] - r[2] for r in rows)
    print(f"\nmedians over {a.rounds} rounds: first page kiln {kiln:.1f} ms, supervisord {sup:.1f} ms "
          f"({sup / kiln:.0f}x kiln; target >= 30x)")
    print(f"  the app's own chain {own:.1f} ms; kiln {statistics.median(gaps):+.1f} ms beyond it, round by round "
          f"(target <= 5 ms)")
    print(f"  the chain alone (no workers) {alone:.1f} ms: the workers cost the chain {own - alone:+.1f} ms")
    print(f"  {rss_line}")


if __name__ == "__main__":
    main()
