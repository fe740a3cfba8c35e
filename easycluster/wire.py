"""Sans-IO framing and authentication: bytes in, frames out; no sockets, threads or clocks.

Handshake (fixed sizes, so nothing of variable length is read before authentication)
------------------------------------------------------------------------------------

The server speaks first::

    SERVER_HELLO, 48 bytes, server -> client
      offset size  field
      0      8     magic b"EZCLSTR\\x00"
      8      2     lowest protocol version the server speaks (u16, big-endian)
      10     2     highest protocol version the server speaks (u16)
      12     4     reserved, zero
      16     32    server nonce (fresh random bytes)

    CLIENT_HELLO, 88 bytes, client -> server
      0      8     magic
      8      2     chosen protocol version (u16)
      10     2     options (u16): bit 0 = zlib compression wanted
      12     4     reserved, zero
      16     8     largest frame payload the client accepts (u64)
      24     32    client nonce
      56     32    client proof = HMAC-SHA256(key, "easycluster client proof"
                                              || SERVER_HELLO || CLIENT_HELLO[0:56])

    SERVER_ACCEPT, 48 bytes, server -> client
      0      1     status: 0 accepted, 1 bad proof (wrong key), 2 version or magic refused
      1      1     options agreed (bit 0 = zlib compression on)
      2      2     protocol version in force (u16)
      4      4     reserved, zero
      8      8     largest frame payload the server accepts (u64)
      16     32    server proof = HMAC-SHA256(key, "easycluster server proof"
                                              || SERVER_HELLO || CLIENT_HELLO || ACCEPT[0:16])

Each side proves the key over both nonces, the whole transcript (so version and options
are authenticated) and its own role label, so neither a replayed handshake (the other
side's nonce is fresh) nor a reflected proof (the role label differs) passes. The server
proves nothing until the client has. Session keys come from the shared key and both
nonces, one per direction::

    k = HMAC(key, "easycluster session" || server nonce || client nonce)
    k_c2s = HMAC(k, "client to server"),  k_s2c = HMAC(k, "server to client")

Frames (after the handshake)
----------------------------

::

    FRAME, 52 bytes + payload
      offset size  field
      0      1     direction: 1 = client to server, 2 = server to client
      1      1     frame type (meaning chosen by the layers above; see the FT_* constants)
      2      2     flags (u16): bit 0 = payload is zlib-compressed, bit 1 = out-of-band buffers
      4      8     sequence number (u64), counting from 0 in each direction
      12     8     payload length in bytes (u64), checked against the limit before allocating
      20     n     payload
      20+n   32    HMAC-SHA256(direction key, bytes 0 .. 20+n), i.e. header and payload

The MAC trails the payload so the receiver can check header and payload where they lie,
without copying them together first, and so both ends can hash a large payload a chunk at
a time while it travels (``Session.pack_chunks``; the reader hashes a large frame's bytes
as they arrive), instead of before sending and after receiving it.

A frame of type FT_BATCH carries several small frames' bodies, each as
``u8 type || u32 size || body``, under the one header and MAC; the receiver unpacks them in
order after the MAC checked out.

With bit 1 set, the (decompressed) payload is ``u32 n || n * u64 sizes || main || buf1 ..
bufn``: the buffers are pickle protocol 5 out-of-band buffers, sent without copying.

The receiver checks direction, sequence and length from the header, reads payload and
MAC, and compares the MAC with ``hmac.compare_digest`` before handing anything on; nothing is
unpickled here at all. Any failure raises an ``IntegrityError`` or ``FrameTooLarge`` and
the connection must be closed: a reader that raised is dead.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from .errors import AuthenticationError, FrameTooLarge, IntegrityError, ProtocolError
from .mac import Hasher, Mac

MAGIC = b"EZCLSTR\x00"
PROTOCOL_MIN = 1
PROTOCOL_MAX = 1
DEFAULT_MAX_FRAME = 1 << 30

SERVER_HELLO_SIZE = 48
CLIENT_HELLO_SIZE = 88
ACCEPT_SIZE = 48

STATUS_OK = 0
STATUS_BAD_PROOF = 1
STATUS_REFUSED = 2

OPT_COMPRESS = 1

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

HEADER = struct.Struct(">BBHQQ")
HEADER_SIZE = HEADER.size  # 20
MAC_SIZE = 32
_COUNT = struct.Struct(">I")
_ITEM = struct.Struct(">BI")
BATCH_ITEM_OVERHEAD = _ITEM.size
_SHA = hashlib.sha256
_COMPRESS_MIN = 512
_SMALL = 1 << 16
_SCRATCH = 1 << 18
CHUNK = 1 << 19  # a large frame is hashed and sent this many bytes at a time (measured best)
_MMAP_MIN = 1 << 25  # big receive buffers this large are populated mappings
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux, Python 3.10+

Buffer = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class WireOptions:
    """Per-connection limits and choices; both ends state their own."""

    max_frame: int = DEFAULT_MAX_FRAME
    compress: bool = False


def _mac(key: bytes, *parts: Buffer) -> bytes:
    h = hmac.new(key, digestmod=_SHA)
    for p in parts:
        h.update(p)
    return h.digest()


def check_key(key: object) -> bytes:
    """Return ``key`` as bytes, refusing anything empty or not bytes-like."""
    if isinstance(key, str):
        raise TypeError("a key must be bytes (use read_key_file or decode_key), not str")
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise ValueError("an empty or missing key is not allowed; make one with "
                         "'easycluster -g FILE' and pass read_key_file(FILE)")
    return bytes(key)


def _session_keys(key: bytes, s_nonce: bytes, c_nonce: bytes) -> Tuple[bytes, bytes]:
    k = _mac(key, b"easycluster session", s_nonce, c_nonce)
    return _mac(k, b"client to server"), _mac(k, b"server to client")


class ServerHandshake:
    """Server side of the handshake: send ``hello``, feed the client hello, send the reply."""

    def __init__(self, key: bytes, options: WireOptions = WireOptions()):
        self._key = check_key(key)
        self._options = options
        self._nonce = os.urandom(32)
        self.hello = MAGIC + struct.pack(">HHI", PROTOCOL_MIN, PROTOCOL_MAX, 0) + self._nonce

    def receive(self, client_hello: bytes) -> Tuple[bytes, Optional[Session]]:
        """Check the client's proof. Returns ``(reply, session)``.

        ``session`` is ``None`` when the client failed; ``reply`` must still be sent (it
        tells the client why) and the connection closed. Raises nothing for bad input
        so that the caller can log and reply; ``failure`` holds the reason.
        """
        self.failure = ""
        if len(client_hello) != CLIENT_HELLO_SIZE or client_hello[:8] != MAGIC:
            self.failure = "not an EasyCluster client (bad magic)"
            return self._refuse(STATUS_REFUSED), None
        version, opts, _, max_frame = struct.unpack_from(">HHIQ", client_hello, 8)
        c_nonce = client_hello[24:56]
        proof = _mac(self._key, b"easycluster client proof", self.hello, client_hello[:56])
        if not hmac.compare_digest(proof, client_hello[56:88]):
            self.failure = "wrong key (client proof did not match)"
            return self._refuse(STATUS_BAD_PROOF), None
        if not PROTOCOL_MIN <= version <= PROTOCOL_MAX:
            self.failure = f"client chose unsupported protocol version {version}"
            return self._refuse(STATUS_REFUSED), None
        agreed = opts & OPT_COMPRESS  # the client chooses; the server always can
        head = struct.pack(">BBHIQ", STATUS_OK, agreed, version, 0, self._options.max_frame)
        reply = head + _mac(self._key, b"easycluster server proof", self.hello, client_hello, head)
        c2s, s2c = _session_keys(self._key, self._nonce, c_nonce)
        session = Session(send_key=s2c, recv_key=c2s, send_dir=DIR_S2C, recv_dir=DIR_C2S,
                          max_recv=self._options.max_frame, max_send=max_frame,
                          compress=bool(agreed & OPT_COMPRESS))
        return reply, session

    def _refuse(self, status: int) -> bytes:
        return struct.pack(">BBHIQ", status, 0, 0, 0, 0) + bytes(32)


class ClientHandshake:
    """Client side: feed the server hello, send ``hello``, then feed the accept."""

    def __init__(self, key: bytes, options: WireOptions = WireOptions()):
        self._key = check_key(key)
        self._options = options
        self._nonce = os.urandom(32)
        self._server_hello = b""
        self.hello = b""

    def receive_hello(self, server_hello: bytes) -> bytes:
        """Check the server hello and return the client hello to send."""
        if len(server_hello) != SERVER_HELLO_SIZE or server_hello[:8] != MAGIC:
            raise ProtocolError("the peer is not an EasyCluster server (bad greeting); "
                                "check the host and port")
        lo, hi, _ = struct.unpack_from(">HHI", server_hello, 8)
        version = min(hi, PROTOCOL_MAX)
        if version < max(lo, PROTOCOL_MIN):
            raise ProtocolError(f"no common protocol version: server speaks {lo}-{hi}, "
                                f"this client {PROTOCOL_MIN}-{PROTOCOL_MAX}; upgrade one side")
        self._server_hello = bytes(server_hello)
        opts = OPT_COMPRESS if self._options.compress else 0
        head = MAGIC + struct.pack(">HHIQ", version, opts, 0, self._options.max_frame)
        head += self._nonce
        self.hello = head + _mac(self._key, b"easycluster client proof", server_hello, head)
        return self.hello

    def receive_accept(self, accept: bytes) -> Session:
        """Check the server's proof and return the session, or raise AuthenticationError."""
        if len(accept) != ACCEPT_SIZE:
            raise ProtocolError("truncated handshake reply from the server")
        status, agreed, _version, _, max_frame = struct.unpack_from(">BBHIQ", accept)
        if status == STATUS_BAD_PROOF:
            raise AuthenticationError("the server refused our key (wrong key?)")
        if status != STATUS_OK:
            raise ProtocolError(f"the server refused the connection (status {status}): "
                                "protocol version or greeting not accepted")
        proof = _mac(self._key, b"easycluster server proof", self._server_hello, self.hello,
                     accept[:16])
        if not hmac.compare_digest(proof, accept[16:]):
            raise AuthenticationError("the server could not prove it holds the key "
                                      "(wrong key on the server, or an impostor)")
        s_nonce = self._server_hello[16:48]
        c2s, s2c = _session_keys(self._key, s_nonce, self._nonce)
        return Session(send_key=c2s, recv_key=s2c, send_dir=DIR_C2S, recv_dir=DIR_S2C,
                       max_recv=self._options.max_frame, max_send=max_frame,
                       compress=bool(agreed & OPT_COMPRESS))


