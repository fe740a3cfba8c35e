"""The sans-IO wire with in-memory pairs: handshake, frames, and every way to break them.

No sockets here: the two ends are wired together by passing bytes by hand, so each test
can alter, replay, reflect, reorder or cut any byte it likes (large frames over a real
Channel are in ``tests/transport/test_channel.py``).
"""

from __future__ import annotations

import _operator
import ast
import hmac
import inspect
import os
import random
import struct
import tracemalloc
import zlib

import pytest
from helpers import session_pair

from easycluster.errors import (
    AuthenticationError,
    ConnectionLost,
    FrameTooLarge,
    IntegrityError,
    ProtocolError,
)
from easycluster.protocol import frames, handshake
from easycluster.protocol.mac import Mac

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def sessions(ckey=KEY, skey=KEY, copts=handshake.WireOptions(), sopts=handshake.WireOptions()):
    """Run a full handshake in memory; return (client session, server session)."""
    return session_pair(ckey, skey, copts, sopts)


def wire_bytes(pieces) -> bytes:
    return b"".join(bytes(memoryview(p).cast("B")) for p in pieces)


def mac_span(frame: bytes):
    """Where the 32-byte MAC of a whole frame lies: after the 20-byte header, or last."""
    if frames.HEADER.size < frames.HEADER_SIZE:
        return frames.HEADER.size, frames.HEADER.size + 32
    return len(frame) - 32, len(frame)


def mac_of(frame: bytes) -> bytes:
    start, stop = mac_span(frame)
    return frame[start:stop]


def feed(reader: frames.FrameReader, data: bytes, chunks=None):
    """Feed ``data`` into ``reader`` through its own buffers; return the frames it gave."""
    got = []
    pos = 0
    rng = random.Random(1234)
    while pos < len(data):
        view = reader.buffer()
        n = len(view) if chunks is None else min(len(view), rng.randint(*chunks))
        n = min(n, len(data) - pos)
        view[:n] = data[pos : pos + n]
        pos += n
        got += reader.advance(n)
    return got


# -- handshake -------------------------------------------------------------------------


def test_handshake_succeeds_and_sessions_talk_both_ways():
    c, s = sessions()
    [f] = feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, b"ping")))
    assert (f.type, bytes(f.payload)) == (frames.FT_REQUEST, b"ping")
    [g] = feed(c.reader, wire_bytes(s.pack(frames.FT_RESPONSE, b"pong")))
    assert (g.type, bytes(g.payload)) == (frames.FT_RESPONSE, b"pong")


def test_handshake_sizes_match_the_docstring():
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    assert len(server.hello) == handshake.SERVER_HELLO_SIZE == 48
    hello = client.receive_hello(server.hello)
    assert len(hello) == handshake.CLIENT_HELLO_SIZE == 88
    reply, _ = server.receive(hello)
    assert len(reply) == handshake.ACCEPT_SIZE == 48
    assert frames.HEADER.size == 20  # direction, type, flags, sequence, length


def test_client_with_wrong_key_is_refused_by_the_server():
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(OTHER_KEY)
    reply, session = server.receive(client.receive_hello(server.hello))
    assert session is None
    assert "wrong key" in server.failure
    assert reply[0] == handshake.STATUS_BAD_PROOF
    assert reply[16:] == bytes(32)  # the server proves nothing to a client that failed
    with pytest.raises(AuthenticationError, match="refused our key"):
        client.receive_accept(reply)


def test_server_without_the_key_cannot_prove_itself():
    # An impostor server that accepts anything: it can only compute its proof with the
    # key it has (the wrong one) or send garbage. Neither passes the client's check.
    client = handshake.ClientHandshake(KEY)
    impostor = handshake.ServerHandshake(OTHER_KEY)
    hello = client.receive_hello(impostor.hello)
    head = struct.pack(">BBHIQ", handshake.STATUS_OK, 0, 1, 0, frames.DEFAULT_MAX_FRAME)
    wrong = hmac.new(
        OTHER_KEY, b"easycluster server proof" + impostor.hello + hello + head, "sha256"
    ).digest()
    for proof in (wrong, os.urandom(32), bytes(32)):
        with pytest.raises(AuthenticationError, match="could not prove"):
            client.receive_accept(head + proof)


