#!/usr/bin/env python3
"""Talks to a qemu VM for packaging/image/e2e.sh: its monitor (QMP), its guest agent (QGA), and its
serial console (timestamped on arrival). Standard library only.

  vmctl.py serial SOCKET LOG          copy the serial console to LOG, each line prefixed with the
                                      host's clock (seconds since the epoch) when it arrived
  vmctl.py qmp SOCKET COMMAND         one QMP command (e.g. system_powerdown); prints the reply
  vmctl.py exec SOCKET TIMEOUT CMD... runs CMD in the guest through the guest agent (guest-exec),
                                      prints its stdout and stderr, exits with its exit code
                                      (124 when it did not finish in TIMEOUT seconds)
  vmctl.py wait-agent SOCKET TIMEOUT  waits until the guest agent answers guest-ping
"""

import base64
import json
import os
import socket
import sys
import time


def connect(path, timeout):
    """Connects to a unix socket, retrying until `timeout` seconds passed (qemu makes it late)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Channel:
    """Line-delimited JSON over a unix socket (QMP and QGA both speak it)."""

    def __init__(self, path, timeout):
        self.sock = connect(path, timeout)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        # guest-sync-delimited puts a 0xff byte before its answer (to find it in stale output).
        line = line.lstrip(b"\xff").strip()
        return json.loads(line) if line else self.recv(deadline)

    def call(self, command, arguments=None, timeout=10.0):
        """Sends one command; returns its `return` (skipping events), raises on `error`."""
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            reply = self.recv(deadline)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")


def qmp(path, command):
    chan = Channel(path, 10)
    chan.recv(time.monotonic() + 10)  # greeting
    chan.call("qmp_capabilities")
    print(json.dumps(chan.call(command)))


def agent(path, timeout):
    """A QGA channel past its sync handshake: answers before ours (left over by an earlier
    client, or the agent's complaint about a cut-off request) are read and dropped."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            chan = Channel(path, max(0.1, deadline - time.monotonic()))
            token = int(time.time() * 1000) % 2**31
            chan.send({"execute": "guest-sync-delimited", "arguments": {"id": token}})
            sync_deadline = time.monotonic() + 2
            while chan.recv(sync_deadline).get("return") != token:
                pass
            return chan
        except (OSError, TimeoutError, ConnectionError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"guest agent at {path}: no answer in {timeout}s")
        time.sleep(0.5)


def guest_exec(path, timeout, argv):
    deadline = time.monotonic() + timeout
    chan = agent(path, timeout)
    pid = chan.call(
        "guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True}
    )["pid"]
    while True:
        status = chan.call("guest-exec-status", {"pid": pid})
        if status.get("exited"):
            break
        if time.monotonic() > deadline:
            print(f"vmctl: {' '.join(argv)}: still running after {timeout}s", file=sys.stderr)
            return 124
        time.sleep(0.1)
    for key, stream in (("out-data", sys.stdout), ("err-data", sys.stderr)):
        if key in status:
            stream.write(base64.b64decode(status[key]).decode(errors="replace"))
            stream.flush()
    if "signal" in status:
        return 128 + status["signal"]
    return status.get("exitcode", 1)


def serial(path, log):
    """Runs until qemu closes the console (the VM is gone)."""
    sock = connect(path, 30)
    pending = b""
    with open(log, "w", buffering=1) as out:
        while True:
            chunk = sock.recv(65536)
            now = time.time()
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r")
                out.write(f"{now:.3f} {text}\n")
        if pending:
            out.write(f"{time.time():.3f} {pending.decode(errors='replace')}\n")


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    verb, path = argv[1], argv[2]
    if verb == "serial" and len(argv) == 4:
        serial(path, argv[3])
        return 0
    if verb == "qmp" and len(argv) == 4:
        qmp(path, argv[3])
        return 0
    if verb == "wait-agent" and len(argv) == 4:
        agent(path, float(argv[3]))
        return 0
    if verb == "exec" and len(argv) >= 5:
        return guest_exec(path, float(argv[3]), argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, TimeoutError, RuntimeError) as e:
        print(f"vmctl: {e}", file=sys.stderr)
        sys.exit(3)
