"""Large and compressed payloads of ``frames``: a compressed body inflated within the
frame limit, a large frame hashed and sent a chunk at a time, and the receive buffer of a
frame too large for the reader's scratch buffer."""

from __future__ import annotations

import mmap
import zlib

from ..errors import FrameTooLarge, ProtocolError
from .mac import Hasher

TYPE_CHECKING = False
if TYPE_CHECKING:  # anything with the buffer protocol (annotations only)
    from typing import Iterator, List, Union

    from .mac import Buffer

    Bytes = Union[bytes, bytearray, memoryview]


_INFLATE_STEP = 1 << 18  # a compressed payload is inflated this many bytes at a time
_MMAP_MIN = 1 << 25  # big receive buffers this large are populated mappings
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux, Python 3.10+


def inflate(data: Bytes, limit: int) -> bytearray:
    """``data`` decompressed, a step at a time into one growing buffer, refused as soon as
    it passes ``limit``: at most about ``limit`` bytes are ever held (one ``decompress``
    call bounded by the limit would hold its output blocks and then their joined copy,
    twice the limit)."""
    d = zlib.decompressobj()
    out = bytearray()
    tail: Bytes = data
    try:
        while not d.eof:
            # never more than one byte past the limit: that byte is the refusal
            piece = d.decompress(tail, min(_INFLATE_STEP, limit + 1 - len(out)))
            tail = d.unconsumed_tail
            if not piece and not tail:
                break  # input used up, stream not ended
            out += piece
            if len(out) > limit:
                raise FrameTooLarge(f"compressed frame expands beyond the {limit}-byte limit")
    except zlib.error as e:
        raise ProtocolError(f"compressed frame is corrupt: {e}")
    if not d.eof:
        raise ProtocolError("compressed frame is incomplete")
    return out


def chunked(h: Hasher, head: bytes, views: List[memoryview], chunk: int) -> Iterator[List[Buffer]]:
    """Yield ``head`` and ``views`` in groups of ``chunk`` payload bytes (the last group
    shorter, ending with the MAC), feeding ``h`` each group just before it is yielded."""
    group: List[Buffer] = [head]
    room = chunk
    for view in views:
        pos, n = 0, len(view)
        while n - pos >= room:
            piece = view[pos : pos + room]
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


def big_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes for one large frame; it lives as long as views
    of it do (numpy arrays built on a payload keep it)."""
    if size >= _MMAP_MIN and _POPULATE:
        # Past glibc's largest mmap threshold (32 MiB) every bytearray is a fresh mapping
        # that the kernel faults in and zeroes page by page as it is written; one populated
        # mapping is faulted in a single call, about a fifth cheaper. Below it, malloc
        # recycles freed memory, which beats any new mapping.
        return memoryview(
            mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE)
        )
    return memoryview(bytearray(size))