def test_replayed_client_hello_fails_against_a_new_server():
    first = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    hello = client.receive_hello(first.hello)
    assert first.receive(hello)[1] is not None  # genuine the first time
    second = handshake.ServerHandshake(KEY)  # fresh nonce
    reply, session = second.receive(hello)
    assert session is None and reply[0] == handshake.STATUS_BAD_PROOF


def test_replayed_server_accept_fails_against_a_new_client():
    server = handshake.ServerHandshake(KEY)
    old = handshake.ClientHandshake(KEY)
    reply, _ = server.receive(old.receive_hello(server.hello))
    new = handshake.ClientHandshake(KEY)  # same server hello, but its own fresh nonce
    new.receive_hello(server.hello)
    with pytest.raises(AuthenticationError):
        new.receive_accept(reply)


def test_reflected_client_proof_is_not_a_server_proof():
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    hello = client.receive_hello(server.hello)
    head = struct.pack(">BBHIQ", handshake.STATUS_OK, 0, 1, 0, frames.DEFAULT_MAX_FRAME)
    with pytest.raises(AuthenticationError):
        client.receive_accept(head + hello[56:88])  # the client's own proof sent back


def test_reflected_server_hello_as_client_hello_is_refused():
    # A peer that echoes a server's greeting back at it (padded to size) is no client.
    server = handshake.ServerHandshake(KEY)
    reply, session = server.receive((server.hello * 2)[: handshake.CLIENT_HELLO_SIZE])
    assert session is None and reply[0] in (handshake.STATUS_BAD_PROOF, handshake.STATUS_REFUSED)


@pytest.mark.parametrize(
    "offset,value",
    [
        (8, struct.pack(">H", 0)),  # chosen protocol version
        (8, struct.pack(">H", handshake.PROTOCOL_MAX + 1)),
        (10, struct.pack(">H", 1)),  # options: compression turned on by someone else
        (12, b"\x00\x00\x00\x01"),  # reserved
        (16, struct.pack(">Q", 1)),  # max frame
        (24, b"\xff"),  # client nonce
    ],
)
def test_altered_client_hello_fails(offset, value):
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    hello = bytearray(client.receive_hello(server.hello))
    assert hello[offset : offset + len(value)] != value
    hello[offset : offset + len(value)] = value
    reply, session = server.receive(bytes(hello))
    assert session is None and reply[0] == handshake.STATUS_BAD_PROOF


@pytest.mark.parametrize(
    "offset,value",
    [
        (8, struct.pack(">HH", 0, 0)),  # version range downgraded on the way to the client
        (12, b"\x00\x00\x00\x01"),
        (16, b"\xff"),  # server nonce
    ],
)
def test_altered_server_hello_fails(offset, value):
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    hello = bytearray(server.hello)
    hello[offset : offset + len(value)] = value
    try:
        client_hello = client.receive_hello(bytes(hello))
    except ProtocolError:
        return  # refused outright (no common version): also a failure, as wanted
    reply, session = server.receive(client_hello)
    assert session is None and reply[0] == handshake.STATUS_BAD_PROOF


@pytest.mark.parametrize(
    "offset,value",
    [
        (1, b"\x01"),  # options agreed: compression switched on
        (2, struct.pack(">H", 0)),  # version in force
        (4, b"\x00\x00\x00\x01"),
        (8, struct.pack(">Q", 1 << 62)),  # server's frame limit raised
    ],
)
def test_altered_server_accept_fails(offset, value):
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    reply, _ = server.receive(client.receive_hello(server.hello))
    bad = bytearray(reply)
    bad[offset : offset + len(value)] = value
    with pytest.raises(AuthenticationError):
        client.receive_accept(bytes(bad))


