"""Sans-IO framing and authentication: bytes in, frames out; no sockets, threads or clocks.

This module holds the handshake; the frame layer lives in ``frames.py`` and is
re-exported here (``wire.Session``, ``wire.FT_REQUEST``, ...). Both are drawn below.

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

import hmac
import os
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

from .errors import AuthenticationError, FrameTooLarge, ProtocolError
from .frames import (  # the frame layer, re-exported: the package and tests say wire.X
    _SMALL,
    BATCH_ITEM_OVERHEAD,
    CHUNK,
    DEFAULT_MAX_FRAME,
    DIR_C2S,
    DIR_S2C,
    FLAG_OOB,
    FLAG_ZLIB,
    FT_BATCH,
    FT_CLOSE,
    FT_ERROR,
    FT_PING,
    FT_PONG,
    FT_RELEASE,
    FT_REQUEST,
    FT_RESPONSE,
    HEADER,
    HEADER_SIZE,
    MAC_SIZE,
    Buffer,
    Frame,
    FrameReader,
    Session,
    batch_items,
    pack_batch,
    split_batch,
)

MAGIC = b"EZCLSTR\x00"
PROTOCOL_MIN = 1
PROTOCOL_MAX = 1

SERVER_HELLO_SIZE = 48
CLIENT_HELLO_SIZE = 88
ACCEPT_SIZE = 48

STATUS_OK = 0
STATUS_BAD_PROOF = 1
STATUS_REFUSED = 2

OPT_COMPRESS = 1



@dataclass(frozen=True)
class WireOptions:
    """Per-connection limits and choices; both ends state their own."""

    max_frame: int = DEFAULT_MAX_FRAME
    compress: bool = False


def _mac(key: bytes, *parts: Buffer) -> bytes:
    h = hmac.new(key, digestmod="sha256")
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


__all__ = [  # the handshake (here) and the frame layer (frames.py)
    "MAGIC", "PROTOCOL_MIN", "PROTOCOL_MAX", "SERVER_HELLO_SIZE", "CLIENT_HELLO_SIZE",
    "ACCEPT_SIZE", "STATUS_OK", "STATUS_BAD_PROOF", "STATUS_REFUSED", "OPT_COMPRESS",
    "WireOptions", "check_key", "ServerHandshake", "ClientHandshake", "FrameTooLarge",
    "ProtocolError", "BATCH_ITEM_OVERHEAD", "CHUNK", "DEFAULT_MAX_FRAME", "DIR_C2S",
    "DIR_S2C", "FLAG_OOB", "FLAG_ZLIB", "FT_BATCH", "FT_CLOSE", "FT_ERROR", "FT_PING",
    "FT_PONG", "FT_RELEASE", "FT_REQUEST", "FT_RESPONSE", "HEADER", "HEADER_SIZE",
    "MAC_SIZE", "Buffer", "Frame", "FrameReader", "Session", "batch_items", "pack_batch",
    "split_batch", "_SMALL",
]
