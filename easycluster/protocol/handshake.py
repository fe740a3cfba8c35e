"""The handshake (drawn in the package docstring): hellos, proofs and session keys."""

from __future__ import annotations

import os
import struct

from ..errors import AuthenticationError, ProtocolError
from .frames import DEFAULT_MAX_FRAME, DIR_C2S, DIR_S2C, Session
from .mac import Mac, compare_digest

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Optional, Tuple

    from .frames import Buffer

MAGIC = b"EZCLSTR\x00"
# 2: frame headers carry a tag of their own (checked before a length is trusted).
PROTOCOL_MIN = 2
PROTOCOL_MAX = 2

SERVER_HELLO_SIZE = 48
CLIENT_HELLO_SIZE = 88
ACCEPT_SIZE = 48

STATUS_OK = 0
STATUS_BAD_PROOF = 1
STATUS_REFUSED = 2

OPT_COMPRESS = 1


class WireOptions(tuple[int, bool]):
    """Per-connection limits and choices; both ends state their own.

    A named tuple written out (fields by name or position, equality, hash, repr and
    pickling of a tuple): not a dataclass, so ``easycluster -S`` opens its port without
    importing dataclasses, and not ``typing.NamedTuple``, so a server over ssh neither
    imports ``typing`` nor compiles a generated ``__new__`` at start-up."""

    __slots__ = ()

    def __new__(cls, max_frame: int = DEFAULT_MAX_FRAME, compress: bool = False) -> WireOptions:
        return tuple.__new__(cls, (max_frame, compress))

    @property
    def max_frame(self) -> int:
        return self[0]

    @property
    def compress(self) -> bool:
        return self[1]

    def __getnewargs__(self) -> tuple[int, bool]:  # (the pickle the NamedTuple made, byte for byte)
        return (self[0], self[1])

    def __repr__(self) -> str:
        return f"WireOptions(max_frame={self[0]!r}, compress={self[1]!r})"


def _mac(key: bytes, *parts: Buffer) -> bytes:
    return Mac(key).digest(b"".join(parts))


def check_key(key: object) -> bytes:
    """Return ``key`` as bytes, refusing anything empty or not bytes-like."""
    if isinstance(key, str):
        raise TypeError("a key must be bytes (use read_key_file or decode_key), not str")
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise ValueError(
            "an empty or missing key is not allowed; make one with "
            "'easycluster -g FILE' and pass read_key_file(FILE)"
        )
    return bytes(key)


def _session_keys(key: bytes, s_nonce: bytes, c_nonce: bytes) -> Tuple[bytes, bytes]:
    k = _mac(key, b"easycluster session", s_nonce, c_nonce)
    return _mac(k, b"client to server"), _mac(k, b"server to client")


