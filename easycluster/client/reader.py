"""Who reads a client's connection: ``InlineReader`` (plain Client) or ``ThreadReader``.

One thread owns the reads of a connection (design rule 3). The reader is that owner's
half of the client: it keeps the table of outstanding replies, reads frames from the
channel and hands them to the client, and is what a ``Response`` asks when someone waits
for it. Interface (both classes):

    pending                  {request id: Response or Slot}; the client adds, the reader's
                             handler pops when the reply is in
    inline                   True when the waiting thread reads (blocking calls then use a
                             light ``Slot`` instead of a Future)
    start(channel)           a connection is attached: begin reading it
    stop()                   the connection is gone: stop reading
    wait_for(fut, timeout)   return once ``fut.done()`` or ``timeout`` passed
    watch()                  someone waits on a Future without reading (a done-callback,
                             ``concurrent.futures.wait``/``as_completed``): make sure
                             replies are read anyway
    forget(rid)              the caller gave up on ``rid``: a late reply is dropped
    read_response(block)     read once and complete what came (plain clients only)

``InlineReader``: the thread that waits for a reply reads the socket, one at a time
(others wait on a condition and are woken after each batch). A *standby* thread covers
the waiters that do not read (callbacks, ``concurrent.futures.wait``): it is started on
the first non-blocking call, looks every ``STANDBY_DELAY`` seconds, and reads only when
replies are outstanding and nobody has read or sent since its last look (a caller busy
sending a burst reads it afterwards: reading meanwhile would only fight it for the
interpreter); it parks after
``STANDBY_PARK`` seconds without outstanding replies.

``ThreadReader``: a reader thread per connection reads everything and completes the
futures (callbacks run on it), pinging a quiet server as a keep-alive; callers sleep on
their futures.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ..errors import ConnectionLost
from ..protocol import frames
from ..transport.channel import Channel

Handle = Callable[[List[frames.Frame]], None]  # complete the replies in a batch of frames
Lost = Callable[[Channel, ConnectionLost], None]  # the channel failed

STANDBY_DELAY = 0.02  # how long replies may wait unread with nobody reading
STANDBY_PARK = 1.0  # idle time after which the standby thread sleeps until needed


class InlineReader:
    """A plain Client's reads, done by whichever thread waits (see the module doc)."""

    inline = True

    def __init__(self, handle: Handle, lost: Lost):
        self.pending: Dict[int, Any] = {}
        self._handle = handle
        self._lost = lost
        self._channel: Optional[Channel] = None
        self._lock = threading.Lock()  # the reader role; taken directly on the hot paths
        self._cond = threading.Condition(self._lock)
        self._reading = False  # some thread holds the reader role
        self._nwait = 0  # threads waiting in _take_reader for the role
        self._reads = 0  # batches read so far: the standby's sign that someone reads
        self._sends = 0  # non-blocking calls watched: a sender busy sending reads later
        self._standby: Optional[threading.Thread] = None
        self._parked = True  # the standby thread sleeps until watch() wakes it
        self._wake = threading.Event()

    def start(self, channel: Channel) -> None:
        self._channel = channel

    def stop(self) -> None:
        """The connection is gone (a reader serves one connection: a new one gets a new
        reader)."""
        self._channel = None
        self._wake.set()  # let a parked standby thread see the end

    def forget(self, rid: int) -> None:
        self.pending.pop(rid, None)

    def wait_for(self, fut: Any, timeout: Optional[float]) -> None:
        """Read until ``fut`` is done or ``timeout`` passes (one reader at a time)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not fut.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            if not self._take_reader(left, fut):
                continue
            try:
                while not fut.done():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    if not self._read_once(left):
                        return
            finally:
                self._release_reader()

    def read_response(self, block: bool = True) -> None:
        """Read and handle incoming replies once (running callbacks)."""
        if self._take_reader(None if block else 0):
            try:
                self._read_once(None if block else 0)
            finally:
                self._release_reader()

    def watch(self) -> None:
        """Make sure replies get read although their waiter does not read."""
        self._sends += 1
        if self._parked:
            self._unpark()

    def _unpark(self) -> None:
        with self._lock:
            if not self._parked:
                return
            self._parked = False
            if self._standby is None:
                self._standby = threading.Thread(
                    target=self._standby_loop, daemon=True, name="easycluster-standby-reader"
                )
                self._standby.start()
                return
        self._wake.set()

    def _take_reader(self, left: Optional[float], fut: Any = None) -> bool:
        with self._lock:
            if not self._reading:
                self._reading = True
                return True
            if fut is not None and fut.done():
                return False  # completed by the other reader: checked under the lock
            self._nwait += 1
            self._cond.wait(1.0 if left is None else min(left, 1.0))
            self._nwait -= 1
            return False

    def _release_reader(self) -> None:
        with self._lock:
            self._reading = False
            if self._nwait:  # others wait in _take_reader
                self._cond.notify_all()

    def _read_once(self, timeout: Optional[float]) -> bool:
        """Read and handle one batch of frames; False once the connection is gone."""
        channel = self._channel
        if channel is None:
            return False
        try:
            got = channel.recv_frames(timeout)
            self._reads += 1
            self._handle(got)
        except ConnectionLost as e:
            self._lost(channel, e)
            return False
        if self._nwait:  # waiters may find their reply among these
            with self._lock:
                self._cond.notify_all()
        return True

    def _standby_loop(self) -> None:
        """Read for the waiters that do not read, when nobody else does (module doc)."""
        seen = (-1, -1)
        idle_since = time.monotonic()
        while self._channel is not None:
            if self._parked:
                self._wake.wait()
                self._wake.clear()
                seen, idle_since = (-1, -1), time.monotonic()
                continue
            time.sleep(STANDBY_DELAY)
            now = time.monotonic()
            if not self.pending:
                if now - idle_since > STANDBY_PARK:
                    with self._lock:
                        self._parked = True
                continue
            idle_since = now
            now_seen = (self._reads, self._sends)
            if now_seen != seen or self._reading:
                seen = now_seen  # someone reads or is still sending: look again later
                continue
            if self._take_reader(0):
                try:
                    # read while replies are outstanding and no caller asks for the role
                    while self.pending and not self._nwait and self._read_once(STANDBY_DELAY):
                        pass
                finally:
                    self._release_reader()
            seen = (self._reads, self._sends)


class ThreadReader:
    """A reader thread per connection (ThreadedClient; see the module doc)."""

    inline = False

    def __init__(
        self, handle: Handle, lost: Lost, name: Callable[[], str], interval: float, limit: float
    ):
        self.pending: Dict[int, Any] = {}
        self._handle = handle
        self._lost = lost
        self._name = name
        self.interval = interval
        self.limit = limit

    def start(self, channel: Channel) -> None:
        threading.Thread(
            target=self._run,
            args=(channel,),
            daemon=True,
            name=f"easycluster-reader {self._name()}",
        ).start()

    def stop(self) -> None:
        """The reader thread ends by itself when the channel reports it closed."""

    def forget(self, rid: int) -> None:
        self.pending.pop(rid, None)

    def wait_for(self, fut: Any, timeout: Optional[float]) -> None:
        try:  # Future's own wait (the reader thread completes it)
            concurrent.futures.Future.exception(fut, timeout)
        except concurrent.futures.TimeoutError:
            pass

    def watch(self) -> None:
        """The reader thread reads anyway."""

    def read_response(self, block: bool = True) -> None:
        raise TypeError("a ThreadedClient reads replies by itself; use Response.wait()")

    def _run(self, channel: Channel) -> None:
        """Own the reads: complete futures, and ping a quiet server.

        Any frame counts as a sign of life; the server answers pings from its reading
        thread even while its calls are busy, so only a dead or stuck peer is dropped.
        """
        interval, limit = self.interval, self.limit
        last = time.monotonic()
        while True:
            try:
                got = channel.recv_frames(timeout=interval if interval else None)
                now = time.monotonic()
                if got:
                    last = now
                    self._handle(got)
                elif limit and now - last > limit:
                    raise ConnectionLost(
                        f"no sign of life from {self._name()} for {limit:g} s (keep-alive)"
                    )
                else:
                    channel.post(frames.FT_PING, b"", flush=True)
            except ConnectionLost as e:
                self._lost(channel, e)
                return