def test_every_bit_of_the_client_hello_matters():
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    hello = client.receive_hello(server.hello)
    for bit in range(handshake.CLIENT_HELLO_SIZE * 8):
        bad = bytearray(hello)
        bad[bit // 8] ^= 1 << (bit % 8)
        reply, session = server.receive(bytes(bad))
        assert session is None, bit
        assert reply[0] in (handshake.STATUS_BAD_PROOF, handshake.STATUS_REFUSED), bit


def test_every_bit_of_the_server_accept_matters():
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    reply, _ = server.receive(client.receive_hello(server.hello))
    for bit in range(handshake.ACCEPT_SIZE * 8):
        bad = bytearray(reply)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ConnectionLost):  # AuthenticationError or ProtocolError
            client.receive_accept(bytes(bad))


def test_bad_greetings_are_protocol_errors():
    client = handshake.ClientHandshake(KEY)
    with pytest.raises(ProtocolError, match="not an EasyCluster server"):
        client.receive_hello(b"SSH-2.0-OpenSSH_9.2\r\n".ljust(48, b"\0"))
    with pytest.raises(ProtocolError):
        client.receive_hello(handshake.ServerHandshake(KEY).hello[:47])
    newer = handshake.MAGIC + struct.pack(">HHI", 7, 9, 0) + bytes(32)
    with pytest.raises(ProtocolError, match="no common protocol version"):
        client.receive_hello(newer)
    server = handshake.ServerHandshake(KEY)
    reply, session = server.receive(b"GET / HTTP/1.1\r\n".ljust(88, b"x"))
    assert session is None and reply[0] == handshake.STATUS_REFUSED
    assert "bad magic" in server.failure
    reply, session = server.receive(b"")
    assert session is None and reply[0] == handshake.STATUS_REFUSED


def test_truncated_accept_is_an_error():
    server = handshake.ServerHandshake(KEY)
    client = handshake.ClientHandshake(KEY)
    reply, _ = server.receive(client.receive_hello(server.hello))
    with pytest.raises(ProtocolError, match="truncated"):
        client.receive_accept(reply[:-1])


def test_empty_keys_are_refused_everywhere():
    for bad in (b"", bytearray(), None):
        with pytest.raises(ValueError):
            handshake.ServerHandshake(bad)
        with pytest.raises(ValueError):
            handshake.ClientHandshake(bad)
    with pytest.raises(TypeError):
        handshake.ClientHandshake("a string key")


def test_sessions_differ_per_handshake():
    c1, s1 = sessions()
    c2, s2 = sessions()
    a = wire_bytes(c1.pack(frames.FT_REQUEST, b"same"))
    b = wire_bytes(c2.pack(frames.FT_REQUEST, b"same"))
    assert a[: frames.HEADER.size] == b[: frames.HEADER.size]  # the same header...
    assert mac_of(a) != mac_of(b)  # ...but another MAC


# -- frames: round trips ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 100, frames._SMALL, frames._SMALL + 1, 300_000])
def test_round_trip_sizes(size):
    c, s = sessions()
    body = os.urandom(size)
    [f] = feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, body)))
    assert bytes(f.parts()[0]) == body
    assert s.reader.pending() == 0


def test_round_trip_multi_mib_in_random_chunks():
    c, s = sessions()
    bodies = [os.urandom(3 * 1024 * 1024 + 17), b"small", os.urandom(70_000)]
    data = b"".join(wire_bytes(c.pack(frames.FT_REQUEST, b)) for b in bodies)
    got = feed(s.reader, data, chunks=(1, 200_000))
    assert [bytes(f.parts()[0]) for f in got] == bodies
    s.reader.check_eof()  # nothing left over


def test_many_small_frames_byte_by_byte():
    c, s = sessions()
    bodies = [f"frame {i}".encode() * i for i in range(30)]
    data = b"".join(wire_bytes(c.pack(frames.FT_REQUEST, b)) for b in bodies)
    got = feed(s.reader, data, chunks=(1, 1))
    assert [bytes(f.payload) for f in got] == bodies


def test_round_trip_out_of_band_buffers():
    c, s = sessions()
    bufs = [os.urandom(100_000), bytearray(b"xy" * 40_000), memoryview(b"")]
    data = wire_bytes(c.pack(frames.FT_RESPONSE, [b"main-", b"part"], bufs))
    [f] = feed(s.reader, data, chunks=(1000, 50_000))
    assert f.flags & frames.FLAG_OOB
    main, got = f.parts()
    assert bytes(main) == b"main-part"
    assert [bytes(g) for g in got] == [bytes(b) for b in bufs]


