"""``ReusedThreads``: run each call on a thread of its own, reusing idle threads.

For work that blocks for as long as it lasts (a remote command relayed until it ends, a
request that may wait on others), so a fixed-size pool could deadlock or queue behind a
long call; yet a new thread per call costs the caller ~60 us of CPU and ~0.2 ms of wall
(``Thread.start`` waits until the thread runs), which a Task pays per node and command.
A thread that has finished its call waits ``idle`` seconds for another, then ends.
"""

from __future__ import annotations

import sys
import threading
from _queue import Empty, SimpleQueue  # (queue.py would cost a server heapq & co.)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Tuple

    Call = Tuple[Callable[..., Any], Tuple[Any, ...]]


class ReusedThreads:
    """``run(fn, *args)`` starts ``fn(*args)`` at once on an idle thread, or a new one.

    There are never fewer threads than calls running or waiting to start: a call never
    waits for another to finish. ``fn`` should catch its own exceptions: one that escapes
    is reported as an uncaught thread error (``threading.excepthook``) and ends nothing
    but that call. Threads are daemon threads named ``name``.
    """

    def __init__(self, name: str, idle: float = 30.0) -> None:
        self.name = name
        self.idle = idle
        self._calls: SimpleQueue[Call] = SimpleQueue()
        self._lock = threading.Lock()
        self._free = 0  # threads waiting for a call that no run() has claimed yet

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            claimed = self._free > 0
            if claimed:
                self._free -= 1
        self._calls.put((fn, args))
        if not claimed:
            threading.Thread(target=self._serve, daemon=True, name=self.name).start()

    def _serve(self) -> None:
        while True:
            try:
                fn, args = self._calls.get(timeout=self.idle)
            except Empty:
                with self._lock:
                    if self._free > 0:  # nobody claimed this thread: it may end
                        self._free -= 1
                        return
                continue  # a run() claimed it just now: its call is on the way
            try:
                fn(*args)
            except BaseException:  # reported as a thread's uncaught error; the thread lives on
                threading.excepthook(
                    threading.ExceptHookArgs([*sys.exc_info(), threading.current_thread()])
                )
            finally:
                del fn, args  # (nothing of the call outlives it here)
            with self._lock:
                self._free += 1
