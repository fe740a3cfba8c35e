"""``StdinFeed``: the bytes a worker writes to every node's stdin (stdin broadcast).

Pure bookkeeping: one shared list of chunks and, per slot, how far it has been written
(absolute byte offsets). Nothing is copied per node: each node's writes are views into
the shared chunks. A chunk is dropped once every slot that still needs it has passed it;
slots that have not started yet (waiting for the fan-out window) need it all, so with
more nodes than the fan-out the whole stream is kept until the last node has started.
The engine reads the next chunk from the source only when every node being written has
caught up, so memory follows the slowest node, not the fastest.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

CHUNK = 1 << 16  # bytes read from a source or written to a pipe at once

# What ``Task.shell``'s ``stdin`` takes (``make_feed``).
Stdin = Union[bytes, bytearray, bool, int, Any, None]


class StdinFeed:
    """Chunks ``[base, total)`` of the stream, ``eof`` once its end is known, and the
    ``source`` file descriptor it is read from (None: bytes given up front, or written
    with ``Worker.write``)."""

    __slots__ = ("chunks", "starts", "base", "total", "eof", "source", "owner", "dirty")

    def __init__(
        self,
        data: bytes = b"",
        eof: bool = False,
        source: Optional[int] = None,
        owner: object = None,
    ):
        self.chunks: List[bytes] = []
        self.starts: List[int] = []  # the absolute offset of each chunk
        self.base = 0  # the offset of the first chunk kept
        self.total = 0  # the offset just past the last chunk
        self.eof = False
        self.source = source
        self.owner = owner  # the file object ``source`` belongs to (kept open while needed)
        self.dirty = False  # new bytes or EOF since the engine last looked
        if data:
            self.append(data)
        self.eof = eof

    def append(self, data: bytes) -> None:
        if self.eof:
            raise ValueError("stdin: write after set_write_eof()")
        if data:
            self.chunks.append(bytes(data))
            self.starts.append(self.total)
            self.total += len(data)
            self.dirty = True

    def end(self) -> None:
        self.eof = True
        self.dirty = True

    def view(self, pos: int) -> memoryview:
        """The bytes from ``pos`` to the end of the chunk holding it (empty at the end)."""
        if pos >= self.total:
            return memoryview(b"")
        if pos < self.base:
            raise ValueError(f"stdin: offset {pos} was already dropped")
        i = len(self.starts) - 1
        while self.starts[i] > pos:  # (few chunks are kept: look from the end)
            i -= 1
        return memoryview(self.chunks[i])[pos - self.starts[i] :]

    def close(self) -> None:
        """The run is over: release what the feed holds (nothing here; see
        ``copyio.FileFeed``)."""

    def trim(self, needed_from: int) -> None:
        """Drop the chunks that end at or before ``needed_from`` (the smallest offset any
        slot still needs)."""
        while self.chunks and self.starts[0] + len(self.chunks[0]) <= needed_from:
            self.base = self.starts[0] + len(self.chunks[0])
            del self.chunks[0], self.starts[0]


def make_feed(stdin: Stdin) -> Optional[StdinFeed]:
    """The feed for ``Task.shell``'s ``stdin``: None for None/False (no feed: /dev/null,
    or ``Worker.write`` may make one), an open one for True, bytes then EOF, or a file
    or descriptor to read."""
    if stdin is None or stdin is False:
        return None
    if stdin is True:
        return StdinFeed()
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        return StdinFeed(bytes(stdin), eof=True)
    if isinstance(stdin, int):
        return StdinFeed(source=stdin)
    if hasattr(stdin, "fileno"):
        return StdinFeed(source=stdin.fileno(), owner=stdin)
    raise TypeError(f"stdin must be bytes, a file, a descriptor, True or None: {stdin!r}")