def test_round_trip_compressed():
    c, s = sessions(copts=handshake.WireOptions(compress=True))
    assert c.compress and s.compress
    body = b"abc" * 100_000
    data = wire_bytes(c.pack(frames.FT_REQUEST, body))
    [f] = feed(s.reader, data)
    assert f.flags & frames.FLAG_ZLIB and len(data) < len(body) // 10
    assert bytes(f.parts()[0]) == body


def test_compression_is_the_clients_choice_and_both_ends_agree():
    for client_wants in (False, True):
        for server_wants in (False, True):
            c, s = sessions(
                copts=handshake.WireOptions(compress=client_wants),
                sopts=handshake.WireOptions(compress=server_wants),
            )
            assert c.compress == s.compress == client_wants


# -- frames: tampering -----------------------------------------------------------------


def flip(data: bytes, bit: int) -> bytes:
    bad = bytearray(data)
    bad[bit // 8] ^= 1 << (bit % 8)
    return bytes(bad)


def assert_rejected(reader: frames.FrameReader, data: bytes, where: int):
    """The reader must raise on ``data`` (at once, or at end of stream if the altered
    length asks it to wait for more bytes), and must never hand out a frame."""
    with pytest.raises((IntegrityError, FrameTooLarge)):
        got = feed(reader, data)
        assert got == [], f"altered bit {where} was accepted"
        reader.check_eof()


def test_every_bit_flip_of_a_small_frame_is_rejected():
    c, s = sessions()
    key = s.reader._key
    frame = wire_bytes(c.pack(frames.FT_REQUEST, b"payload that matters" * 3))
    for bit in range(len(frame) * 8):  # a fresh reader each time: one that raised is dead
        assert_rejected(
            frames.FrameReader(key, frames.DIR_C2S, max_size=1 << 20), flip(frame, bit), bit
        )


def test_sampled_bit_flips_of_a_large_frame_are_rejected():
    c, s = sessions()
    key = s.reader._key
    frame = wire_bytes(c.pack(frames.FT_REQUEST, os.urandom(600_000)))  # > scratch buffer
    rng = random.Random(42)
    start, stop = mac_span(frame)
    header_bits = list(range(frames.HEADER.size * 8))
    mac_bits = list(range(start * 8, stop * 8))
    body_bits = rng.sample(
        [
            b
            for b in range(len(frame) * 8)
            if not (b < frames.HEADER.size * 8 or start * 8 <= b < stop * 8)
        ],
        40,
    )
    for bit in header_bits[::3] + mac_bits[::5] + body_bits + [len(frame) * 8 - 1]:
        assert_rejected(
            frames.FrameReader(key, frames.DIR_C2S, max_size=1 << 20), flip(frame, bit), bit
        )


def test_bit_flips_in_compressed_and_oob_frames_are_rejected():
    c, s = sessions(copts=handshake.WireOptions(compress=True))
    key = s.reader._key
    frame = wire_bytes(c.pack(frames.FT_REQUEST, b"m" * 2000, [b"buffer" * 100]))
    for bit in range(0, len(frame) * 8, 7):
        assert_rejected(
            frames.FrameReader(key, frames.DIR_C2S, max_size=1 << 20), flip(frame, bit), bit
        )


def test_unflipped_frame_passes_the_same_fresh_reader():
    # The control for the flip tests: a fresh reader with that key does accept the frame.
    c, s = sessions()
    frame = wire_bytes(c.pack(frames.FT_REQUEST, b"payload that matters" * 3))
    reader = frames.FrameReader(s.reader._key, frames.DIR_C2S, max_size=1 << 20)
    assert len(feed(reader, frame)) == 1


def test_replayed_frame_in_the_same_session_is_a_sequence_error():
    c, s = sessions()
    frame = wire_bytes(c.pack(frames.FT_REQUEST, b"once"))
    assert len(feed(s.reader, frame)) == 1
    with pytest.raises(IntegrityError, match="sequence 0 where 1"):
        feed(s.reader, frame)


def test_frame_from_another_session_fails_the_mac():
    c1, _ = sessions()
    _, s2 = sessions()
    frame = wire_bytes(c1.pack(frames.FT_REQUEST, b"from session one"))
    with pytest.raises(IntegrityError, match="authentication code"):
        feed(s2.reader, frame)


def test_frame_from_another_session_with_another_key_fails_the_mac():
    c1, _ = sessions(OTHER_KEY, OTHER_KEY)
    _, s2 = sessions()
    with pytest.raises(IntegrityError, match="authentication code"):
        feed(s2.reader, wire_bytes(c1.pack(frames.FT_REQUEST, b"x")))


def test_reflected_frames_are_direction_errors():
    c, s = sessions()
    # the client's own frame sent back to it, and the server's to the server
    with pytest.raises(IntegrityError, match="wrong direction"):
        feed(c.reader, wire_bytes(c.pack(frames.FT_REQUEST, b"mine")))
    with pytest.raises(IntegrityError, match="wrong direction"):
        feed(s.reader, wire_bytes(s.pack(frames.FT_RESPONSE, b"mine")))


def test_direction_byte_rewritten_fails_the_mac():
    c, s = sessions()
    frame = bytearray(wire_bytes(s.pack(frames.FT_RESPONSE, b"reflected")))
    frame[0] = frames.DIR_C2S  # the attacker fixes up the direction; the MAC catches it
    with pytest.raises(IntegrityError, match="authentication code"):
        feed(s.reader, bytes(frame))


def test_reordered_frames_are_rejected():
    c, s = sessions()
    first = wire_bytes(c.pack(frames.FT_REQUEST, b"first"))
    second = wire_bytes(c.pack(frames.FT_REQUEST, b"second"))
    with pytest.raises(IntegrityError, match="sequence 1 where 0"):
        feed(s.reader, second + first)


def test_sequence_number_rewritten_fails_the_mac():
    c, s = sessions()
    c.pack(frames.FT_REQUEST, b"dropped by an attacker")
    second = bytearray(wire_bytes(c.pack(frames.FT_REQUEST, b"second")))
    second[4:12] = struct.pack(">Q", 0)
    with pytest.raises(IntegrityError, match="authentication code"):
        feed(s.reader, bytes(second))


def test_dropped_frame_is_detected():
    c, s = sessions()
    c.pack(frames.FT_REQUEST, b"lost")
    with pytest.raises(IntegrityError, match="sequence 1 where 0"):
        feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, b"next")))