class Frame:
    """One authenticated frame. ``payload`` is the raw (possibly compressed) body."""

    __slots__ = ("type", "flags", "payload", "max_size")

    def __init__(self, type: int, flags: int, payload: Buffer, max_size: int = DEFAULT_MAX_FRAME):
        self.type = type
        self.flags = flags
        self.payload = payload
        self.max_size = max_size

    def parts(self) -> Tuple[memoryview, List[memoryview]]:
        """Return ``(main, buffers)``: decompressed, with out-of-band buffers split off."""
        data: Buffer = self.payload
        if self.flags & FLAG_ZLIB:
            d = zlib.decompressobj()
            try:
                data = d.decompress(data, self.max_size + 1)
            except zlib.error as e:
                raise ProtocolError(f"compressed frame is corrupt: {e}")
            if len(data) > self.max_size or d.unconsumed_tail:
                raise FrameTooLarge(f"compressed frame expands beyond the {self.max_size}-byte "
                                    "limit")
            if not d.eof:
                raise ProtocolError("compressed frame is incomplete")
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
        main = view[pos:pos + main_size]
        pos += main_size
        bufs = []
        for size in sizes:
            bufs.append(view[pos:pos + size])
            pos += size
        return main, bufs


class Session:
    """Both directions of an authenticated connection: packs outgoing frames, reads incoming.

    Not thread-safe: callers serialise ``pack`` (a send lock) and own the reader (one
    reading thread), as the layers above do.
    """

    def __init__(self, send_key: bytes, recv_key: bytes, send_dir: int, recv_dir: int,
                 max_recv: int = DEFAULT_MAX_FRAME, max_send: int = DEFAULT_MAX_FRAME,
                 compress: bool = False):
        self._send_key = send_key
        self._send_mac = Mac(send_key)
        self._send_dir = send_dir
        self._send_seq = 0
        self.max_send = max_send
        self.compress = compress
        self.reader = FrameReader(recv_key, recv_dir, max_recv)

    def pack(self, ftype: int, main: Union[Buffer, Sequence[Buffer]],
             buffers: Sequence[Buffer] = ()) -> List[Buffer]:
        """Return the pieces of one frame, ready for ``sendmsg`` in this order.

        ``main`` is the body (or a list of pieces that make it up); ``buffers`` travel
        after it as out-of-band buffers. Raises ``FrameTooLarge`` (the sequence number is
        not consumed) if the peer's limit is exceeded.
        """
        if not buffers and type(main) is bytes and not self.compress:
            length = len(main)  # the common case, a small body in one piece: kept short
            if length <= _SMALL:
                if length > self.max_send:
                    raise FrameTooLarge(f"message of {length} bytes exceeds the peer's limit "
                                        f"of {self.max_send} bytes")
                frame = self._head(ftype, 0, length) + main
                return [frame + self._send_mac.digest(frame)]
        flags, parts, length = self._body(main, buffers)
        return self._seal(self._head(ftype, flags, length), parts, length)

    def pack_chunks(self, ftype: int, main: Union[Buffer, Sequence[Buffer]],
                    buffers: Sequence[Buffer] = (), chunk: int = CHUNK) -> Iterator[List[Buffer]]:
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
        head = self._head(ftype, flags, length)
        h = self._send_mac.start()
        h.update(head)
        return _chunked(h, head, views, chunk)

    def _body(self, main: Union[Buffer, Sequence[Buffer]],
              buffers: Sequence[Buffer]) -> Tuple[int, List[Buffer], int]:
        """``(flags, parts, length)`` of a payload, compressed if that pays; checks the
        peer's limit."""
        flags = 0
        mains = [main] if isinstance(main, (bytes, bytearray, memoryview)) else list(main)
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
            raise FrameTooLarge(f"message of {length} bytes exceeds the peer's limit of "
                                f"{self.max_send} bytes")
        return flags, parts, length

    def _seal(self, head: bytes, parts: List[Buffer], length: int) -> List[Buffer]:
        """The whole frame: one joined buffer when small, else the pieces and the MAC."""
        if length <= _SMALL:
            frame = head + b"".join(parts)
            return [frame + self._send_mac.digest(frame)]
        h = self._send_mac.start()
        h.update(head)
        for p in parts:
            h.update(p)
        return [head, *parts, h.digest()]

    def _head(self, ftype: int, flags: int, length: int) -> bytes:
        """The next frame header; consumes a sequence number."""
        head = HEADER.pack(self._send_dir, ftype, flags, self._send_seq, length)
        self._send_seq += 1
        return head


