"""First PHP page of the example: kiln against supervisord, and against the apps' own chain.

    python3 bench/first_page.py --kiln BIN --config KILN_TOML --http ADDR --rounds N \
        --supervisord "CMD ..." [--rss-after SECONDS]

Each round, one after the other:
  - kiln: `kiln boot`, then GET / every millisecond until the first 200;
  - supervisord: the same services from a supervisord.conf rendered from the same kiln.toml
    (php-fpm, nginx, the workers; their commands, environment, directories and stop signals);
  - the apps' own chain: php-fpm alone (exec -> its own "ready to handle connections") plus
    nginx alone (exec -> its first 200 for /healthz, `return 200`): what no supervisor can beat,
    since nginx must wait for php-fpm.
"First page" is the time from starting the supervisor to the first 200 of the page. The first
round also reads each supervisor's own RSS (VmRSS) once the example has run a while.
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


def php_fpm_alone(service, env):
    """Ms from php-fpm's exec to its own "ready to handle connections"."""
    started = time.monotonic()
    proc = subprocess.Popen(service["command"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    for line in proc.stderr:
        if b"ready to handle connections" in line:
            ms = (time.monotonic() - started) * 1000
            break
    else:
        sys.exit("php-fpm ended before it was ready")
    stop(proc, signal.SIGQUIT)
    return ms


def nginx_alone(service, addr, env):
    """Ms from nginx's exec to its first 200 for /healthz."""
    started = time.monotonic()
    proc = subprocess.Popen(service["command"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    ms = until_200(addr, "/healthz", started, proc)
    stop(proc, signal.SIGQUIT)
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
        lines += ["", f"[program:{s['name']}]", f"command={shlex.join(s['command'])}",
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
    print(f"{'round':>5} {'kiln':>9} {'supervisord':>12} {'php-fpm alone':>14} {'nginx alone':>12} {'chain':>8} {'kiln - chain':>13}")
    for n in range(1, a.rounds + 1):
        rss = a.rss_after if n == 1 else 0
        kiln, kiln_rss = first_page([a.kiln, "boot", "--config", a.config], a.http, rss, f"{here}/kiln.log")
        sup, sup_rss = first_page(shlex.split(a.supervisord) + ["-n", "-c", conf], a.http, rss,
                                  f"{here}/supervisord.out")
        fpm = php_fpm_alone(services["php-fpm"], env)
        web = nginx_alone(services["nginx"], a.http, env)
        if n == 1:
            rss_line = f"RSS with the example running: kiln {kiln_rss / 1024:.1f} MiB, supervisord {sup_rss / 1024:.1f} MiB"
        rows.append((kiln, sup, fpm, web))
        print(f"{n:>5} {kiln:>7.1f}ms {sup:>10.1f}ms {fpm:>12.1f}ms {web:>10.1f}ms {fpm + web:>6.1f}ms {kiln - fpm - web:>11.1f}ms")
    med = [statistics.median(c) for c in zip(*rows)]
    kiln, sup, fpm, web = med
    print(f"\nmedians over {a.rounds} rounds: first page kiln {kiln:.1f} ms, supervisord {sup:.1f} ms "
          f"({sup / kiln:.0f}x kiln; target >= 30x)")
    print(f"  the apps' own chain {fpm + web:.1f} ms (php-fpm {fpm:.1f} + nginx {web:.1f}); "
          f"kiln {kiln - fpm - web:+.1f} ms beyond it (target <= 5 ms)")
    print(f"  {rss_line}")


if __name__ == "__main__":
    main()