@pytest.mark.parametrize("size", [10, 100_000, 1_000_000])
def test_truncated_stream_is_detected_at_eof(size):
    c, s = sessions()
    frame = wire_bytes(c.pack(frames.FT_REQUEST, os.urandom(size)))
    for cut in (1, frames.HEADER_SIZE - 1, frames.HEADER_SIZE, len(frame) - 1):
        reader = frames.FrameReader(s.reader._key, frames.DIR_C2S)
        assert feed(reader, frame[:cut]) == []
        assert reader.pending() == cut
        with pytest.raises(IntegrityError, match="truncated"):
            reader.check_eof()


def test_check_eof_is_quiet_between_frames():
    c, s = sessions()
    s.reader.check_eof()
    feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, os.urandom(500_000))))
    s.reader.check_eof()


# -- large frames: sent in chunks, hashed as they arrive --------------------------------


def chunked_bytes(session: frames.Session, body, buffers=(), chunk=1 << 16) -> bytes:
    return b"".join(
        wire_bytes(g) for g in session.pack_chunks(frames.FT_REQUEST, body, buffers, chunk=chunk)
    )


def feed_pieces(reader: frames.FrameReader, data: bytes, size: int, got=None):
    """Feed ``data`` in pieces of at most ``size`` bytes; return the frames given (added to
    ``got``, which the caller still holds if the reader raises part-way)."""
    got = [] if got is None else got
    pos = 0
    while pos < len(data):
        view = reader.buffer()
        n = min(len(view), size, len(data) - pos)
        view[:n] = data[pos : pos + n]
        pos += n
        got += reader.advance(n)
    return got


