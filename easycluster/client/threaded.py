"""``ThreadedClient``: a Client with its own reader thread.

The reader thread owns the reads and completes futures (so ``oncomplete`` callbacks run
on it); callers just wait on their futures. Each client thread gets its own server
thread (ids 1, 2, ...), stopped once the client thread has ended.
"""

from __future__ import annotations

import itertools
import threading

from ..errors import ConnectionLost
from ..protocol.messages import CONTROL
from .client import Client
from .reader import ThreadReader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict


class ThreadedClient(Client):
    """A Client whose replies are read by a background thread; safe to share by threads."""

    def __init__(
        self, *args: Any, keep_alive_interval: float = 10, keep_alive_timeout: float = 60, **kw: Any
    ):
        self.keep_alive_interval = keep_alive_interval
        self.keep_alive_timeout = keep_alive_timeout
        self._tids: Dict[threading.Thread, int] = {}
        self._tid_counter = itertools.count(1)
        self._tid_lock = threading.Lock()
        super().__init__(*args, **kw)

    def _new_reader(self) -> ThreadReader:
        return ThreadReader(
            self._handle,
            self._lost,
            lambda: self.peername,
            self.keep_alive_interval,
            self.keep_alive_timeout,
        )

    def _thread_for_call(self) -> int:
        me = threading.current_thread()
        tid = self._tids.get(me)
        if tid is not None:
            return tid
        with self._tid_lock:
            self._stop_dead_threads()
            tid = self._tids[me] = next(self._tid_counter)
        return tid

    def check_threads(self) -> None:
        """Stop the server threads of client threads that have ended (EasyCluster 0.22;
        calls from a new client thread do this too)."""
        with self._tid_lock:
            self._stop_dead_threads()

    def _stop_dead_threads(self) -> None:
        dead = [t for t in self._tids if not t.is_alive()]
        for t in dead:
            old = self._tids.pop(t)
            try:
                self.send_request(0, "stop_thread", (old,), threadid=CONTROL, nonblocking=True)
            except ConnectionLost:
                pass


AutoThreadingClient = ThreadedClient
