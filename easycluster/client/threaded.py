"""``ThreadedClient``: a Client with its own reader thread.

The reader thread owns the reads and completes futures (so ``oncomplete`` callbacks run
on it); callers just wait on their futures. Each client thread gets its own server
thread (ids 1, 2, ...), stopped once the client thread has ended.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from typing import Any, Dict, Optional

from ..errors import ConnectionLost
from ..protocol import frames
from ..protocol.messages import CONTROL
from ..transport.channel import Channel
from .client import Client, Response


class ThreadedClient(Client):
    """A Client whose replies are read by a background thread; safe to share by threads."""

    _reads_inline = False

    def __init__(self, *args: Any, keep_alive_interval: float = 10,
                 keep_alive_timeout: float = 60, **kw: Any):
        self.keep_alive_interval = keep_alive_interval
        self.keep_alive_timeout = keep_alive_timeout
        self._tids: Dict[threading.Thread, int] = {}
        self._tid_counter = itertools.count(1)
        self._tid_lock = threading.Lock()
        super().__init__(*args, **kw)

    def _start_reading(self) -> None:
        channel = self._channel
        assert channel is not None
        threading.Thread(target=self._reader, args=(channel,), daemon=True,
                         name=f"easycluster-reader {self.peername}").start()

    def _reader(self, channel: Channel) -> None:
        """Own the reads: complete futures, and ping a quiet server.

        Any frame counts as a sign of life; the server answers pings from its reading
        thread even while its calls are busy, so only a dead or stuck peer is dropped.
        """
        interval, limit = self.keep_alive_interval, self.keep_alive_timeout
        last = time.monotonic()
        while True:
            try:
                got = channel.recv_frames(timeout=interval if interval else None)
                now = time.monotonic()
                if got:
                    last = now
                    self._handle(got)
                elif limit and now - last > limit:
                    raise ConnectionLost(f"no sign of life from {self.peername} for "
                                         f"{limit:g} s (keep-alive)")
                else:
                    channel.post(frames.FT_PING, b"", flush=True)
            except ConnectionLost as e:
                self._lost(channel, e)
                return

    def _wait_for(self, fut: Response, timeout: Optional[float]) -> None:
        try:
            concurrent.futures.Future.exception(fut, timeout)
        except concurrent.futures.TimeoutError:
            pass

    def read_response(self, block: bool = True) -> None:
        raise TypeError("a ThreadedClient reads replies by itself; use Response.wait()")

    def _thread_for_call(self) -> int:
        me = threading.current_thread()
        tid = self._tids.get(me)
        if tid is not None:
            return tid
        with self._tid_lock:
            dead = [t for t in self._tids if not t.is_alive()]
            for t in dead:
                old = self._tids.pop(t)
                try:
                    self.send_request(0, "stop_thread", (old,), threadid=CONTROL,
                                      nonblocking=True)
                except ConnectionLost:
                    pass
            tid = self._tids[me] = next(self._tid_counter)
        return tid


AutoThreadingClient = ThreadedClient
