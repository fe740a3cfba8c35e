"""The listener's spare connection process (``service/spare.py``): the hand-over message
derives the listener's session, and real ``easycluster -S`` servers hand connections to
their spare, fork on the spot when it is gone, and end it on SIGTERM or their death."""

from __future__ import annotations

import os
import signal
import threading
from typing import Optional, Set

import pytest
from helpers import ServerProcess, pid_alive, wait_until

import easycluster
from easycluster.errors import ProtocolError
from easycluster.protocol import frames
from easycluster.protocol.handshake import ClientHandshake, ServerHandshake, WireOptions
from easycluster.service.spare import handoff_message, read_handoff

HOST = "127.0.0.1"


def _handshake(key: bytes, options: WireOptions):
    """A handshake run in memory: (server hello, client hello, client session)."""
    server = ServerHandshake(key, options)
    client = ClientHandshake(key, WireOptions())
    hello = client.receive_hello(server.hello)
    accept, _ = server.receive(hello)
    return server.hello, hello, client.receive_accept(accept)


def _deliver(sender: frames.Session, receiver: frames.Session, body: bytes) -> list:
    data = b"".join(bytes(b) for b in sender.pack(frames.FT_REQUEST, body))
    receiver.reader.buffer()[: len(data)] = data
    return receiver.reader.advance(len(data))


def test_handoff_message_derives_the_session_of_the_handshake():
    key = os.urandom(32)
    s_hello, c_hello, client = _handshake(key, WireOptions(max_frame=1 << 20))
    msg = handoff_message(key, s_hello, c_hello, 2, WireOptions(max_frame=1 << 20), "[::1]:7")
    session, verbosity, peer = read_handoff(msg)
    assert (verbosity, peer) == (2, "[::1]:7")
    assert session.max_send == frames.DEFAULT_MAX_FRAME and not session.compress
    (got,) = _deliver(client, session, b"to the server")
    assert (got.type, bytes(got.payload)) == (frames.FT_REQUEST, b"to the server")
    (back,) = _deliver(session, client, b"to the client")
    assert bytes(back.payload) == b"to the client"


def test_handoff_message_refuses_a_wrong_key_and_a_short_message():
    key = os.urandom(32)
    s_hello, c_hello, _ = _handshake(key, WireOptions())
    with pytest.raises(ProtocolError, match="wrong key"):
        read_handoff(handoff_message(os.urandom(32), s_hello, c_hello, 0, WireOptions(), "p"))
    with pytest.raises(ProtocolError, match="bytes"):
        read_handoff(handoff_message(key, s_hello, c_hello, 0, WireOptions(), "p")[:50])


def children(pid: int) -> Set[int]:
    """The live child processes of ``pid`` (from /proc: ppid is field 4 of stat)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(name))
    return found


def spare_of(srv: ServerProcess, busy: Set[int]) -> Optional[int]:
    """The listener's spare (its one child not in ``busy``), once there is one."""
    got: Set[int] = set()
    wait_until(lambda: len(got.update(children(srv.proc.pid) - busy) or got) == 1, 20)
    return got.pop() if len(got) == 1 else None


def test_connections_go_to_the_spare_and_a_dead_spare_is_replaced(keyfile, key, closing):
    with ServerProcess("-k", keyfile, "-b", HOST) as srv:
        first = closing(easycluster.Client(key, HOST, srv.port, connect_timeout=5))
        assert first.os.getppid() == srv.proc.pid
        busy = {first.os.getpid()}
        spare = spare_of(srv, busy)
        assert spare is not None
        second = closing(easycluster.Client(key, HOST, srv.port, connect_timeout=5))
        assert second.os.getpid() == spare  # handed over, not forked
        assert second.eval("6 * 7") == 42
        busy.add(spare)

        # A spare killed while it waits: the next connection is forked on the spot.
        killed = spare_of(srv, busy)
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: killed not in children(srv.proc.pid))
        third = closing(easycluster.Client(key, HOST, srv.port, connect_timeout=5))
        assert third.eval("1 + 1") == 2
        assert third.os.getpid() != killed and third.os.getppid() == srv.proc.pid
        # (the max_connections count is the connections': the spare is not among them)
        assert srv.stop() == 0
        assert not [pid for pid in busy | {killed} if pid_alive(pid)]


def test_a_burst_of_connections_to_a_cold_server(keyfile, key):
    # The connection code loads on the first work (no earlier than the port opens); the
    # first spare is forked then: connections arriving meanwhile are all served.
    with ServerProcess("-k", keyfile, "-b", HOST) as srv:
        results: list = []

        def connect(i: int) -> None:
            with easycluster.Client(key, HOST, srv.port, connect_timeout=10) as c:
                results.append((c.eval(f"{i} * 2"), c.os.getpid()))

        threads = [threading.Thread(target=connect, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r for r, _ in results) == [0, 2, 4, 6, 8, 10]
        assert len({pid for _, pid in results}) == 6  # one process per connection
        assert srv.stop() == 0


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_the_spare_ends_with_its_listener(keyfile, key, how):
    srv = ServerProcess("-k", keyfile, "-b", HOST)
    spare = None
    try:
        with easycluster.Client(key, HOST, srv.port, connect_timeout=5) as c:
            busy = {c.os.getpid()}
        spare = spare_of(srv, busy)
        assert spare is not None
        if how == "SIGTERM":
            assert srv.stop() == 0
        else:
            srv.proc.kill()
            srv.proc.wait(10)
        assert wait_until(lambda: not pid_alive(spare), 10)
    finally:
        srv.stop()
        if spare is not None and pid_alive(spare):
            os.kill(spare, signal.SIGKILL)


def test_a_reload_replaces_the_spare(keyfile, key, closing):
    # A spare forked before a SIGHUP would serve with the old logging level: it goes.
    with ServerProcess("-k", keyfile, "-b", HOST) as srv:
        c = closing(easycluster.Client(key, HOST, srv.port, connect_timeout=5))
        busy = {c.os.getpid()}
        old = spare_of(srv, busy)
        assert old is not None
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(r"reloaded: ")
        assert wait_until(lambda: not pid_alive(old), 10)
        new = spare_of(srv, busy)
        assert new is not None and new != old
        with easycluster.Client(key, HOST, srv.port, connect_timeout=5) as c2:
            assert c2.os.getpid() == new
        assert srv.stop() == 0
