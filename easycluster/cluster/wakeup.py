"""``Wakeup``: the pipe that ends the wait of a Task's loop (``engine.py``)."""

from __future__ import annotations

import _signal  # (the C module: signal.py's enums are not needed for a wakeup fd)
import os
import selectors
import threading
from typing import Any, Optional


class Wakeup:
    """The loop's wakeup pipe, watched by its selector: ``poke()`` (``Task.abort()`` from
    another thread) ends the wait at once. For a run on the main thread it is also the
    signal wakeup fd (``signal.set_wakeup_fd``): a signal (Ctrl-C) that arrives just
    before the loop blocks in ``select`` has its C handler run at once, but its Python
    handler (raising KeyboardInterrupt) only when the thread next runs Python code:
    without a wakeup, after the next output or exit of some node, possibly a minute
    later. The previous wakeup fd (asyncio's, say) is put back when the run ends.
    """

    __slots__ = ("read", "write", "previous", "lock", "closed")

    def __init__(self, read: int, write: int, previous: Optional[int]) -> None:
        self.read, self.write, self.previous = read, write, previous
        # (a poke racing with the end of the run must not write to a closed descriptor,
        # whose number another file may have taken)
        self.lock = threading.Lock()
        self.closed = False

    @classmethod
    def arm(cls, sel: selectors.BaseSelector, data: Any) -> Wakeup:
        """A wakeup pipe watched by ``sel`` with ``data`` (the signal wakeup fd on the main
        thread)."""
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = None
        if threading.current_thread() is threading.main_thread():
            try:
                previous = _signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            except ValueError:  # (not the main interpreter's main thread after all)
                previous = None
        sel.register(read, selectors.EVENT_READ, data)
        return cls(read, write, previous)

    def poke(self) -> None:
        """Wake the loop (from any thread; after the run, nothing)."""
        with self.lock:
            if self.closed:
                return
            try:
                os.write(self.write, b"\0")
            except OSError:  # (full: a wake-up is pending anyway)
                pass

    def disarm(self, sel: Optional[selectors.BaseSelector]) -> None:
        with self.lock:
            self.closed = True
        if self.previous is not None:
            _signal.set_wakeup_fd(self.previous)
        if sel is not None:
            try:
                sel.unregister(self.read)
            except (KeyError, ValueError):
                pass
        os.close(self.read)
        os.close(self.write)

    @staticmethod
    def drain(fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
