"""Standard input through the tree: one stream of bytes, broadcast to every node of a
tree-mode run, whichever gateway leads to it.

``StdinStream`` holds the chunks of the stream as they come (from the admin's stdin, or
from the parent's ``gateway_feed`` calls on a gateway) and its end. Each consumer reads
it from the start at its own pace (``follow``):

- the targets this host reaches itself: ``pump`` writes the stream into a pipe whose
  read end is the cluster engine's stdin source (``StdinFeed(source=fd)``), so the
  engine's own flow control (read more only when every node caught up) applies below
  the pipe, and a full pipe holds the pump back;
- each gateway below: a feeder thread (``treerun.py``) sends each chunk on with
  ``gateway_feed``, one call at a time, so a slow gateway holds back only its feeder.

Every chunk is kept until the run ends: a share rerouted after its gateway died starts
the stream again from its first byte (the command runs again from the start), so the
whole stream is in memory at each level (bounded by what the admin reads). Thread-safe.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Iterator, List, Tuple

CHUNK = 1 << 16  # bytes read from the admin's stdin at once

Stop = Callable[[], bool]
WAIT = 0.2  # s between two looks at ``stop`` while no chunk comes


class StdinStream:
    """The chunks of one stream and whether its end is known (module docstring)."""

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.eof = False
        self.cond = threading.Condition()

    def append(self, data: bytes, eof: bool = False) -> None:
        """More bytes (``eof``: and nothing after them). Bytes after the end are an
        error (ValueError), as writing after ``set_write_eof``."""
        with self.cond:
            if self.eof and (data or not eof):
                raise ValueError("stdin: bytes after the end of the stream")
            if data:
                self.chunks.append(bytes(data))
            self.eof = self.eof or eof
            self.cond.notify_all()

    def follow(self, stop: Stop) -> Iterator[Tuple[bytes, bool]]:
        """``(chunk, last)`` from the first chunk on, waiting for more, until the end
        (``last`` True once, with the final chunk, maybe empty) or ``stop()``."""
        at = 0
        while True:
            with self.cond:
                while at >= len(self.chunks) and not self.eof:
                    if stop():
                        return
                    self.cond.wait(WAIT)
                if at < len(self.chunks):
                    chunk = self.chunks[at]
                    at += 1
                    last = self.eof and at == len(self.chunks)
                else:
                    chunk, last = b"", True
            if stop():
                return
            yield chunk, last
            if last:
                return


def pump(stream: StdinStream, fd: int, stop: Stop) -> None:
    """Write ``stream`` into ``fd`` (a pipe's write end, blocking) and close it at the
    end; gives up quietly when the reader went away (the commands ended) or ``stop()``."""
    try:
        for chunk, _ in stream.follow(stop):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:  # (BrokenPipeError: nobody reads any more)
        pass
    finally:
        os.close(fd)


def read_into(stream: StdinStream, fd: int, stop: Stop) -> None:
    """Read ``fd`` (the admin's stdin) to its end into ``stream``, then mark the end."""
    try:
        while not stop():
            data = os.read(fd, CHUNK)
            if not data:
                break
            stream.append(data)
    except OSError:  # (a stdin that fails ends the stream here)
        pass
    stream.append(b"", eof=True)


def start_thread(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    thread.start()
    return thread
