"""``Channel.poll_frames``: a busy wait for frames over a real socketpair (the client's
end; sessions from an in-memory handshake)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from helpers import session_pair

from easycluster.errors import ConnectionLost, IntegrityError
from easycluster.protocol import frames
from easycluster.transport.channel import Channel


@pytest.fixture
def pair():
    c, s = session_pair()
    a, b = socket.socketpair()
    client, server = Channel(a, c), Channel(b, s)
    yield client, server
    client.close()
    server.close()


def test_only_the_clients_end_of_a_socket_spins(pair):
    client, server = pair
    assert client.spins
    assert not server.spins  # (the server's reads wait for requests that may never come)


def test_nothing_in_time_gives_nothing_and_the_next_read_gets_it(pair):
    client, server = pair
    start = time.monotonic()
    assert client.poll_frames(0.01) == []
    assert time.monotonic() - start >= 0.01
    server.send(frames.FT_RESPONSE, b"late")
    [frame] = client.recv_frames(5)
    assert frame.payload == b"late"


def test_a_frame_sent_during_the_spin_is_returned(pair):
    client, server = pair
    t = threading.Timer(0.05, server.send, (frames.FT_RESPONSE, b"reply"))
    t.start()
    try:
        got = client.poll_frames(30)
    finally:
        t.join()
    assert [(f.type, f.payload) for f in got] == [(frames.FT_RESPONSE, b"reply")]


def test_half_a_frame_in_the_spin_is_kept_for_the_read_that_follows(pair):
    client, server = pair
    wire = b"".join(server.session.pack(frames.FT_RESPONSE, b"x" * 300))
    server.sock.sendall(wire[:100])
    assert client.poll_frames(0.02) == []
    server.sock.sendall(wire[100:])
    [frame] = client.recv_frames(5)
    assert frame.payload == b"x" * 300


def test_the_peer_closing_is_connection_lost(pair):
    client, server = pair
    server.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionLost, match="closed"):
        client.poll_frames(30)


def test_a_frame_cut_off_by_the_peer_closing_is_an_error(pair):
    client, server = pair
    wire = b"".join(server.session.pack(frames.FT_RESPONSE, b"y" * 300))
    server.sock.sendall(wire[:100])
    server.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(IntegrityError, match="truncated"):
        client.poll_frames(30)
