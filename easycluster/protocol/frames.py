"""Frames after the handshake: packing, reading and checking them (sans-IO).

The layout is drawn in the package docstring (the protocol's one description).
"""

from __future__ import annotations

import struct
import zlib
from _operator import itemgetter as _itemgetter

from ..errors import FrameTooLarge, IntegrityError, ProtocolError
from .mac import TAG_SIZE, Hasher, Mac, compare_digest
from .payloads import big_buffer, chunked, inflate

TYPE_CHECKING = False
if TYPE_CHECKING:  # a piece of a frame: anything with the buffer protocol (annotations only)
    from typing import Iterator, List, Optional, Sequence, Tuple, Union

    from .mac import Buffer as Buffer

    Bytes = Union[bytes, bytearray, memoryview]  # a body in one piece (see Session.pack)

DEFAULT_MAX_FRAME = 1 << 30

DIR_C2S = 1
DIR_S2C = 2

FLAG_ZLIB = 1
FLAG_OOB = 2

# Frame types. The wire does not interpret them; they live here so both ends agree.
FT_REQUEST = 1
FT_RESPONSE = 2
FT_ERROR = 3  # a protocol error notice before the sender closes: utf-8 text
FT_PING = 4
FT_PONG = 5
FT_RELEASE = 6  # client -> server: object ids whose last proxy is gone
FT_CLOSE = 7  # orderly goodbye
FT_BATCH = 8  # several small frames' bodies in one: repeated (u8 type, u32 size, body)
FT_OUTPUT = 9  # server -> client: what remote code printed: u8 stream (1 out, 2 err), utf-8

HEADER = struct.Struct(">BBHQQ")  # the fields; the header's tag follows them
_unpack_head = HEADER.unpack_from
_tuple_new = tuple.__new__
HEADER_SIZE = HEADER.size + TAG_SIZE  # 36: fields and tag, before the payload
MAC_SIZE = 32
_FIELDS = HEADER.size  # 20
_COUNT = struct.Struct(">I")
_ITEM = struct.Struct(">BI")
BATCH_ITEM_OVERHEAD = _ITEM.size
_COMPRESS_MIN = 512
_SMALL = 1 << 16
# A reader's scratch buffer starts small (a master with 1,000 connections holds 1,000 of
# them) and grows to its full size once a read fills it or a frame needs it (pipelined
# or medium-sized traffic); larger frames get buffers of their own either way.
_SCRATCH_FIRST = 1 << 13
_SCRATCH = 1 << 18
CHUNK = 1 << 19  # a large frame is hashed and sent this many bytes at a time (measured best)


class Frame(tuple):  # type: ignore[type-arg]
    """One authenticated frame. ``payload`` is the raw (possibly compressed) body.

    A tuple ``(type, flags, payload, max_size)`` with named fields: the readers make one
    per frame received with ``tuple.__new__`` (in C: no Python call on the hot path, where
    a class with ``__init__`` costs one per frame)."""

    __slots__ = ()

    type = property(_itemgetter(0))  # the frame type (FT_*)
    flags = property(_itemgetter(1))  # FLAG_* bits: how to undo the payload
    payload = property(_itemgetter(2))
    max_size = property(_itemgetter(3))  # the receiver's limit, for decompressing

    def __new__(
        cls, type: int, flags: int, payload: Bytes, max_size: int = DEFAULT_MAX_FRAME
    ) -> Frame:
        return _tuple_new(cls, (type, flags, payload, max_size))

    def parts(self) -> Tuple[memoryview, Sequence[memoryview]]:
        """Return ``(main, buffers)``: decompressed, with out-of-band buffers split off."""
        data: Bytes = self.payload
        if not self.flags:
            return memoryview(data), ()  # the common case: nothing to undo
        if self.flags & FLAG_ZLIB:
            data = inflate(data, self.max_size)
        view = memoryview(data)
        if not self.flags & FLAG_OOB:
            return view, []
        try:
            (n,) = _COUNT.unpack_from(view)
            sizes = struct.unpack_from(f">{n}Q", view, 4)
        except struct.error:
            raise ProtocolError("malformed buffer table in frame")
        pos = 4 + 8 * n
        main_size = len(view) - pos - sum(sizes)
        if main_size < 0:
            raise ProtocolError("buffer table describes more bytes than the frame holds")
        main = view[pos : pos + main_size]
        pos += main_size
        bufs = []
        for size in sizes:
            bufs.append(view[pos : pos + size])
            pos += size
        return main, bufs


