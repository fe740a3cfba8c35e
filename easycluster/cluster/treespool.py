"""A stream spooled to a file, for copies through the tree: bounded memory at every
level, whatever the size of the file and the number of nodes.

``treestdin.StdinStream`` keeps a command's stdin in memory (a share rerouted after its
gateway died needs it again from the first byte). A copy's stream is a whole file
(tens of GB are fine), so here the same interface (``append``, ``follow``, ``eof``) is
backed by a file, read back with ``os.pread`` at each consumer's own offset:

- at the admin, the file is the copy's source itself (``SpoolStream.over``: complete
  from the start, nothing written);
- on a gateway, an anonymous temporary file that ``gateway_feed`` appends the parent's
  chunks to as they come (disk, not memory: one copy per gateway, gone with the run).

Each consumer holds one chunk (``CHUNK``) at a time. ``SpoolFeed`` is the cluster
engine's stdin feed for the nodes a host reaches itself: the engine reads the stream
from a pipe (``treestdin.pump``, so it learns of new bytes as it does for any stdin)
and only counts it; each node's writes are read back from the spool at that node's
offset, so nothing is kept per node even when more nodes wait for the fan-out window
than it holds (a plain ``StdinFeed`` keeps the whole stream for them).
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import IO, Callable, Dict, Iterator, Optional, Tuple

from .feed import CHUNK as FEED_CHUNK
from .feed import StdinFeed

CHUNK = 1 << 20  # bytes per follow() step (one gateway_feed call carries one)
WAIT = 0.2  # s between two looks at ``stop`` while no byte comes
CACHE_CHUNKS = 16  # engine-sized chunks a SpoolFeed keeps for nodes close together

Stop = Callable[[], bool]


class SpoolStream:
    """One stream's bytes in a file, its size so far and whether its end is known.
    Thread-safe: one writer (``append``), any number of readers (``follow``)."""

    def __init__(
        self,
        file: Optional[IO[bytes]] = None,
        size: int = 0,
        closer: Optional[Callable[[], None]] = None,
    ) -> None:
        self.file: IO[bytes] = file if file is not None else tempfile.TemporaryFile()
        self.size = size
        self.eof = file is not None  # (a given file is complete)
        self.closer = closer if closer is not None else self.file.close
        self.cond = threading.Condition()
        self.closed = False

    @classmethod
    def over(cls, file: IO[bytes], size: int, closer: Callable[[], None]) -> SpoolStream:
        """The complete stream of ``size`` bytes held by ``file`` (a copy's source);
        ``closer`` releases it (``close``)."""
        return cls(file, size, closer)

    def fileno(self) -> int:
        return self.file.fileno()

    def append(self, data: bytes, eof: bool = False) -> None:
        """More bytes (``eof``: and nothing after them), written at the end of the file.
        Bytes after the end are an error (ValueError), as for ``StdinStream``."""
        with self.cond:
            if self.eof and (data or not eof):
                raise ValueError("stdin: bytes after the end of the stream")
            view = memoryview(data)
            while view:
                n = os.pwrite(self.file.fileno(), view, self.size)
                self.size += n
                view = view[n:]
            self.eof = self.eof or eof
            self.cond.notify_all()

    def read(self, at: int, most: int = CHUNK) -> bytes:
        """Up to ``most`` bytes from offset ``at`` (fewer near the end so far)."""
        want = min(most, self.size - at)
        if want <= 0:
            return b""
        try:
            data = os.pread(self.file.fileno(), want, at)
        except ValueError:  # (closed: the run is over)
            raise OSError("the spooled stream is closed") from None
        if not data:  # (the source shrank under us: the receivers will see too few)
            raise OSError(f"the spooled stream ended early at {at} of {self.size} bytes")
        return data

    def follow(self, stop: Stop) -> Iterator[Tuple[bytes, bool]]:
        """``(chunk, last)`` from the first byte on, waiting for more, until the end
        (``last`` True once, with the final chunk, maybe empty) or ``stop()``. A source
        that shrank ends the stream there (OSError: the consumer gives up, and the
        receivers, short of bytes, fail)."""
        at = 0
        while True:
            with self.cond:
                while at >= self.size and not self.eof:
                    if stop():
                        return
                    self.cond.wait(WAIT)
                size, eof = self.size, self.eof
            if stop():
                return
            chunk = self.read(at) if at < size else b""
            at += len(chunk)
            last = eof and at >= size
            yield chunk, last
            if last:
                return

    def close(self) -> None:
        """Release the file (the source at the admin, the temporary on a gateway)."""
        with self.cond:
            if not self.closed:
                self.closed = True
                self.closer()


class SpoolFeed(StdinFeed):
    """The engine's stdin feed over a ``SpoolStream`` (module docstring): ``append``
    only counts the bytes the engine read from the pipe (they are in the spool already,
    at the same offsets, since the pump writes them in order); ``view`` reads them back
    from the spool; nothing is trimmed, nothing kept per node."""

    __slots__ = ("spool", "cache")

    def __init__(self, spool: SpoolStream, source: int) -> None:
        super().__init__(source=source)
        self.spool = spool
        self.cache: Dict[int, bytes] = {}  # full chunks only (a partial one would go stale)

    def append(self, data: bytes) -> None:
        if self.eof:
            raise ValueError("stdin: write after set_write_eof()")
        if data:
            self.total += len(data)
            self.dirty = True

    def view(self, pos: int) -> memoryview:
        if pos >= self.total:
            return memoryview(b"")
        index = pos // FEED_CHUNK
        chunk = self.cache.get(index)
        if chunk is None:
            start = index * FEED_CHUNK
            try:
                chunk = self.spool.read(start, min(FEED_CHUNK, self.total - start))
            except OSError:  # (cannot happen while the run lives: end the stream here)
                self.total, self.eof = pos, True
                return memoryview(b"")
            if len(chunk) == FEED_CHUNK:
                if len(self.cache) >= CACHE_CHUNKS:
                    del self.cache[next(iter(self.cache))]
                self.cache[index] = chunk
        return memoryview(chunk)[pos - index * FEED_CHUNK :]

    def trim(self, needed_from: int) -> None:
        pass  # (nothing is held: every byte is in the spool)

    def close(self) -> None:
        self.cache.clear()