def test_pack_chunks_groups_hold_chunk_bytes_and_end_with_the_mac():
    c, s = sessions()
    body = os.urandom(300_000)
    groups = list(c.pack_chunks(frames.FT_REQUEST, body, chunk=65_536))
    sizes = [sum(memoryview(p).nbytes for p in g) for g in groups]
    assert sizes[0] == frames.HEADER_SIZE + 65_536
    assert sizes[1:-1] == [65_536] * (len(groups) - 2)
    assert sizes[-1] == 300_000 % 65_536 + frames.MAC_SIZE
    [f] = feed(s.reader, b"".join(wire_bytes(g) for g in groups))
    assert bytes(f.payload) == body


def test_pack_chunks_small_frames_are_one_group_like_pack():
    c1, _ = sessions()
    c2 = frames.Session(c1._send_key, b"", c1._send_dir, frames.DIR_S2C)  # the same stream
    for body in (b"", b"tiny", os.urandom(frames._SMALL + 1), os.urandom(frames.CHUNK)):
        [group] = c1.pack_chunks(frames.FT_REQUEST, body)
        assert wire_bytes(group) == wire_bytes(c2.pack(frames.FT_REQUEST, body))
    assert len(c1.pack(frames.FT_REQUEST, b"tiny")) == 1  # small: one buffer, one sendall


@pytest.mark.parametrize("chunk", [1000, 65_535, 65_536, 100_001, 499_999])
def test_pack_chunks_with_buffers_and_compression_round_trip(chunk):
    for compress in (False, True):
        c, s = sessions(copts=handshake.WireOptions(compress=compress))
        bufs = [
            os.urandom(150_000),
            memoryview(b""),
            bytearray(b"ab" * 120_000),
            memoryview(os.urandom(4096)).cast("B", (64, 64)),
        ]
        data = chunked_bytes(c, [b"main-", b"part"], bufs, chunk=chunk)
        [f] = feed(s.reader, data, chunks=(1000, 90_000))
        main, got = f.parts()
        assert bytes(main) == b"main-part"
        assert [bytes(g) for g in got] == [bytes(b) for b in bufs]


def test_pack_chunks_checks_the_limit_before_numbering():
    c, s = sessions(sopts=handshake.WireOptions(max_frame=100_000))
    with pytest.raises(FrameTooLarge, match="peer's limit"):
        c.pack_chunks(frames.FT_REQUEST, bytes(100_001), chunk=1000)  # raises at the call
    body = os.urandom(100_000)
    [f] = feed(s.reader, chunked_bytes(c, body, chunk=1000))  # sequence 0 still unused
    assert bytes(f.payload) == body


@pytest.mark.parametrize(
    "piece, size", [(1, 300_000), (7, 1_000_000), (1 << 16, 3_000_017), (1 << 20, 3_000_017)]
)
def test_large_frame_fed_in_small_pieces_verifies(piece, size):
    c, s = sessions()
    body = os.urandom(size)
    data = chunked_bytes(c, body) + wire_bytes(c.pack(frames.FT_REQUEST, b"after"))
    got = feed_pieces(s.reader, data, piece)
    assert [bytes(f.payload) for f in got] == [body, b"after"]
    assert got[0].type == frames.FT_REQUEST and got[0].flags == 0
    s.reader.check_eof()


def test_large_frame_altered_anywhere_is_rejected_and_never_handed_on():
    c, s = sessions()
    key = s.reader._key
    size = 1_000_000
    frame = chunked_bytes(c, os.urandom(size), chunk=1 << 16)
    first = frames.HEADER_SIZE + 5
    places = {
        "first chunk": first,
        "middle chunk": frames.HEADER_SIZE + size // 2,
        "last chunk": frames.HEADER_SIZE + size - 1,
        "last payload byte of a chunk": frames.HEADER_SIZE + (1 << 16) - 1,
        "trailer": len(frame) - 1,
        "first trailer byte": len(frame) - frames.MAC_SIZE,
    }
    assert len(feed_pieces(frames.FrameReader(key, frames.DIR_C2S), frame, 4097)) == 1  # control
    for where, offset in places.items():
        for piece in (1 << 16, 4097):
            reader = frames.FrameReader(key, frames.DIR_C2S)
            got: list = []
            with pytest.raises(IntegrityError, match="authentication code"):
                feed_pieces(reader, flip(frame, offset * 8 + 3), piece, got)
            assert got == [], where
            with pytest.raises(IntegrityError):  # and the reader stays dead
                reader.advance(0)


