"""HMAC-SHA256 for one session key, with the key's pad states computed once.

``hmac.digest`` starts from the raw key on every call (two extra SHA-256 blocks, plus
the digest lookup), which costs more than hashing a small frame itself. ``Mac`` keeps
the SHA-256 states after the inner and outer padded keys (RFC 2104's construction) and
copies them per message: the same tag, computed in about a third of the time.

Which SHA-256: OpenSSL's (``hashlib``) is the fast one, 1.5x the interpreter's own on a
100-byte frame and 6x on large data, but loading libcrypto costs 1-3 ms, a tenth of a
server's start-up over ssh, where the handshake and a first call hash a few hundred
bytes. So until OpenSSL is loaded (by anyone), a new ``Mac`` uses the interpreter's own
SHA-256 (``_sha256``, ``_sha2`` from 3.12), until the process has hashed
``BUILTIN_BUDGET`` bytes that way (all its Macs together); then each moves to OpenSSL's
at its next message. A large frame (``start``) spends the budget at once. Both compute
the same function, so the two ends need not agree on which they use. ``hmac`` itself is
not imported (it loads OpenSSL too): ``compare_digest`` is the operator module's
constant-time C one.
"""

from __future__ import annotations

import _operator
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: a Protocol class costs ~0.1 ms at import
    from typing import Callable, Optional, Protocol

    class Buffer(Protocol):
        """Anything with the buffer protocol: bytes, bytearray, memoryview, a pickle
        ``PickleBuffer``, an mmap... (``collections.abc.Buffer`` from Python 3.12 on)."""

        def __buffer__(self, flags: int, /) -> memoryview: ...

    class HashState(Protocol):
        """What we use of a hash object (hashlib's, or the interpreter's own)."""

        def copy(self) -> HashState: ...
        def update(self, data: Buffer, /) -> None: ...
        def digest(self) -> bytes: ...
        def hexdigest(self) -> str: ...


# the operator module's constant-time comparison, in C (hmac.compare_digest is this one
# or OpenSSL's; importing hmac loads OpenSSL)
compare_digest = _operator._compare_digest

_BLOCK = 64  # SHA-256 block size in bytes
DIGEST_SIZE = 32
TAG_SIZE = 16  # a frame header's own tag: the first bytes of its HMAC
# RFC 2104's pads as translation tables: a key's padded forms in one C call each (a
# byte-by-byte generator costs tens of microseconds, twice per session key)
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
# Bytes a process hashes with the interpreter's SHA-256 before it loads OpenSSL's: about
# 1 ms of extra hashing at most, less than the load it saves a short-lived server
BUILTIN_BUDGET = 1 << 18
_left = [BUILTIN_BUDGET]  # what is left of it in this process (all Macs draw on it)


def _builtin() -> Optional[Callable[..., HashState]]:
    """The interpreter's own SHA-256 constructor, or None if it was built without it."""
    for name in ("_sha2", "_sha256"):
        try:
            return __import__(name).sha256  # type: ignore[no-any-return]
        except ImportError:
            pass
    return None


_BUILTIN = _builtin()


def _openssl() -> Callable[..., HashState]:
    import hashlib  # (loads libcrypto: on first need only)

    return hashlib.sha256


# the module whose presence says OpenSSL is loaded (a test names another to act as a
# process that has not loaded it)
_OPENSSL_MODULE = "_hashlib"


def _openssl_loaded() -> bool:
    return _BUILTIN is None or _OPENSSL_MODULE in sys.modules


def sha256(data: Buffer = b"") -> HashState:
    """A SHA-256 hash object of ``data``: OpenSSL's if it is loaded, else the
    interpreter's own (for a digest of a few bytes, not worth a library load)."""
    new = None if _openssl_loaded() else _BUILTIN  # (loaded: also where _BUILTIN is None)
    return (new or _openssl())(data)


class Mac:
    """HMAC-SHA256 with a fixed key: ``digest(data)`` for one buffer, ``start()`` for a
    tag computed piece by piece (``update`` any number of times, then ``digest``).

    ``inner`` and ``outer`` are the SHA-256 states after the inner and the outer padded
    key, for a hot loop that computes a digest itself (copy each, never update them in
    place; and call ``spend`` first while ``builtin`` is true: the states may change)."""

    __slots__ = ("inner", "outer", "builtin", "_pads")

    def __init__(self, key: bytes):
        if len(key) > _BLOCK:
            key = sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._pads = (key.translate(_IPAD), key.translate(_OPAD))
        self.builtin = not _openssl_loaded()  # on the interpreter's SHA-256 (see spend)
        new = (_BUILTIN if self.builtin else None) or _openssl()
        self.inner, self.outer = new(self._pads[0]), new(self._pads[1])

    def spend(self, n: int) -> None:
        """Count a message of ``n`` bytes against the process's ``BUILTIN_BUDGET``; once it
        is spent, or OpenSSL is loaded anyway, the states become OpenSSL's (loaded now if
        nobody did)."""
        _left[0] -= n + _BLOCK  # (+ a block: the outer hash's)
        # (``_openssl_loaded()`` written out: this runs for every frame until the switch;
        # ``_BUILTIN`` is not None here, or ``builtin`` would never have been true)
        if _left[0] <= 0 or _OPENSSL_MODULE in sys.modules:
            self.builtin = False
            new = _openssl()
            self.inner, self.outer = new(self._pads[0]), new(self._pads[1])

    def digest(self, data: Buffer) -> bytes:
        """The tag of ``data`` (bytes or a memoryview of bytes)."""
        if self.builtin:
            self.spend(len(data))  # type: ignore[arg-type]
        inner = self.inner.copy()
        inner.update(data)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def tag(self, head: Buffer) -> bytes:
        """The short tag of a frame header: the first ``TAG_SIZE`` bytes of its HMAC."""
        return self.digest(head)[:TAG_SIZE]

    def frame(self, head: bytes, body: bytes) -> bytes:
        """A small frame's whole wire form, ``head || tag || body || mac``, in one buffer:
        ``tag`` as ``tag(head)``, ``mac`` the HMAC of ``head || tag || body``. The header
        is hashed once for both, and nothing is built but the result (every call and
        every reply is such a frame, so each Python step counts)."""
        if self.builtin:  # (``spend`` written out: every reply of a young server)
            _left[0] -= len(head) + len(body) + _BLOCK
            if _left[0] <= 0 or _OPENSSL_MODULE in sys.modules:
                self.spend(0)
        inner = self.inner.copy()
        inner.update(head)
        outer = self.outer.copy()
        outer.update(inner.digest())  # (digest() leaves the running state as it was)
        tag = outer.digest()[:TAG_SIZE]
        inner.update(tag)
        inner.update(body)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return b"".join((head, tag, body, outer.digest()))

    def start(self) -> Hasher:
        """A fresh incremental computation of a tag (for a large message: on OpenSSL's
        SHA-256 from here on)."""
        if self.builtin:
            self.spend(BUILTIN_BUDGET)
        return Hasher(self.inner.copy(), self.outer)


class Hasher:
    """One tag being computed: feed the message with ``update``, then call ``digest``."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, inner: HashState, outer: HashState):
        self._inner = inner
        self._outer = outer

    def update(self, data: Buffer) -> None:
        self._inner.update(data)

    def digest(self) -> bytes:
        """The tag of what was fed so far (more may be fed after: nothing is finalized)."""
        outer = self._outer.copy()
        outer.update(self._inner.digest())
        return outer.digest()
