#!/usr/bin/env python3
"""Hostile clients of a TCP port, for bench/hostile.sh (loopback only, bounded in count and time).

  hostile_clients.py idle HOST:PORT N SECONDS        N connections that send nothing
  hostile_clients.py slowloris HOST:PORT N SECONDS   N connections that send a request head one
                                                     header line every second and never finish it
  hostile_clients.py probe URL SECONDS               GET URL on a fresh connection, one after the
                                                     other, as a load balancer's check does

idle/slowloris hold their connections for SECONDS, then print how many the server had closed
(`closed N of M`); `--ready FILE` is touched once all are open. probe prints the answers and the
latency percentiles of those that came back.
"""

import socket
import sys
import time


def connect_all(host, port, n):
    conns = []
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.setblocking(False)
            conns.append(s)
        except OSError as e:
            print(f"connect failed after {len(conns)}: {e}", file=sys.stderr)
            break
    return conns


def closed_by_server(s):
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def hold(mode, target, n, seconds, ready):
    host, port = target.rsplit(":", 1)
    conns = connect_all(host, int(port), n)
    print(f"opened {len(conns)} connections ({mode})", flush=True)
    if ready:
        open(ready, "w").close()
    start = time.monotonic()
    line = 0
    while time.monotonic() - start < seconds:
        if mode == "slowloris":
            for s in conns:
                try:
                    s.send(b"GET /readyz HTTP/1.1\r\n" if line == 0 else b"X-a: b\r\n")
                except OSError:
                    pass
            line += 1
        time.sleep(1)
    closed = sum(1 for s in conns if closed_by_server(s))
    print(f"closed {closed} of {len(conns)} by the server after {seconds}s", flush=True)
    for s in conns:
        s.close()


def probe(url, seconds):
    rest = url.removeprefix("http://")
    authority, _, path = rest.partition("/")
    host, port = authority.rsplit(":", 1)
    request = f"GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
    latencies, failures, codes = [], {}, {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=2) as s:
                s.settimeout(2)
                s.sendall(request)
                answer = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            code = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "garbled"
            codes[code] = codes.get(code, 0) + 1
            latencies.append(time.monotonic() - t0)
        except OSError as e:
            failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
        time.sleep(0.01)
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    print(f"answers {codes} failures {failures or 0}")
    print(f"latency ms: p50 {pct(0.5):.2f} p99 {pct(0.99):.2f} max {pct(1.0):.2f} ({len(latencies)} answers)")


def main(argv):
    ready = None
    if "--ready" in argv:
        i = argv.index("--ready")
        ready = argv[i + 1]
        del argv[i : i + 2]
    if len(argv) == 5 and argv[1] in ("idle", "slowloris"):
        hold(argv[1], argv[2], int(argv[3]), float(argv[4]), ready)
    elif len(argv) == 4 and argv[1] == "probe":
        probe(argv[2], float(argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