class Session:
    """Both directions of an authenticated connection: packs outgoing frames, reads incoming.

    Not thread-safe: callers serialise ``pack`` (a send lock) and own the reader (one
    reading thread), as the layers above do.
    """

    def __init__(
        self,
        send_key: bytes,
        recv_key: bytes,
        send_dir: int,
        recv_dir: int,
        max_recv: int = DEFAULT_MAX_FRAME,
        max_send: int = DEFAULT_MAX_FRAME,
        compress: bool = False,
    ):
        self._send_key = send_key
        self._send_mac = Mac(send_key)
        self._send_dir = send_dir
        self.is_client = send_dir == DIR_C2S  # the end that sends requests
        self._send_seq = 0
        self.max_send = max_send
        self.compress = compress
        self.reader = FrameReader(recv_key, recv_dir, max_recv)

    def pack(
        self, ftype: int, main: Union[Bytes, Sequence[Buffer]], buffers: Sequence[Buffer] = ()
    ) -> List[Buffer]:
        """Return the pieces of one frame, ready for ``sendmsg`` in this order.

        ``main`` is the body (or a list of pieces that make it up); ``buffers`` travel
        after it as out-of-band buffers. Raises ``FrameTooLarge`` (the sequence number is
        not consumed) if the peer's limit is exceeded.
        """
        if not buffers and type(main) is bytes and not self.compress:
            length = len(main)  # the common case, a small body in one piece: kept short
            if length <= _SMALL:
                if length > self.max_send:
                    raise FrameTooLarge(
                        f"message of {length} bytes exceeds the peer's limit "
                        f"of {self.max_send} bytes"
                    )
                # (``_head`` written out: this runs for every call and every reply)
                seq = self._send_seq
                self._send_seq = seq + 1
                head = HEADER.pack(self._send_dir, ftype, 0, seq, length)
                return [self._send_mac.frame(head, main)]
        flags, parts, length = self._body(main, buffers)
        return self._seal(self._head(ftype, flags, length), parts, length)

    def pack_chunks(
        self,
        ftype: int,
        main: Union[Bytes, Sequence[Buffer]],
        buffers: Sequence[Buffer] = (),
        chunk: int = CHUNK,
    ) -> Iterator[List[Buffer]]:
        """``pack`` in groups of pieces of about ``chunk`` bytes, for sending as they come.

        Each group's bytes are hashed only when the group is taken, so the caller hashes
        one group while the previous one travels (pipelined with the peer, which checks
        the MAC as the bytes arrive). Send every group in order, before anything else: the
        last one ends with the MAC. A frame of up to ``chunk`` bytes is one group, the
        same pieces as ``pack``. The checks (``FrameTooLarge``, with the sequence number
        not consumed) and the numbering happen in this call, not at the first group.
        """
        flags, parts, length = self._body(main, buffers)
        if length <= chunk:
            return iter((self._seal(self._head(ftype, flags, length), parts, length),))
        views = [memoryview(p).cast("B") for p in parts]  # may raise: before numbering
        h, head = self._start(ftype, flags, length)
        return chunked(h, head, views, chunk)

    def _body(
        self, main: Union[Bytes, Sequence[Buffer]], buffers: Sequence[Buffer]
    ) -> Tuple[int, List[Buffer], int]:
        """``(flags, parts, length)`` of a payload, compressed if that pays; checks the
        peer's limit."""
        flags = 0
        mains: List[Buffer] = (
            [main] if isinstance(main, (bytes, bytearray, memoryview)) else list(main)
        )
        if buffers:
            sizes = [memoryview(b).nbytes for b in buffers]
            table = _COUNT.pack(len(sizes)) + struct.pack(f">{len(sizes)}Q", *sizes)
            parts: List[Buffer] = [table, *mains, *buffers]
            flags |= FLAG_OOB
        else:
            parts = mains
        length = sum(memoryview(p).nbytes for p in parts)
        if self.compress and length >= _COMPRESS_MIN:
            packed = zlib.compress(b"".join(parts), 3)
            if len(packed) < length:
                parts, length, flags = [packed], len(packed), flags | FLAG_ZLIB
        if length > self.max_send:
            raise FrameTooLarge(
                f"message of {length} bytes exceeds the peer's limit of {self.max_send} bytes"
            )
        return flags, parts, length

    def _seal(self, head: bytes, parts: List[Buffer], length: int) -> List[Buffer]:
        """The whole frame: one joined buffer when small, else the pieces and the MAC."""
        if length <= _SMALL:
            return [self._send_mac.frame(head, b"".join(parts))]
        h = self._send_mac.start()
        h.update(head)
        tag = h.digest()[:TAG_SIZE]
        h.update(tag)
        for p in parts:
            h.update(p)
        return [head + tag, *parts, h.digest()]

    def _start(self, ftype: int, flags: int, length: int) -> Tuple[Hasher, bytes]:
        """The MAC computation of a frame sent in pieces, and its header with the tag."""
        head = self._head(ftype, flags, length)
        h = self._send_mac.start()
        h.update(head)
        tag = h.digest()[:TAG_SIZE]
        h.update(tag)
        return h, head + tag

    def _head(self, ftype: int, flags: int, length: int) -> bytes:
        """The next frame header; consumes a sequence number."""
        head = HEADER.pack(self._send_dir, ftype, flags, self._send_seq, length)
        self._send_seq += 1
        return head