def test_large_frame_cut_short_is_truncated_at_eof():
    c, s = sessions()
    frame = chunked_bytes(c, os.urandom(700_000))
    for cut in (frames.HEADER_SIZE + 1, 300_000, len(frame) - frames.MAC_SIZE, len(frame) - 1):
        reader = frames.FrameReader(s.reader._key, frames.DIR_C2S)
        assert feed_pieces(reader, frame[:cut], 50_000) == []
        assert reader.pending() == cut
        with pytest.raises(IntegrityError, match="truncated"):
            reader.check_eof()


# -- frames: size limits ---------------------------------------------------------------


def header(length: int, seq: int = 0, direction: int = frames.DIR_C2S) -> bytes:
    # whatever fixed part follows the 20 header bytes (a leading MAC in some layouts)
    pad = bytes(frames.HEADER_SIZE - frames.HEADER.size)
    return frames.HEADER.pack(direction, frames.FT_REQUEST, 0, seq, length) + pad


@pytest.mark.parametrize("length", [(1 << 20) + 1, 1 << 40, (1 << 64) - 1])
def test_oversize_header_rejected_before_payload_and_allocation(length):
    reader = frames.FrameReader(KEY, frames.DIR_C2S, max_size=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge, match="above the 1048576-byte limit"):
            feed(reader, header(length))  # the header alone: no payload ever sent
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # nothing near the announced size was allocated


def test_default_limit_is_one_gib():
    assert frames.DEFAULT_MAX_FRAME == 1 << 30
    reader = frames.FrameReader(KEY, frames.DIR_C2S)
    with pytest.raises(FrameTooLarge):
        feed(reader, header((1 << 30) + 1))


def test_oversize_header_rejected_even_in_a_partial_chunk():
    # Header arrives in two pieces; the error comes with the piece that completes it.
    reader = frames.FrameReader(KEY, frames.DIR_C2S, max_size=1000)
    head = header(1001)
    half = frames.HEADER.size // 2
    view = reader.buffer()
    view[:half] = head[:half]
    assert reader.advance(half) == []
    rest = head[half : frames.HEADER_SIZE]
    view = reader.buffer()
    view[: len(rest)] = rest
    with pytest.raises(FrameTooLarge):
        reader.advance(len(rest))


def test_sender_refuses_frames_above_the_peer_limit():
    c, s = sessions(sopts=handshake.WireOptions(max_frame=1000))
    assert c.max_send == 1000
    with pytest.raises(FrameTooLarge, match="peer's limit"):
        c.pack(frames.FT_REQUEST, bytes(1001))
    # the sequence number was not used up: the next frame still passes
    [f] = feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, b"ok")))
    assert bytes(f.payload) == b"ok"


def test_frame_within_limit_passes_and_one_byte_more_does_not():
    c, s = sessions(sopts=handshake.WireOptions(max_frame=5000))
    c.max_send = 1 << 30  # a sender that ignores the announced limit
    assert len(feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, bytes(5000))))) == 1
    with pytest.raises(FrameTooLarge):
        feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, bytes(5001))))


def test_zlib_bomb_is_bounded_by_max_frame():
    bomb = zlib.compress(bytes(50 * 1024 * 1024), 9)  # ~50 KiB that inflate to 50 MiB
    assert len(bomb) < 100_000
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, bomb, max_size=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge, match="expands beyond"):
            frame.parts()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # bounded by the limit, not by the 50 MiB it would inflate to


