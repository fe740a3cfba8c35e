"""The client channel's keep-alive over a real socketpair: a wait ends in an error when the
stream lost bytes or the peer went silent, and pings cost nothing while replies flow.

The peer here is a Channel of the server's end driven by a small loop that answers pings
the way the server does (``remote.connection``: the body echoed in a pong); a test that
needs a peer misbehaving writes its bytes by hand.
"""

from __future__ import annotations

import socket
import threading

import pytest
from helpers import session_pair

from easycluster.errors import ConnectionLost, IntegrityError
from easycluster.protocol import frames
from easycluster.transport.channel import Channel, KeepAlive

FAST = KeepAlive(first=0.05, most=0.2, limit=2.0)


def pair(keepalive=FAST):
    c, s = session_pair()
    a, b = socket.socketpair()
    return Channel(a, c, keepalive), Channel(b, s)


def answer_pings(server: Channel, seen: list) -> threading.Thread:
    """The server's habit: every ping answered with a pong carrying the same body."""

    def run():
        try:
            while True:
                for f in server.recv():
                    seen.append((f.type, len(f.payload)))
                    if f.type == frames.FT_PING:
                        server.post_later(frames.FT_PONG, bytes(f.payload))
        except ConnectionLost:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_server_end_never_pings():
    c, s = session_pair()
    a, b = socket.socketpair()
    server = Channel(b, s, FAST)  # a server session: the keep-alive does not apply
    try:
        assert server.recv(0.3) == []
        a.settimeout(0.1)
        with pytest.raises(socket.timeout):
            a.recv(1)  # nothing was sent to the client
    finally:
        server.close()
        a.close()


def test_a_quiet_wait_pings_and_a_pong_ends_it():
    client, server = pair()
    seen: list = []
    t = answer_pings(server, seen)
    try:
        [pong] = client.recv_frames()  # no timeout: the keep-alive's pong comes back
        assert pong.type == frames.FT_PONG and len(pong.payload) == 0
        assert seen[0] == (frames.FT_PING, 0)
    finally:
        client.close()
        server.close()
        t.join(5)


def test_a_silent_peer_is_connection_lost_after_the_limit():
    client, server = pair(KeepAlive(first=0.05, most=0.1, limit=0.5))
    try:  # the server's end reads nothing and answers nothing
        with pytest.raises(ConnectionLost, match="no sign of life"):
            client.recv_frames()
    finally:
        client.close()
        server.close()


def test_unanswered_pings_grow():
    client, server = pair(KeepAlive(first=0.02, most=0.05, limit=0.6))
    try:
        with pytest.raises(ConnectionLost, match="no sign of life"):
            client.recv_frames()
        server.sock.settimeout(5)
        sizes: list = []
        while len(sizes) < 4:  # (the pings may take several reads to arrive)
            got = server.recv(1)
            assert got, f"only {sizes} came"
            sizes += [len(f.payload) for f in got if f.type == frames.FT_PING]
        assert sizes[:4] == [0, 1 << 10, 1 << 14, 1 << 16]
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("lost", [1, 3, 200, 5000])
def test_bytes_lost_from_a_reply_are_an_error_not_a_wait(lost):
    client, server = pair()
    seen: list = []
    reply = b"".join(bytes(p) for p in server.session.pack(frames.FT_RESPONSE, b"r" * 20_000))
    mid = len(reply) // 2
    server.sock.sendall(reply[:mid] + reply[mid + lost :])  # lost on the way
    t = answer_pings(server, seen)
    try:
        with pytest.raises(IntegrityError):
            client.recv_frames()  # the pong's padding fills the hole: the MAC fails
        assert seen and seen[0][0] == frames.FT_PING and seen[0][1] >= lost
    finally:
        client.close()
        server.close()
        t.join(5)


def test_bytes_lost_from_a_request_end_the_wait_too():
    # The server waits for the rest of a request that lost bytes; the client's pings fill
    # the hole, the server's reader fails, closes, and the client's wait ends.
    client, server = pair()
    request = b"".join(bytes(p) for p in client.session.pack(frames.FT_REQUEST, b"q" * 20_000))
    client.sock.sendall(request[:5000] + request[5100:])
    failed: list = []

    def serve():
        try:
            server.recv()
        except ConnectionLost as e:
            failed.append(e)
        server.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(ConnectionLost):
            client.recv_frames()
        t.join(5)
        assert isinstance(failed[0], IntegrityError)
    finally:
        client.close()
        server.close()


def test_replies_flowing_send_no_pings():
    client, server = pair(KeepAlive(first=0.5, most=1, limit=5))
    seen: list = []
    t = answer_pings(server, seen)
    try:
        for i in range(200):
            client.send(frames.FT_PING, str(i).encode())  # a stand-in for calls
            [f] = client.recv_frames()
            assert bytes(f.payload) == str(i).encode()
        assert len(seen) == 200  # only ours: the keep-alive never fired
    finally:
        client.close()
        server.close()
        t.join(5)


def test_keepalive_off_reads_as_before():
    client, server = pair(keepalive=None)
    try:
        assert client.recv_frames(0.2) == []
        server.sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.sock.recv(1)  # no ping went out
    finally:
        client.close()
        server.close()


def test_a_reply_in_two_pieces_is_waited_for_without_a_ping():
    # recv_frames' fast path (one plain read) gets only part of the frame: the wait goes
    # on in the keep-alive loop and returns the whole frame, nothing sent meanwhile.
    client, server = pair(KeepAlive(first=5.0, most=5.0, limit=30.0))
    reply = b"".join(bytes(p) for p in server.session.pack(frames.FT_RESPONSE, b"r" * 300))
    server.sock.sendall(reply[:100])
    rest = threading.Event()

    def later():
        rest.wait(5)
        server.sock.sendall(reply[100:])

    t = threading.Thread(target=later, daemon=True)
    t.start()
    try:
        timer = threading.Timer(0.05, rest.set)
        timer.start()
        [f] = client.recv_frames()
        assert f.type == frames.FT_RESPONSE and bytes(f.payload) == b"r" * 300
        assert server.recv(0.05) == []  # no ping went out
    finally:
        client.close()
        server.close()
        t.join(5)


def test_a_wait_with_a_timeout_still_ends_empty():
    client, server = pair()
    try:
        assert client.recv_frames(0.01) == []
        assert client.recv(0) == []
    finally:
        client.close()
        server.close()


def test_the_fast_read_times_out_into_the_keep_alive():
    # First read: the kernel's receive timeout (first) ends it with nothing; the wait then
    # pings at once (a whole interval of silence has passed) and the pong ends it.
    client, server = pair(KeepAlive(first=0.05, most=0.05, limit=2.0))
    seen: list = []
    t = answer_pings(server, seen)
    try:
        [pong] = client.recv_frames()
        assert pong.type == frames.FT_PONG
        assert seen == [(frames.FT_PING, 0)]
    finally:
        client.close()
        server.close()
        t.join(5)