class FrameReader:
    """Turns received bytes into verified frames, reading large payloads in place.

    Use: ``view = reader.buffer()``, receive up to ``len(view)`` bytes into it, then
    ``frames = reader.advance(n)``. Small frames are parsed out of a scratch buffer many
    at a time; a payload too big for it gets its own buffer, filled directly.
    """

    def __init__(self, key: bytes, direction: int, max_size: int = DEFAULT_MAX_FRAME):
        self._key = key
        self._mac = Mac(key)
        self._dir = direction
        self._seq = 0
        self.max_size = max_size
        self._scratch = bytearray(_SCRATCH_FIRST)
        self._view = memoryview(self._scratch)
        self._start = 0
        self._end = 0
        self._grow = False  # the next buffer() moves to a full-size scratch buffer
        self._big: Optional[_BigFrame] = None  # the frame too large for the scratch buffer
        self._head_ok = False  # the tag of the header at _start checked out
        self._failed: Optional[ProtocolError] = None

    def buffer(self) -> memoryview:
        """Writable space to receive into (never empty)."""
        if self._big is not None:
            return self._big.buf[self._big.fill :]
        if self._end == len(self._scratch) or self._grow:
            self._compact()
        return self._view[self._end :]

    def _compact(self) -> None:
        """Move the bytes of the frame begun to the start of the scratch buffer (into a
        full-size one if it is to grow)."""
        pending = self._end - self._start
        if self._grow:
            self._grow = False
            bigger = bytearray(_SCRATCH)
            bigger[:pending] = self._view[self._start : self._end]
            self._scratch, self._view = bigger, memoryview(bigger)
        else:
            self._scratch[:pending] = self._scratch[self._start : self._end]
        self._start, self._end = 0, pending

    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame (0 between frames)."""
        if self._big is not None:
            return self._big.fill + HEADER_SIZE
        return self._end - self._start

    def missing(self) -> int:
        """Bytes still to come before the frame begun can be checked (0 between frames): a
        hint for a peer asked to send something (``transport.channel``'s keep-alive)."""
        big = self._big
        if big is not None:
            return len(big.buf) - big.fill
        have = self._end - self._start
        if not have:
            return 0
        if have < HEADER_SIZE or not self._head_ok:
            return max(HEADER_SIZE - have, 1)
        length: int = HEADER.unpack_from(self._view, self._start)[4]
        return HEADER_SIZE + length + MAC_SIZE - have

    def advance(self, n: int) -> List[Frame]:
        """Account for ``n`` bytes written into ``buffer()``; return completed frames.

        Once it has raised, the reader is dead: every later call raises the same error.
        """
        if self._failed is not None:
            raise self._failed
        try:  # (the whole body here, not a call: this runs for every read)
            frames: List[Frame] = []
            big = self._big
            if big is not None:
                big.received(n)
                if big.fill == len(big.buf):
                    self._big = None
                    frames.append(self._finish_big(big))
                return frames
            end = self._end + n
            self._end = end
            view = self._view
            if end == len(view) and end < _SCRATCH:
                self._grow = True  # a read filled the small buffer: traffic wants the big one
            s = self._start
            while end - s >= _FIELDS:
                direction, ftype, flags, seq, length = _unpack_head(view, s)
                if direction != self._dir or seq != self._seq or length > self.max_size:
                    self._check_header(view, s)  # raises the error that says which
                stop = s + HEADER_SIZE + length
                if end < stop + MAC_SIZE:  # not whole: the rest is awaited
                    if s != self._start:
                        self._start = s
                        self._head_ok = False  # (the tag checked was a consumed frame's)
                    self._await_rest(view, end, ftype, flags, length)
                    return frames
                # Whole: the MAC covers fields, tag and payload at once (a length altered
                # to fit what is here fails it too, so the tag needs no check of its own).
                # (``Mac.digest`` written out: this runs for every frame received)
                mac = self._mac
                if mac.builtin:
                    mac.spend(stop - s)
                inner = mac.inner.copy()
                inner.update(view[s:stop])
                outer = mac.outer.copy()
                outer.update(inner.digest())
                if not compare_digest(outer.digest(), view[stop : stop + MAC_SIZE]):
                    raise _bad_mac()
                self._seq = seq + 1
                frames.append(
                    _tuple_new(
                        Frame, (ftype, flags, bytes(view[stop - length : stop]), self.max_size)
                    )
                )
                s = stop + MAC_SIZE
            # (where the reads left off is written once per read, not once per frame)
            if s == end:
                self._start = self._end = 0
            else:
                self._start = s  # (fewer bytes than a header's fields: nothing checked)
            self._head_ok = False
            return frames
        except ProtocolError as e:
            self._failed = e
            raise

    def _await_rest(self, view: memoryview, end: int, ftype: int, flags: int, length: int) -> None:
        """The frame at ``_start`` (its payload ``length`` bytes) is not whole yet: check
        its header's tag once the header is here, then make room for the rest (the full-
        size scratch buffer, or a buffer of its own for a large payload)."""
        s = self._start
        if end - s < HEADER_SIZE:
            return  # the tag is still on its way
        # The length is about to decide what we wait for (and allocate), so it must be
        # the sender's. The tag says so, or the stream is corrupt.
        if not self._head_ok:
            tag = self._mac.tag(view[s : _FIELDS + s])
            if not compare_digest(tag, view[s + _FIELDS : s + HEADER_SIZE]):
                raise IntegrityError(
                    "frame rejected: header authentication code does not match "
                    "(altered length or header, bytes lost or injected, or another key)"
                )
            self._head_ok = True
        total = HEADER_SIZE + length + MAC_SIZE
        if total > len(self._scratch):
            if total <= _SCRATCH:
                self._grow = True  # it fits a full-size scratch buffer: wait there
                return
            h = self._mac.start()
            h.update(view[s : s + HEADER_SIZE])
            self._big = _BigFrame(ftype, flags, length, h, view[s + HEADER_SIZE : end])
            self._start = self._end = 0
            self._head_ok = False

    def _check_header(self, view: memoryview, pos: int) -> Tuple[int, int, int]:
        direction, ftype, flags, seq, length = HEADER.unpack_from(view, pos)
        if direction != self._dir:
            raise IntegrityError(
                "frame rejected: it travels in the wrong direction (a reflected frame)"
            )
        if seq != self._seq:
            raise IntegrityError(
                f"frame rejected: sequence {seq} where {self._seq} was "
                "expected (replayed, reordered or dropped frame)"
            )
        if length > self.max_size:
            raise FrameTooLarge(
                f"frame rejected: header announces {length} bytes, above the "
                f"{self.max_size}-byte limit"
            )
        return ftype, flags, length

    def _finish_big(self, big: _BigFrame) -> Frame:
        if not compare_digest(big.mac.digest(), big.buf[big.length :]):
            raise _bad_mac()
        self._seq += 1
        return Frame(big.type, big.flags, big.buf[: big.length], self.max_size)

    def check_eof(self) -> None:
        """Call at end of stream: raise if a frame was cut off part-way."""
        if self.pending():
            raise IntegrityError(
                f"connection closed in the middle of a frame "
                f"({self.pending()} bytes of it received): truncated"
            )


class _BigFrame:
    """A frame being received into a buffer of its own (payload, then MAC), its payload
    hashed as it arrives, while fresh in the cache: at the end only the MAC is compared."""

    __slots__ = ("type", "flags", "length", "mac", "buf", "fill")

    def __init__(self, type: int, flags: int, length: int, mac: Hasher, start: memoryview):
        """``mac`` has seen the header; ``start`` holds the bytes already received after
        it (fewer than the rest of the frame)."""
        self.type, self.flags, self.length, self.mac = type, flags, length, mac
        self.buf = big_buffer(length + MAC_SIZE)
        self.fill = 0
        self.buf[: len(start)] = start
        self.received(len(start))

    def received(self, n: int) -> None:
        """Account for ``n`` more bytes written into ``buf`` after ``fill``."""
        fill = self.fill
        self.fill = fill + n
        if fill < self.length:
            self.mac.update(self.buf[fill : min(fill + n, self.length)])


def _bad_mac() -> IntegrityError:
    return IntegrityError(
        "frame rejected: authentication code does not match "
        "(altered frame, or sent with another key or session)"
    )


def pack_batch(items: Sequence[Tuple[int, bytes]]) -> bytes:
    """The body of an FT_BATCH frame carrying ``(type, body)`` items (no buffers)."""
    out: List[bytes] = []
    add, pack = out.append, _ITEM.pack
    for ftype, body in items:
        add(pack(ftype, len(body)))
        add(body)
    return b"".join(out)


def batch_items(frame: Frame) -> List[Tuple[int, memoryview]]:
    """The ``(type, body)`` items inside an (authenticated) FT_BATCH frame, in order."""
    main, _ = frame.parts()
    out, pos, end = [], 0, len(main)
    unpack, isize = _ITEM.unpack_from, _ITEM.size
    while pos < end:
        if end - pos < isize:
            raise ProtocolError("malformed batch frame (truncated item header)")
        ftype, size = unpack(main, pos)
        pos += isize
        if size > end - pos or ftype == FT_BATCH:
            raise ProtocolError("malformed batch frame (bad item)")
        out.append((ftype, main[pos : pos + size]))
        pos += size
    return out


def split_batch(frame: Frame) -> List[Frame]:
    """The frames inside an (authenticated) FT_BATCH frame, in order."""
    limit = frame.max_size
    return [Frame(ftype, 0, body, limit) for ftype, body in batch_items(frame)]
