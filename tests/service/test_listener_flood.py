"""The listener's per-source caps and rate-limited refusals, and the client's new tries
after a dropped handshake: a real ``Listener`` in this process, driven round by round
with ``poll``, and real sockets from distinct loopback addresses (127.0.0.2, ...)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Dict, List, Optional

import pytest
from helpers import wait_until

import easycluster
from easycluster.errors import ConnectError, ConnectionLost
from easycluster.protocol import handshake
from easycluster.service.listener import Listener, RefusalLog, parse_allow, source_of
from easycluster.transport.channel import Channel
from easycluster.transport.handshake import open_tcp_channel

HOST = "127.0.0.1"


@pytest.fixture
def key() -> bytes:
    return easycluster.generate_key()


@pytest.fixture
def make_listener(closing):
    def make(key: bytes, handler=lambda *a: None, **kw) -> Listener:
        sock = closing(socket.socket())
        sock.bind((HOST, 0))
        sock.listen(64)
        return closing(Listener(sock, key, handler, **kw))

    return make


def open_from(source: str, lst: Listener, closing) -> socket.socket:
    s = closing(socket.socket())
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(lst.address())
    return s


def poll_until(lst: Listener, cond, timeout: float = 5) -> bool:
    return wait_until(lambda: (lst.poll(0.05), cond())[1], timeout, interval=0)


def dropped(s: socket.socket) -> bool:
    """The server sent its greeting, then closed the socket."""
    got = s.recv(handshake.SERVER_HELLO_SIZE + 1, socket.MSG_WAITALL)
    return len(got) == handshake.SERVER_HELLO_SIZE


def still_waited_for(s: socket.socket) -> bool:
    """The server sent its greeting and keeps the socket open."""
    got = b""
    while len(got) < handshake.SERVER_HELLO_SIZE:
        chunk = s.recv(handshake.SERVER_HELLO_SIZE - len(got))
        if not chunk:
            return False
        got += chunk
    s.settimeout(0.1)
    try:
        s.recv(1)  # EOF (or a byte, which the server never sends here)
    except socket.timeout:
        return True
    return False


# -- sources ---------------------------------------------------------------------------


def test_source_of_groups_an_ipv6_64_and_unmaps_ipv4():
    assert source_of("10.1.2.3") == "10.1.2.3"
    assert source_of("::ffff:10.1.2.3") == "10.1.2.3"
    assert source_of("2001:db8:1:2::1") == source_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("fe80::1%eth0") == "fe80::/64"


def test_one_source_is_capped_at_its_own_share(key, make_listener, closing):
    lst = make_listener(key, max_pending=4)  # per source: 2
    assert lst.max_pending_per_source == 2
    a = [open_from("127.0.0.2", lst, closing) for _ in range(3)]
    assert poll_until(lst, lambda: lst.pending_by_source() == {"127.0.0.2": 2})
    assert dropped(a[0])  # its own oldest made room
    b = open_from("127.0.0.3", lst, closing)
    assert poll_until(lst, lambda: lst.pending() == 3)
    assert lst.pending_by_source() == {"127.0.0.2": 2, "127.0.0.3": 1}
    assert still_waited_for(b)


def test_when_all_are_taken_the_largest_source_gives_way(key, make_listener, closing):
    lst = make_listener(key, max_pending=5, max_pending_per_source=3)
    flood = [open_from("127.0.0.2", lst, closing) for _ in range(3)]
    assert poll_until(lst, lambda: lst.pending() == 3)
    other = [open_from("127.0.0.3", lst, closing) for _ in range(2)]
    assert poll_until(lst, lambda: lst.pending() == 5)
    newcomer = open_from("127.0.0.4", lst, closing)
    assert poll_until(lst, lambda: "127.0.0.4" in lst.pending_by_source())
    assert lst.pending_by_source() == {"127.0.0.2": 2, "127.0.0.3": 2, "127.0.0.4": 1}
    assert dropped(flood[0])  # the largest source's oldest, not another source's
    assert all(still_waited_for(s) for s in (*other, newcomer))


# -- rate-limited refusals -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refusal_log_writes_a_burst_then_a_count_per_reason(caplog):
    clock = Clock()
    logger = logging.getLogger("easycluster.test.refusals")
    rl = RefusalLog(logger, burst=3, interval=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for i in range(50):
            rl.refused("refused: a", "a %d", i)
        rl.refused("refused: b", "b %d", 0)
        assert [r.getMessage() for r in caplog.records] == ["a 0", "a 1", "a 2", "b 0"]
        rl.flush()  # the interval is not over: nothing yet
        assert len(caplog.records) == 4
        clock.now += 10
        rl.flush()
        assert [r.getMessage() for r in caplog.records[4:]] == [
            "47 more connection(s) refused: a in 10 s, not logged one by one"
        ]  # (b had nothing left unsaid)
        rl.refused("refused: a", "a %d", 50)  # a new interval: logged again
        for i in range(51, 55):
            rl.refused("refused: a", "a %d", i)
        clock.now += 3
        rl.close()  # at stop, what was counted is said even mid-interval
        assert [r.getMessage() for r in caplog.records[5:]] == [
            "a 50",
            "a 51",
            "a 52",
            "2 more connection(s) refused: a in 3 s, not logged one by one",
        ]


def test_the_listener_logs_a_flood_of_refusals_in_a_few_lines(key, make_listener, closing, caplog):
    lst = make_listener(key, allow=parse_allow(["10.0.0.0/8"]))
    with caplog.at_level(logging.WARNING, logger="easycluster.server"):
        for _ in range(40):
            s = open_from("127.0.0.2", lst, closing)
            assert poll_until(lst, lambda s=s: s.recv(1) == b"")  # refused at once
        lst.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6, lines
    assert all("not in the allow list" in line for line in lines[:5])
    assert lines[5].startswith("35 more connection(s) refused: not in the allow list in ")


# -- the client tries again after a dropped handshake ---------------------------------


def connect_in_thread(key: bytes, port: int, timeout: float) -> tuple:
    out: Dict[str, object] = {}

    def run() -> None:
        try:
            out["channel"] = open_tcp_channel(
                HOST, port, key, handshake.WireOptions(), timeout, source="127.0.0.3"
            )
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def drop_pending(lst: Listener, key: bytes) -> int:
    """Drop every pending handshake the way a reload does (a list that refuses them),
    then let everyone in again."""
    n = lst.update(key, parse_allow(["10.0.0.0/8"]), 10.0, lst.max_pending)
    lst.update(key, [], 10.0, lst.max_pending)
    return n


def test_a_dropped_handshake_is_tried_again(key, make_listener, closing, caplog):
    served: List[socket.socket] = []
    lst = make_listener(key, lambda sock, session, peer: served.append(closing(sock.dup())))
    t, out = connect_in_thread(key, lst.address()[1], 10)
    with caplog.at_level(logging.WARNING, logger="easycluster.server"):
        for _ in range(2):  # dropped twice after its greeting
            assert poll_until(lst, lambda: lst.pending() == 1)
            assert drop_pending(lst, key) == 1
        assert poll_until(lst, lambda: not t.is_alive(), 10)
    t.join()
    channel: Optional[Channel] = out.get("channel")  # type: ignore[assignment]
    assert channel is not None, out.get("error")
    closing(channel)
    assert len(served) == 1  # the third try was authenticated
    refused = [r for r in caplog.records if "reloaded allow list" in r.getMessage()]
    assert len(refused) == 2 and all("127.0.0.3" in r.getMessage() for r in refused)


def test_tries_stop_with_a_clear_error_when_the_timeout_is_spent(key, make_listener):
    lst = make_listener(key)
    t, out = connect_in_thread(key, lst.address()[1], 1.0)
    drops = 0
    deadline = time.monotonic() + 20
    while t.is_alive() and time.monotonic() < deadline:
        lst.poll(0.01)
        drops += drop_pending(lst, key)
    t.join(5)
    error = out.get("error")
    assert isinstance(error, ConnectError), out
    assert drops >= 2
    text = str(error)
    assert f"127.0.0.1:{lst.address()[1]}: the server closed the connection before the " in text
    assert "times in" in text and "nothing ran" in text and "connect timeout" in text


def test_a_refusal_before_the_greeting_is_not_tried_again(key, make_listener, caplog):
    lst = make_listener(key, allow=parse_allow(["10.0.0.0/8"]))
    with caplog.at_level(logging.WARNING, logger="easycluster.server"):
        t, out = connect_in_thread(key, lst.address()[1], 10)
        assert poll_until(lst, lambda: not t.is_alive(), 10)
        t.join()
        lst.poll(0.2)  # a new try would be accepted (and refused, and logged) here
    error = out.get("error")
    assert type(error) is ConnectionLost, out
    assert "server greeting" in str(error)
    refused = [r for r in caplog.records if "not in the allow list" in r.getMessage()]
    assert len(refused) == 1


def closed_early(caplog) -> List[str]:
    lines = [r.getMessage() for r in caplog.records]
    return [m for m in lines if "closed before the handshake" in m]


@pytest.mark.parametrize("verbose", [True, False])
def test_a_port_probe_is_logged_only_when_verbose(make_listener, key, closing, caplog, verbose):
    # A connection closed before sending a byte (a monitor's port check) is logged at
    # the server's verbosity 1 only; one that sent part of a hello is always a refusal.
    lst = make_listener(key)
    lst.verbose = verbose
    with caplog.at_level(logging.INFO, logger="easycluster.server"):
        probe = open_from(HOST, lst, closing)
        assert poll_until(lst, lambda: lst.pending() == 1)
        probe.close()
        assert poll_until(lst, lambda: lst.pending() == 0)
        assert len(closed_early(caplog)) == (1 if verbose else 0)
        partial = open_from(HOST, lst, closing)
        partial.sendall(b"\0" * (handshake.CLIENT_HELLO_SIZE // 2))
        assert poll_until(lst, lambda: lst.pending() == 1)
        partial.close()
        assert poll_until(lst, lambda: lst.pending() == 0)
        lst.refusals.close()
    assert len(closed_early(caplog)) == (2 if verbose else 1)
