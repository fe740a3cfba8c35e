"""A body posted while another thread holds the write lock is left to that thread, which
looks at the outbox again when it lets go: also when its own send raised (a frame above
the peer's limit), else the flushed body stayed queued until some later send."""

from __future__ import annotations

import socket
import threading
import time
from typing import List

import pytest
from helpers import session_pair

from easycluster.errors import FrameTooLarge
from easycluster.protocol import frames, handshake
from easycluster.transport.channel import Channel


@pytest.fixture
def channels():
    """(client channel with small socket buffers, server channel taking at most 1 MiB)."""
    c, s = session_pair(sopts=handshake.WireOptions(max_frame=1 << 20))
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    cc, sc = Channel(a, c, keepalive=None), Channel(b, s)
    yield cc, sc
    cc.close()
    sc.close()


def test_a_flushed_post_leaves_although_the_lock_holders_send_was_refused(channels):
    cc, sc = channels
    for i in range(200):  # held bodies the big send writes first (it blocks on them)
        cc.hold(frames.FT_REQUEST, b"h%03d" % i + b"." * 996)
    refused: List[BaseException] = []

    def too_big() -> None:
        try:
            cc.send(frames.FT_REQUEST, b"x" * (2 << 20))  # above the peer's limit
        except FrameTooLarge as e:
            refused.append(e)

    sender = threading.Thread(target=too_big)
    sender.start()
    deadline = time.monotonic() + 5
    while not cc._write_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)
    cc.post(frames.FT_REQUEST, b"P-flush", True)  # left to the lock holder
    got: List[bytes] = []
    deadline = time.monotonic() + 10
    while b"P-flush" not in got and time.monotonic() < deadline:
        got.extend(bytes(f.payload) for f in sc.recv(timeout=0.5))
    sender.join(10)
    assert refused, "the big send was not refused"
    assert b"P-flush" in got
    assert len(got) == 201 and got[-1] == b"P-flush"  # (in order, after the held ones)
