"""The zygote's SPAWN message and the local handshake run in memory (``protocol.control``):
the master's session and the one the server makes from the message talk to each other,
and a message that was not made with its own key gives the server no session."""

from __future__ import annotations

import os

import pytest

from easycluster.errors import IntegrityError, ProtocolError
from easycluster.protocol import frames, handshake
from easycluster.protocol.control import KEY_SIZE, SPAWN, read_spawn, spawn_request

KEY = bytes(range(KEY_SIZE))


def exchange(sender: frames.Session, receiver: frames.Session, body: bytes) -> bytes:
    data = b"".join(bytes(memoryview(p).cast("B")) for p in sender.pack(frames.FT_REQUEST, body))
    view = receiver.reader.buffer()
    view[: len(data)] = data
    [frame] = receiver.reader.advance(len(data))
    return bytes(frame.parts()[0]) if frame.flags else bytes(frame.payload)


def test_the_two_sessions_talk_both_ways():
    msg, client = spawn_request(KEY, handshake.WireOptions(), 2, "/tmp")
    server, verbosity, cwd = read_spawn(msg)
    assert (verbosity, cwd) == (2, "/tmp")
    assert exchange(client, server, b"ping") == b"ping"
    assert exchange(server, client, b"pong") == b"pong"
    assert client.is_client and not server.is_client


def test_the_layout_matches_the_docstring():
    msg, _ = spawn_request(KEY, handshake.WireOptions(), 0, "")
    assert SPAWN.size == len(msg) == 32 + 32 + handshake.CLIENT_HELLO_SIZE + 1
    assert msg[:32] == KEY and msg[64:72] == handshake.MAGIC


def test_the_clients_options_reach_the_server():
    options = handshake.WireOptions(max_frame=1 << 20, compress=True)
    msg, client = spawn_request(KEY, options, 0, "/")
    server, _, _ = read_spawn(msg)
    assert client.compress and server.compress
    assert server.max_send == 1 << 20  # the server keeps to the client's frame limit
    assert client.max_send == handshake.WireOptions().max_frame  # the server's default
    assert exchange(client, server, b"x" * 5000) == b"x" * 5000


def test_every_request_has_sessions_of_its_own():
    msg1, client1 = spawn_request(KEY, handshake.WireOptions(), 0, "/")
    msg2, _ = spawn_request(KEY, handshake.WireOptions(), 0, "/")
    assert msg1[32:64] != msg2[32:64]  # a nonce per request, even under the same key
    server2, _, _ = read_spawn(msg2)
    with pytest.raises(IntegrityError):
        exchange(client1, server2, b"ping")


def test_a_working_directory_that_is_not_utf8_survives():
    cwd = os.fsdecode(b"/tmp/\xff\xfe")
    msg, _ = spawn_request(KEY, handshake.WireOptions(), 300, cwd)
    _, verbosity, got = read_spawn(msg)
    assert got == cwd and verbosity == 255  # (verbosity is one byte: capped)


@pytest.mark.parametrize("offset", [0, 31, 32, 63, 64 + 24, 64 + 87])
def test_a_request_altered_anywhere_gets_no_session(offset):
    msg, _ = spawn_request(KEY, handshake.WireOptions(), 0, "/")
    bad = bytearray(msg)
    bad[offset] ^= 1
    with pytest.raises(ProtocolError, match="local handshake failed"):
        read_spawn(bytes(bad))


def test_a_short_request_is_refused():
    msg, _ = spawn_request(KEY, handshake.WireOptions(), 0, "/")
    with pytest.raises(ProtocolError, match="spawn request of"):
        read_spawn(msg[: SPAWN.size - 1])


def test_a_server_nonce_has_32_bytes():
    with pytest.raises(ValueError):
        handshake.ServerHandshake(KEY, handshake.WireOptions(), b"short")
    hs = handshake.ServerHandshake(KEY, handshake.WireOptions(), b"n" * 32)
    assert hs.hello.endswith(b"n" * 32)