def test_zlib_bomb_through_an_authenticated_session():
    c, s = sessions(
        copts=handshake.WireOptions(compress=True), sopts=handshake.WireOptions(max_frame=1 << 20)
    )
    c.max_send = 1 << 30
    [f] = feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, bytes(8 * 1024 * 1024))))
    assert f.flags & frames.FLAG_ZLIB and len(f.payload) < 1 << 20  # the header passes...
    with pytest.raises(FrameTooLarge):  # ...but decompression stops at the limit
        f.parts()


def test_decompression_exactly_at_the_limit_passes():
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, zlib.compress(bytes(4096)), 4096)
    assert bytes(frame.parts()[0]) == bytes(4096)
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, zlib.compress(bytes(4097)), 4096)
    with pytest.raises(FrameTooLarge):
        frame.parts()


def test_incomplete_compressed_payload_is_a_protocol_error():
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, zlib.compress(b"x" * 1000)[:-4])
    with pytest.raises(ProtocolError, match="incomplete"):
        frame.parts()


def test_corrupt_compressed_payload_is_a_protocol_error():
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, b"not zlib at all")
    with pytest.raises(ProtocolError):
        frame.parts()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x00",
        struct.pack(">I", 1),  # table cut short
        struct.pack(">IQ", 1, 100) + b"short",  # buffer longer than the frame
        struct.pack(">I", 0xFFFFFFFF) + bytes(8),  # absurd buffer count
    ],
)
def test_malformed_buffer_tables_are_protocol_errors(payload):
    with pytest.raises(ProtocolError):
        frames.Frame(frames.FT_REQUEST, frames.FLAG_OOB, payload).parts()


# -- the code itself -------------------------------------------------------------------


def test_macs_are_compared_with_compare_digest(monkeypatch):
    src = inspect.getsource(handshake) + "\n" + inspect.getsource(frames)
    assert inspect.getsource(handshake).count(" compare_digest(") == 2  # the two proofs
    assert inspect.getsource(frames).count(" compare_digest(") >= 2  # small, big frames
    # (protocol.mac's: the constant-time C comparison of the operator module, which
    # hmac.compare_digest is where OpenSSL is missing; OpenSSL's own is alike)
    assert handshake.compare_digest is frames.compare_digest is _operator._compare_digest
    secret_names = {"mac", "proof", "digest", "_mac", "expected"}
    for node in ast.walk(ast.parse(src)):  # no MAC or proof is ever compared with ==
        if isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            assert not names & secret_names, ast.unparse(node)
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(handshake, "compare_digest", spy)
    monkeypatch.setattr(frames, "compare_digest", spy)
    c, s = sessions()
    assert calls == [(32, 32), (32, 32)]  # the client's proof, then the server's
    feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, b"x")))
    feed(s.reader, wire_bytes(c.pack(frames.FT_REQUEST, os.urandom(200_000))))
    # one MAC per frame, small and large; the large one also spans reads (it is bigger
    # than a new reader's first buffer), so its header's tag is checked before it
    assert calls[2:] == [(32, 32), (16, 16), (32, 32)]


PROTOCOL_DIR = os.path.dirname(os.path.abspath(frames.__file__))


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(PROTOCOL_DIR) if f.endswith(".py")))
def test_protocol_is_sans_io(name):
    with open(os.path.join(PROTOCOL_DIR, name)) as f:
        src = f.read()
    for banned in (
        "import socket",
        "import threading",
        "import time",
        "import select",
        "import pickle",
        "import cloudpickle",
        "serialize",
    ):
        assert banned not in src, banned


def test_header_is_checked_before_the_mac_is_computed(monkeypatch):
    # A header with a bad sequence number is refused without hashing any payload.
    c, s = sessions()
    c.pack(frames.FT_REQUEST, b"skipped")
    frame = wire_bytes(c.pack(frames.FT_REQUEST, os.urandom(100)))
    monkeypatch.setattr(Mac, "digest", lambda *a: pytest.fail("MAC computed"))
    monkeypatch.setattr(Mac, "start", lambda *a: pytest.fail("MAC computed"))
    with pytest.raises(IntegrityError, match="sequence"):
        feed(s.reader, frame)
