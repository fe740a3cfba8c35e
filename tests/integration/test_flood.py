"""Floods of unauthenticated sockets against a real ``easycluster -S`` (issue 18, item 2
and the rest of 4).

Distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) stand for distinct hosts: a
client socket is bound to one before it connects, so the server sees it as that source.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import threading
from typing import Deque, List

import pytest
from helpers import ServerProcess, pid_alive, wait_until

import easycluster
from easycluster.protocol import handshake
from easycluster.transport.handshake import client_handshake

HOST = "127.0.0.1"
ATTACKER = "127.0.0.2"
HONEST = "127.0.0.3"
FLOOD = 2000


class Flood:
    """A thread opening unauthenticated sockets from ``source`` to ``port`` as fast as the
    kernel takes them (non-blocking connects, in bursts) until ``stop()``. It holds up to
    ``size`` at once (past that the oldest is closed for each new one), so the server's
    backlog stays full; ``opened`` counts the connects issued."""

    def __init__(self, port: int, source: str = ATTACKER, size: int = FLOOD):
        self.port, self.source, self.size = port, source, size
        self.opened = 0
        self._held: Deque[socket.socket] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(100):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.bind((self.source, 0))
                    s.connect_ex((HOST, self.port))
                except OSError:
                    s.close()
                    continue
                self.opened += 1
                self._held.append(s)
                if len(self._held) > self.size:
                    self._held.popleft().close()
            self._stop.wait(0.01)

    def wait_opened(self, n: int, timeout: float = 30) -> bool:
        return wait_until(lambda: self.opened >= n, timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        while self._held:
            self._held.popleft().close()


def honest_call(port: int, key: bytes, source: str = HONEST, timeout: float = 10) -> int:
    """One client from ``source`` (no retry: the bare handshake) runs a call; return the
    pid that served it."""
    sock = socket.socket()
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect((HOST, port))
        channel = client_handshake(sock, key, handshake.WireOptions(), timeout)
    except BaseException:
        sock.close()
        raise
    client = easycluster.Client(key)
    client.attach(channel, f"{source}->{port}")
    try:
        assert client.eval("6 * 7") == 42
        return client.os.getpid()
    finally:
        client.close()


def refusal_lines(log: List[str]) -> List[str]:
    return [line for line in log if re.search(r"refused|dropped|closed before|suppressed", line)]


# -- item 2: a flood from one source does not stop others ------------------------------


@pytest.mark.timeout(120)
def test_a_flood_from_one_address_does_not_stop_another(keyfile, key):
    with ServerProcess("-k", keyfile, "-b", HOST) as srv, Flood(srv.port) as flood:
        assert flood.wait_opened(200)  # the flood is on before the first honest client
        failures = []
        for _ in range(20):
            try:
                honest_call(srv.port, key)
            except easycluster.ConnectionLost as e:
                failures.append(str(e))
        still_flooding = flood.opened
        flood.stop()
        assert failures == []
        assert still_flooding >= 200 and srv.proc.poll() is None
        srv.wait_for(r"too many unauthenticated sockets from 127\.0\.0\.2")


# -- item 4: the log stays bounded under a flood ---------------------------------------


def suppressed(lines: List[str]) -> int:
    """The refusals counted, not logged, in ``lines``."""
    return sum(int(m.group(1)) for m in map(SUMMARY.search, lines) if m)


SUMMARY = re.compile(r"(\d+) more connection\(s\) .* not logged one by one")


@pytest.mark.timeout(120)
def test_refusals_under_a_flood_are_logged_a_few_lines_and_a_count(keyfile, key):
    with ServerProcess("-k", keyfile, "-b", HOST) as srv:
        with Flood(srv.port) as flood:
            assert flood.wait_opened(2 * FLOOD)
            honest_call(srv.port, key)  # (the flood has reached the server by now)
        assert srv.stop() == 0  # the counts not written yet are written at stop
        lines = refusal_lines(srv.log)
        counted = suppressed(lines)
        print(f"{len(lines)} lines; {counted} refusals counted, not logged")
        # 5 reasons at most here, each a burst of 5 lines and a count per 10 s
        assert len(lines) <= 5 * 6 * 3
        assert counted >= FLOOD // 2  # the flood was refused, and said so in numbers
        assert any("too many unauthenticated sockets from 127.0.0.2" in line for line in lines)


# -- item 4: kill -9 of the listener ---------------------------------------------------


@pytest.mark.timeout(60)
def test_connection_processes_end_after_kill_9_of_the_listener(keyfile, key, tmp_path):
    started = tmp_path / "started"
    with ServerProcess("-k", keyfile, "-b", HOST) as srv:
        idle = easycluster.Client(key, HOST, srv.port, connect_timeout=10)
        busy = easycluster.Client(key, HOST, srv.port, connect_timeout=10)
        try:
            pids = [idle.server_pid, busy.server_pid]
            assert all(pids) and all(pid_alive(p) for p in pids)
            result: List[object] = []
            expr = f"open({str(started)!r}, 'w').close() or __import__('time').sleep(2) or 42"
            call = threading.Thread(target=lambda: result.append(busy.eval(expr)))
            call.start()
            try:
                assert wait_until(started.exists, 10)
                os.kill(srv.proc.pid, signal.SIGKILL)
                srv.proc.wait(10)
                # the idle one ends at once; the busy one once its call is done
                assert wait_until(lambda: not pid_alive(pids[0]), 10), "idle one still serves"
                assert wait_until(lambda: not pid_alive(pids[1]), 20), "busy one still serves"
            finally:
                call.join(20)
            assert result == [42]  # the call running at the time finished and replied
            with pytest.raises(easycluster.ConnectionLost):
                idle.eval("1")
        finally:
            idle.close()
            busy.close()
            for pid in pids:  # (a failed test leaves nothing behind)
                if pid and pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