class ServerHandshake:
    """Server side of the handshake: send ``hello``, feed the client hello, send the reply."""

    def __init__(
        self, key: bytes, options: WireOptions = WireOptions(), nonce: Optional[bytes] = None
    ):
        """``nonce``: 32 bytes chosen by the caller (a local server's master picks it, see
        ``control.spawn_request``); random by default."""
        self._key = check_key(key)
        self._options = options
        if nonce is not None and len(nonce) != 32:
            raise ValueError("a server nonce is 32 bytes")
        self._nonce = os.urandom(32) if nonce is None else bytes(nonce)
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
        if not compare_digest(proof, client_hello[56:88]):
            self.failure = "wrong key (client proof did not match)"
            return self._refuse(STATUS_BAD_PROOF), None
        if not PROTOCOL_MIN <= version <= PROTOCOL_MAX:
            self.failure = f"client chose unsupported protocol version {version}"
            return self._refuse(STATUS_REFUSED), None
        agreed = opts & OPT_COMPRESS  # the client chooses; the server always can
        head = struct.pack(">BBHIQ", STATUS_OK, agreed, version, 0, self._options.max_frame)
        reply = head + _mac(self._key, b"easycluster server proof", self.hello, client_hello, head)
        c2s, s2c = _session_keys(self._key, self._nonce, c_nonce)
        session = Session(
            send_key=s2c,
            recv_key=c2s,
            send_dir=DIR_S2C,
            recv_dir=DIR_C2S,
            max_recv=self._options.max_frame,
            max_send=max_frame,
            compress=bool(agreed & OPT_COMPRESS),
        )
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
        self._versions = (0, 0)  # the range the server's hello announced
        self._version = 0  # the one we chose
        self.hello = b""

    @staticmethod
    def check_greeting_start(received: bytes) -> None:
        """Raise ProtocolError as soon as the first bytes of a greeting show it is not
        ours (an ssh or web server answers at once, with a banner of its own), instead
        of waiting for a full greeting that never comes."""
        n = min(len(received), len(MAGIC))
        if received[:n] == MAGIC[:n]:
            return
        if received.startswith(b"SSH-"):
            banner = received.split(b"\r", 1)[0].split(b"\n", 1)[0][:60]
            raise ProtocolError(
                f"this port speaks ssh ({banner.decode('ascii', 'replace')}), not "
                "EasyCluster: for a server over ssh use Client(host=HOST) without a port; "
                "over TCP use the port of 'easycluster -S'"
            )
        raise ProtocolError(
            "the peer is not an EasyCluster server (bad greeting); check the host and port"
        )

    def receive_hello(self, server_hello: bytes) -> bytes:
        """Check the server hello and return the client hello to send."""
        if len(server_hello) != SERVER_HELLO_SIZE or server_hello[:8] != MAGIC:
            raise ProtocolError(
                "the peer is not an EasyCluster server (bad greeting); check the host and port"
            )
        lo, hi, _ = struct.unpack_from(">HHI", server_hello, 8)
        self._versions = (lo, hi)
        version = min(hi, PROTOCOL_MAX)
        if lo > PROTOCOL_MAX:
            raise ProtocolError(self._no_common_version())
        # An older server (hi < PROTOCOL_MIN) is still sent a proven hello with our
        # lowest version: a genuine one refuses it (then receive_accept says why), and a
        # peer without the key is told apart by its proof, not by what it claims.
        version = max(version, PROTOCOL_MIN)
        self._version = version
        self._server_hello = bytes(server_hello)
        opts = OPT_COMPRESS if self._options.compress else 0
        head = MAGIC + struct.pack(">HHIQ", version, opts, 0, self._options.max_frame)
        head += self._nonce
        self.hello = head + _mac(self._key, b"easycluster client proof", server_hello, head)
        return self.hello

    def _no_common_version(self) -> str:
        lo, hi = self._versions
        side = "this client" if lo > PROTOCOL_MAX else "the server"
        return (
            f"no common protocol version: server speaks {lo}-{hi}, "
            f"this client {PROTOCOL_MIN}-{PROTOCOL_MAX}; upgrade {side}"
        )

    def receive_accept(self, accept: bytes) -> Session:
        """Check the server's proof and return the session, or raise AuthenticationError."""
        if len(accept) != ACCEPT_SIZE:
            raise ProtocolError("truncated handshake reply from the server")
        status, agreed, version, _, max_frame = struct.unpack_from(">BBHIQ", accept)
        if status == STATUS_BAD_PROOF:
            raise AuthenticationError("the server refused our key (wrong key?)")
        if status == STATUS_REFUSED and self._versions[1] < PROTOCOL_MIN:
            raise ProtocolError(self._no_common_version())
        if status != STATUS_OK:
            raise ProtocolError(
                f"the server refused the connection (status {status}): "
                "protocol version or greeting not accepted"
            )
        proof = _mac(
            self._key, b"easycluster server proof", self._server_hello, self.hello, accept[:16]
        )
        if not compare_digest(proof, accept[16:]):
            raise AuthenticationError(
                "the server could not prove it holds the key "
                "(wrong key on the server, or an impostor)"
            )
        if version != self._version:  # (proven: a server of ours never does this)
            raise ProtocolError(f"the server put protocol version {version} in force")
        s_nonce = self._server_hello[16:48]
        c2s, s2c = _session_keys(self._key, s_nonce, self._nonce)
        return Session(
            send_key=c2s,
            recv_key=s2c,
            send_dir=DIR_C2S,
            recv_dir=DIR_S2C,
            max_recv=self._options.max_frame,
            max_send=max_frame,
            compress=bool(agreed & OPT_COMPRESS),
        )
