"""The frame header's own tag (protocol 2), sans-IO: a length is trusted for waiting or
allocating only once the tag says the sender wrote it; and the handshake refuses a peer
that speaks another version. Bytes are passed by hand, no sockets."""

from __future__ import annotations

import hmac
import os
import struct
import tracemalloc
import zlib

import pytest
from helpers import session_pair

from easycluster.errors import FrameTooLarge, IntegrityError, ProtocolError
from easycluster.protocol import frames, handshake
from easycluster.protocol.mac import TAG_SIZE, Mac


def wire(pieces) -> bytes:
    return b"".join(bytes(memoryview(p).cast("B")) for p in pieces)


def feed(reader: frames.FrameReader, data: bytes) -> list:
    got, pos = [], 0
    while pos < len(data):
        view = reader.buffer()
        n = min(len(view), len(data) - pos)
        view[:n] = data[pos : pos + n]
        pos += n
        got += reader.advance(n)
    return got


def fresh_reader(s: frames.Session, max_size: int = frames.DEFAULT_MAX_FRAME):
    return frames.FrameReader(s.reader._key, frames.DIR_C2S, max_size)


@pytest.mark.parametrize("size", [0, 5, frames._SMALL + 1, 300_000])
def test_layout_fields_tag_payload_mac(size):
    # The drawing in the package docstring, byte by byte, for each way a frame is packed.
    c, s = session_pair()
    mac = Mac(s.reader._key)
    body = os.urandom(size)
    packed = [
        wire(c.pack(frames.FT_REQUEST, body)),
        b"".join(wire(g) for g in c.pack_chunks(frames.FT_REQUEST, body, chunk=1000)),
    ]
    for seq, frame in enumerate(packed):
        assert frames.HEADER_SIZE == 36 and TAG_SIZE == 16 and frames.MAC_SIZE == 32
        assert len(frame) == 36 + size + 32
        fields = frame[:20]
        assert frames.HEADER.unpack(fields) == (frames.DIR_C2S, frames.FT_REQUEST, 0, seq, size)
        assert frame[20:36] == hmac.new(s.reader._key, fields, "sha256").digest()[:16]
        assert frame[20:36] == mac.tag(fields)
        assert frame[36 : 36 + size] == body
        assert frame[36 + size :] == hmac.new(s.reader._key, frame[: 36 + size], "sha256").digest()
    assert [bytes(f.payload) for f in feed(s.reader, b"".join(packed))] == [body, body]


@pytest.mark.parametrize("bit", range(64))
def test_flipped_length_bit_is_an_error_at_once(bit):
    # The whole frame arrives and nothing more: before the tag a longer length was waited
    # for (and, past the scratch buffer, allocated); a shorter one failed the MAC.
    c, s = session_pair()
    frame = bytearray(wire(c.pack(frames.FT_REQUEST, os.urandom(3000))))
    frame[19 - bit // 8] ^= 1 << (bit % 8)
    reader = fresh_reader(s)
    with pytest.raises((IntegrityError, FrameTooLarge)):
        feed(reader, bytes(frame))  # raised here, not at end of stream


@pytest.mark.parametrize("bit", [18, 24, 29])  # 256 KiB, 16 MiB, 512 MiB more
def test_forged_length_allocates_nothing_and_waits_for_nothing(bit):
    c, s = session_pair()
    frame = bytearray(wire(c.pack(frames.FT_REQUEST, os.urandom(100))))
    frame[19 - bit // 8] ^= 1 << (bit % 8)
    reader = fresh_reader(s)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="header authentication code"):
            feed(reader, bytes(frame[: frames.HEADER_SIZE]))  # fields and tag only
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 16  # nothing of the announced size
    assert reader.pending() == frames.HEADER_SIZE


def test_a_tag_checked_for_one_frame_is_not_trusted_for_the_next():
    # Frame A's header arrives first (its tag checked while A is awaited); the read that
    # completes A also brings B's header with a forged length: B's own tag must be
    # checked, in that same read, before B's length decides anything.
    c, s = session_pair()
    a = wire(c.pack(frames.FT_REQUEST, os.urandom(3000)))
    b = bytearray(wire(c.pack(frames.FT_REQUEST, os.urandom(100))))
    b[19 - 24 // 8] ^= 1 << (24 % 8)  # 16 MiB more
    reader = fresh_reader(s)
    assert feed(reader, a[:100]) == []  # (A's tag checked out)
    assert reader.missing() == len(a) - 100
    with pytest.raises(IntegrityError, match="header authentication code"):
        feed(reader, a[100:] + bytes(b[: frames.HEADER_SIZE]))


def test_fields_are_checked_before_the_tag_arrives():
    # An oversize or out-of-sequence header is refused from its 20 bytes of fields (what
    # a peer sending only those would get), with no MAC computed.
    reader = frames.FrameReader(b"k" * 32, frames.DIR_C2S, max_size=1000)
    with pytest.raises(FrameTooLarge):
        feed(reader, frames.HEADER.pack(frames.DIR_C2S, frames.FT_REQUEST, 0, 0, 1001))
    reader = frames.FrameReader(b"k" * 32, frames.DIR_C2S)
    with pytest.raises(IntegrityError, match="sequence 5 where 0"):
        feed(reader, frames.HEADER.pack(frames.DIR_C2S, frames.FT_REQUEST, 0, 5, 10))


def test_genuine_header_is_trusted_and_the_rest_awaited():
    c, s = session_pair()
    frame = wire(c.pack(frames.FT_REQUEST, os.urandom(600_000)))  # its own buffer
    reader = fresh_reader(s)
    assert feed(reader, frame[:100]) == []
    assert reader.missing() == len(frame) - 100
    [f] = feed(reader, frame[100:])
    assert len(f.payload) == 600_000 and reader.missing() == 0


def test_missing_counts_what_completes_the_frame_begun():
    c, s = session_pair()
    frame = wire(c.pack(frames.FT_REQUEST, b"x" * 1000))
    reader = fresh_reader(s)
    assert reader.missing() == 0
    feed(reader, frame[:10])
    assert reader.missing() == frames.HEADER_SIZE - 10  # at least the rest of the header
    feed(reader, frame[10:50])
    assert reader.missing() == len(frame) - 50
    feed(reader, frame[50:])
    assert reader.missing() == 0


@pytest.mark.parametrize("where", ["fields", "tag", "payload"])
def test_bytes_dropped_from_a_frame_are_noticed_when_the_next_one_comes(where):
    # Bytes lost: the frame is short, and the next frame's bytes complete it (the MAC
    # fails) or are read as a header (the tag or the fields fail). An error either way,
    # at once: nobody waits for the end of the stream.
    c, s = session_pair()
    first = wire(c.pack(frames.FT_REQUEST, os.urandom(2000)))
    second = wire(c.pack(frames.FT_REQUEST, os.urandom(2000)))
    at = {"fields": 13, "tag": 25, "payload": 1000}[where]
    with pytest.raises((IntegrityError, FrameTooLarge)):
        feed(fresh_reader(s), first[:at] + first[at + 3 :] + second)


def test_injected_bytes_between_frames_are_an_error():
    c, s = session_pair()
    first = wire(c.pack(frames.FT_REQUEST, b"one"))
    second = wire(c.pack(frames.FT_REQUEST, b"two" * 1000))
    reader = fresh_reader(s)
    with pytest.raises(IntegrityError):
        feed(reader, first + b"\x01\x01\x00\x00" + second)


def test_tag_is_compared_with_compare_digest(monkeypatch):
    c, s = session_pair()
    frame = wire(c.pack(frames.FT_REQUEST, os.urandom(1000)))
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(frames, "compare_digest", spy)
    reader = fresh_reader(s)
    feed(reader, frame[:100])  # incomplete: the tag is checked
    feed(reader, frame[100:])  # complete: the MAC
    assert calls == [(TAG_SIZE, TAG_SIZE), (32, 32)]


# -- decompression, bounded as it goes --------------------------------------------------


def test_decompression_bomb_never_holds_much_more_than_the_limit():
    limit = 16 << 20
    bomb = zlib.compress(bytes(64 << 20), 9)
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, bomb, max_size=limit)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge, match="expands beyond"):
            frame.parts()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit * 1.3  # one inflate bounded by the limit held about twice that


