"""Test helpers: real server processes on port 0, with their log lines captured."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional, Tuple

from easycluster.protocol import frames, handshake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    """``easycluster -S ...`` in a subprocess; ``port`` is read from its first log line."""

    def __init__(self, *args: str, env: Optional[dict] = None):
        cmd = [sys.executable, "-m", "easycluster", "-S", "-p", "0", *args]
        self.proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: List[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.wait_for(r"serving on", timeout=20)
        self.port = int(line.rsplit(":", 1)[1].split()[0])

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 10) -> str:
        """Return the next log line matching ``pattern``; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no log line matching {pattern!r}; log: {self.log}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if re.search(pattern, line):
                return line

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_until(cond, timeout: float = 10, interval: float = 0.02) -> bool:
    """Poll ``cond()`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def session_pair(
    ckey: bytes = b"k" * 32,
    skey: bytes = b"k" * 32,
    copts: handshake.WireOptions = handshake.WireOptions(),
    sopts: handshake.WireOptions = handshake.WireOptions(),
) -> Tuple[frames.Session, frames.Session]:
    """Run a full handshake in memory; return (client session, server session)."""
    server = handshake.ServerHandshake(skey, sopts)
    client = handshake.ClientHandshake(ckey, copts)
    reply, ssession = server.receive(client.receive_hello(server.hello))
    assert ssession is not None, server.failure
    return client.receive_accept(reply), ssession