def _chunked(h: Hasher, head: bytes, views: List[memoryview],
             chunk: int) -> Iterator[List[Buffer]]:
    """Yield ``head`` and ``views`` in groups of ``chunk`` payload bytes (the last group
    shorter, ending with the MAC), feeding ``h`` each group just before it is yielded."""
    group: List[Buffer] = [head]
    room = chunk
    for view in views:
        pos, n = 0, len(view)
        while n - pos >= room:
            piece = view[pos:pos + room]
            h.update(piece)
            group.append(piece)
            pos += room
            yield group
            group, room = [], chunk
        if pos < n:
            piece = view[pos:] if pos else view
            h.update(piece)
            group.append(piece)
            room -= n - pos
    group.append(h.digest())
    yield group


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
        self._scratch = bytearray(_SCRATCH)
        self._view = memoryview(self._scratch)
        self._start = 0
        self._end = 0
        self._big: Optional[_BigFrame] = None  # the frame too large for the scratch buffer
        self._failed: Optional[ProtocolError] = None

    def buffer(self) -> memoryview:
        """Writable space to receive into (never empty)."""
        if self._big is not None:
            return self._big.buf[self._big.fill:]
        if self._end == len(self._scratch):
            pending = self._end - self._start
            self._scratch[:pending] = self._scratch[self._start:self._end]
            self._start, self._end = 0, pending
        return self._view[self._end:]

    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame (0 between frames)."""
        if self._big is not None:
            return self._big.fill + HEADER_SIZE
        return self._end - self._start

    def advance(self, n: int) -> List[Frame]:
        """Account for ``n`` bytes written into ``buffer()``; return completed frames.

        Once it has raised, the reader is dead: every later call raises the same error.
        """
        if self._failed is not None:
            raise self._failed
        try:
            return self._advance(n)
        except ProtocolError as e:
            self._failed = e
            raise

    def _advance(self, n: int) -> List[Frame]:
        frames: List[Frame] = []
        big = self._big
        if big is not None:
            big.received(n)
            if big.fill == len(big.buf):
                self._big = None
                frames.append(self._finish_big(big))
            return frames
        self._end += n
        view, end = self._view, self._end
        while end - self._start >= HEADER_SIZE:
            s = self._start
            direction, ftype, flags, seq, length = HEADER.unpack_from(view, s)
            if direction != self._dir or seq != self._seq or length > self.max_size:
                self._check_header(view, s)  # raises the error that says which
            total = HEADER_SIZE + length + MAC_SIZE
            if end - s >= total:
                stop = s + HEADER_SIZE + length
                mac = self._mac.digest(view[s:stop])
                if not hmac.compare_digest(mac, view[stop:stop + MAC_SIZE]):
                    raise _bad_mac()
                self._seq += 1
                self._start = stop + MAC_SIZE
                frames.append(Frame(ftype, flags, bytes(view[s + HEADER_SIZE:stop]),
                                    self.max_size))
                continue
            if total > len(self._scratch):
                h = self._mac.start()
                h.update(view[s:s + HEADER_SIZE])
                self._big = _BigFrame(ftype, flags, length, h, view[s + HEADER_SIZE:end])
                self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0
        return frames

    def _check_header(self, view: memoryview, pos: int) -> Tuple[int, int, int]:
        direction, ftype, flags, seq, length = HEADER.unpack_from(view, pos)
        if direction != self._dir:
            raise IntegrityError("frame rejected: it travels in the wrong direction "
                                 "(a reflected frame)")
        if seq != self._seq:
            raise IntegrityError(f"frame rejected: sequence {seq} where {self._seq} was "
                                 "expected (replayed, reordered or dropped frame)")
        if length > self.max_size:
            raise FrameTooLarge(f"frame rejected: header announces {length} bytes, above the "
                                f"{self.max_size}-byte limit")
        return ftype, flags, length

    def _finish_big(self, big: _BigFrame) -> Frame:
        if not hmac.compare_digest(big.mac.digest(), big.buf[big.length:]):
            raise _bad_mac()
        self._seq += 1
        return Frame(big.type, big.flags, big.buf[:big.length], self.max_size)

    def check_eof(self) -> None:
        """Call at end of stream: raise if a frame was cut off part-way."""
        if self.pending():
            raise IntegrityError(f"connection closed in the middle of a frame "
                                 f"({self.pending()} bytes of it received): truncated")


class _BigFrame:
    """A frame being received into a buffer of its own (payload, then MAC), its payload
    hashed as it arrives, while fresh in the cache: at the end only the MAC is compared."""

    __slots__ = ("type", "flags", "length", "mac", "buf", "fill")

    def __init__(self, type: int, flags: int, length: int, mac: Hasher, start: memoryview):
        """``mac`` has seen the header; ``start`` holds the bytes already received after
        it (fewer than the rest of the frame)."""
        self.type, self.flags, self.length, self.mac = type, flags, length, mac
        self.buf = _big_buffer(length + MAC_SIZE)
        self.fill = 0
        self.buf[:len(start)] = start
        self.received(len(start))

    def received(self, n: int) -> None:
        """Account for ``n`` more bytes written into ``buf`` after ``fill``."""
        fill = self.fill
        self.fill = fill + n
        if fill < self.length:
            self.mac.update(self.buf[fill:min(fill + n, self.length)])


def _big_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes for one large frame; it lives as long as views
    of it do (numpy arrays built on a payload keep it)."""
    if size >= _MMAP_MIN and _POPULATE:
        # Past glibc's largest mmap threshold (32 MiB) every bytearray is a fresh mapping
        # that the kernel faults in and zeroes page by page as it is written; one populated
        # mapping is faulted in a single call, about a fifth cheaper. Below it, malloc
        # recycles freed memory, which beats any new mapping.
        return memoryview(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                                    | _POPULATE))
    return memoryview(bytearray(size))


def _bad_mac() -> IntegrityError:
    return IntegrityError("frame rejected: authentication code does not match "
                          "(altered frame, or sent with another key or session)")


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
        out.append((ftype, main[pos:pos + size]))
        pos += size
    return out


def split_batch(frame: Frame) -> List[Frame]:
    """The frames inside an (authenticated) FT_BATCH frame, in order."""
    limit = frame.max_size
    return [Frame(ftype, 0, body, limit) for ftype, body in batch_items(frame)]