def test_decompression_up_to_the_limit_holds_about_the_payload():
    limit = 16 << 20
    payload = zlib.compress(bytes(limit), 9)
    frame = frames.Frame(frames.FT_REQUEST, frames.FLAG_ZLIB, payload, max_size=limit)
    tracemalloc.start()
    try:
        main, _ = frame.parts()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(main) == limit and not any(main[:: 1 << 16])
    assert peak < limit * 1.3


def test_trailing_bytes_and_a_missing_end_in_compressed_payloads():
    whole = zlib.compress(b"abc" * 10_000)
    assert bytes(frames.Frame(1, frames.FLAG_ZLIB, whole).parts()[0]) == b"abc" * 10_000
    with pytest.raises(ProtocolError, match="incomplete"):
        frames.Frame(1, frames.FLAG_ZLIB, whole[:-10]).parts()


# -- the version --------------------------------------------------------------------------


def test_handshake_speaks_version_2_only():
    assert handshake.PROTOCOL_MIN == handshake.PROTOCOL_MAX == 2
    server = handshake.ServerHandshake(b"k" * 32)
    assert struct.unpack_from(">HH", server.hello, 8) == (2, 2)


def test_client_refuses_a_server_of_version_1_clearly():
    # A genuine version-1 server checks our proof, then refuses version 2: the client
    # says why. (An impostor answering "accepted" fails the proof check instead.)
    old = handshake.MAGIC + struct.pack(">HHI", 1, 1, 0) + os.urandom(32)
    client = handshake.ClientHandshake(b"k" * 32)
    hello = client.receive_hello(old)
    assert struct.unpack_from(">H", hello, 8) == (2,)
    refused = struct.pack(">BBHIQ", handshake.STATUS_REFUSED, 0, 0, 0, 0) + bytes(32)
    with pytest.raises(ProtocolError, match=r"server speaks 1-1, this client 2-2; upgrade the"):
        client.receive_accept(refused)


def test_client_refuses_a_newer_server_at_once():
    newer = handshake.MAGIC + struct.pack(">HHI", 3, 4, 0) + os.urandom(32)
    with pytest.raises(ProtocolError, match=r"server speaks 3-4, this client 2-2; upgrade this"):
        handshake.ClientHandshake(b"k" * 32).receive_hello(newer)


def test_server_refuses_a_client_of_version_1_clearly():
    # A version-1 client proves the key over its hello (choosing version 1); the server
    # refuses the version, and says so, instead of a session the client cannot read.
    key = b"k" * 32
    server = handshake.ServerHandshake(key)
    head = handshake.MAGIC + struct.pack(">HHIQ", 1, 0, 0, 1 << 30) + os.urandom(32)
    proof = hmac.new(key, b"easycluster client proof" + server.hello + head, "sha256").digest()
    reply, session = server.receive(head + proof)
    assert session is None and reply[0] == handshake.STATUS_REFUSED
    assert "unsupported protocol version 1" in server.failure
    with pytest.raises(ProtocolError, match="protocol version"):
        handshake.ClientHandshake(key).receive_accept(reply)
