"""Giving up ssh connections with real processes (``launch/killswitch.py``): a
connect abandoned from another thread ends at once and leaves no local ``ssh`` behind.

A node "still connecting" is an ssh alias of a local listener that accepts the
connection and never speaks (ssh hangs in its banner exchange, as with a wedged host).
Every test kills and reaps what it started, whether it passes or not.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Iterator, List

import pytest
from helpers import pid_alive, wait_until

from easycluster.errors import ConnectError
from easycluster.launch.ssh import open_channel

pytestmark = pytest.mark.timeout(120)


class Blackhole:
    """A loopback listener that accepts connections and never speaks; ``config`` is an
    ssh_config where ``hole*`` is this listener and ``refused*`` a port nobody listens
    on."""

    def __init__(self, workdir: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: List[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        with socket.socket() as s:  # (a port free now, never listened on)
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        self.config = os.path.join(workdir, "ssh_config")
        common = "  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        with open(self.config, "w") as f:
            f.write(f"Host hole*\n  HostName 127.0.0.1\n  Port {self.port}\n{common}")
            f.write(f"Host refused*\n  HostName 127.0.0.1\n  Port {closed}\n{common}")
            f.write("  LogLevel ERROR\n")

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                continue

    def processes(self) -> List[int]:
        """Live processes started with this config (the ssh connecting to it)."""
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if self.config.encode() in cmd and pid_alive(int(name)):
                out.append(int(name))
        return out

    def close(self) -> None:
        """Kill what still connects to us (a test that failed), then close."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop.set()
        self.thread.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def hole(tmp_path) -> Iterator[Blackhole]:
    bh = Blackhole(str(tmp_path))
    try:
        yield bh
    finally:
        bh.close()


def test_a_switch_gives_up_a_connect_at_once_and_reaps_its_ssh(hole):
    """``open_channel`` with a ``KillSwitch``: thrown while ssh hangs in its connect, the
    call raises at once and its ssh is gone; thrown before, ssh never outlives it."""
    from easycluster.launch.killswitch import KillSwitch

    switch = KillSwitch()
    failed: List[BaseException] = []

    def connect() -> None:
        try:
            open_channel("hole1", extra_args=["-F", hole.config], timeout=60, switch=switch)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(hole.accepted) == 1, timeout=30), "ssh never connected"
        switch.abandon()
        thread.join(10)
        assert not thread.is_alive(), "open_channel went on after abandon()"
        assert isinstance(failed[0], ConnectError) and "given up" in str(failed[0])
        assert hole.processes() == []
    finally:
        switch.kill()  # (what a failed test left: ended here)
        thread.join(10)
    early = KillSwitch()
    early.abandon()
    with pytest.raises(ConnectError, match="given up"):
        open_channel("hole2", extra_args=["-F", hole.config], timeout=60, switch=early)
    assert hole.processes() == []
