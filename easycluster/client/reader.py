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
    wait_for(fut, timeout)   return once ``fut.done()`` or ``timeout`` passed (``fut`` is
                             a Response or a Slot: ``finished`` set means done)
    watch()                  someone waits on a Future without reading (a done-callback,
                             ``concurrent.futures.wait``/``as_completed``): make sure
                             replies are read anyway
    forget(rid)              the caller gave up on ``rid``: a late reply is dropped
    read_response(block)     read once and complete what came (plain clients only)

``InlineReader``: the thread that waits for a reply reads the socket, one at a time
(others wait on a condition and are woken after each batch); a blocking call's thread
first polls for its reply a moment (``REPLY_SPIN``) when replies come that fast. The
*standby* thread covers the waiters that do not read (callbacks,
``concurrent.futures.wait``): one thread for every plain Client of the process
(``Standby``), told by ``watch`` on each non-blocking call. Every ``STANDBY_DELAY``
seconds it looks at the readers it watches and reads for those with replies outstanding
that nobody has read or sent on since its last look (a caller busy sending a burst reads
it afterwards: reading meanwhile would only fight it for the interpreter), waiting on
all their sockets at once; a reader without outstanding replies for ``STANDBY_PARK``
seconds leaves the watch until the next ``watch``.

``ThreadReader``: a reader thread per connection reads everything and completes the
futures (callbacks run on it), pinging a quiet server as a keep-alive; callers sleep on
their futures.
"""

from __future__ import annotations

import _thread
import os
import selectors
import threading
import time

from ..errors import ConnectionLost
from ..protocol import frames
from ..transport.channel import Channel
from .outcome import Slot
from .output import report_error

_thread_count = _thread._count  # threads started besides the main one (any module's)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Handle = Callable[[List[frames.Frame]], None]  # complete the replies in a batch of frames
    Lost = Callable[[Channel, ConnectionLost], None]  # the channel failed

STANDBY_DELAY = 0.02  # how long replies may wait unread with nobody reading
STANDBY_PARK = 1.0  # idle time after which the standby thread sleeps until needed
STOP_WAIT = 2.0  # how long close() waits for a ThreadedClient's reader thread to end
CLAIM_HOLD = 1.0  # how long a fan-out making no progress keeps the standby away
# A blocking call first polls its socket for its reply this long, without sleeping
# (``Channel.poll_frames``: a sleeping thread's wake-up costs a short call's round trip
# about as much as the server's work), while replies come within it; one that does not
# makes the next waits block, timed, until one is fast again. Only with more than one
# CPU (the server needs one meanwhile) and while the process runs no other thread (a
# spinning thread would keep the GIL from it, or a CPU).
REPLY_SPIN = 200e-6
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        self._parked = True  # not in the standby's watch until watch() puts it there
        # The standby thread's notes on this reader (only that thread touches them).
        self._seen = (-1, -1)
        self._idle_since = 0.0
        self.claimed_by: Optional[Claim] = None  # a fan-out will read this one (``Claim``)
        # A blocking call's wait for its reply (``REPLY_SPIN``): 1 polls the socket first,
        # 0 blocks and times the wait (fast enough: 1 next time), -1 never polls
        self._spin = -1

    def start(self, channel: Channel) -> None:
        self._channel = channel
        # (0 at first: the first replies of a server still starting are slow, and a
        # thousand fresh connections would each spin in vain once)
        self._spin = 0 if REPLY_SPIN > 0 and _CPUS > 1 and channel.spins else -1

    def stop(self) -> None:
        """The connection is gone (a reader serves one connection: a new one gets a new
        reader); the standby drops it at its next look."""
        self._channel = None

    def forget(self, rid: int) -> None:
        self.pending.pop(rid, None)

    def wait_for(self, fut: Any, timeout: Optional[float]) -> None:
        """Read until ``fut`` is done or ``timeout`` passes (one reader at a time). Even
        with no time left, replies already here are read once: a caller that spent its
        time on one server still finds the others' replies (``call_multi``)."""
        lock = self._lock
        if timeout is None:
            # The usual wait: nobody else reads, and the one read brings the reply
            # (a blocking call's may spin: ``_spin_read``). That pass written out (the
            # loop's clock and cancel checks need not run for it); anything else goes
            # on in the loop.
            with lock:
                mine = not self._reading
                if mine:
                    self._reading = True
            if mine:
                try:
                    if fut.finished or not self._read_once(None, fut):
                        return  # (done: nothing to read; gone: the caller says so)
                finally:
                    with lock:  # (``_release_reader``, written out)
                        self._reading = False
                        if self._nwait:  # others wait for the role, or for replies read here
                            self._cond.notify_all()
                if fut.finished:
                    return
        # ``finished`` first: set once the outcome is in, it spares a Future its lock
        # (done() is asked once per pass: it also covers a cancelled future)
        deadline = None if timeout is None else time.monotonic() + timeout
        looked = False  # the one look after the deadline is done
        while not (fut.finished or fut.done()):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if looked:
                    return
                looked, left = True, 0.0
            with lock:  # (``_take_reader``'s first step, written out: the usual case)
                mine = not self._reading
                if mine:
                    self._reading = True
            if not mine and not self._take_reader(left, fut):
                continue
            try:
                while not fut.finished:  # (completed by the reader before us, maybe)
                    if not self._read_once(left):
                        return
                    if not fut.finished and fut.done():
                        return  # cancelled
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
            finally:
                with lock:  # (``_release_reader``, written out)
                    self._reading = False
                    if self._nwait:  # others wait in _take_reader
                        self._cond.notify_all()

    def _spin_read(self, channel: Channel) -> List[frames.Frame]:
        """A blocking call's wait for its reply (see ``REPLY_SPIN``). Only a ``Slot``'s: a
        Response waited on may be one of many, and spinning would take a CPU from the
        servers still at work on the others."""
        if self._spin:
            if _thread_count():
                return channel.recv_frames(None)  # another thread may need the CPU or GIL
            got = channel.poll_frames(REPLY_SPIN)
            if got:
                return got
            self._spin = 0  # slower than the spin: block, timed, until one is fast again
            return channel.recv_frames(None)
        start = time.monotonic()
        got = channel.recv_frames(None)
        if time.monotonic() - start < REPLY_SPIN:
            self._spin = 1
        return got

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
            self._seen, self._idle_since = (-1, -1), time.monotonic()
        STANDBY.watch(self)

    def _take_reader(self, left: Optional[float], fut: Any = None) -> bool:
        with self._lock:
            if not self._reading:
                self._reading = True
                return True
            if fut is not None and fut.done():
                return False  # completed by the other reader: checked under the lock
            self._nwait += 1
            try:
                self._cond.wait(1.0 if left is None else min(left, 1.0))
            finally:  # (a Ctrl-C in the wait: counted still, the standby would never read)
                self._nwait -= 1
            return False

    def _release_reader(self) -> None:
        with self._lock:
            self._reading = False
            if self._nwait:  # others wait in _take_reader
                self._cond.notify_all()

    def _read_once(self, timeout: Optional[float], fut: Any = None) -> bool:
        """Read and handle one batch of frames; False once the connection is gone.
        ``fut``: what the read waits for (a blocking call's ``Slot`` may spin)."""
        channel = self._channel
        if channel is None:
            return False
        try:
            if fut.__class__ is Slot and self._spin >= 0 and timeout is None:
                got = self._spin_read(channel)
            else:
                got = channel.recv_frames(timeout)
            if got:
                self._reads += 1
                self._handle(got)
        except ConnectionLost as e:
            self._lost(channel, e)
            return False
        if self._nwait:  # waiters may find their reply among these
            with self._lock:
                self._cond.notify_all()
        return True

    # The standby thread's side (``Standby``).

    def standby_look(self, now: float) -> int:
        """Called by the standby thread every ``STANDBY_DELAY``: returns the socket to
        wait on when this reader needs the standby to read, ``NO_NEED`` when it does not
        (now), ``IDLE`` when it has had nothing outstanding for ``STANDBY_PARK`` seconds,
        or ``DROP`` when its connection is gone."""
        channel = self._channel
        if channel is None:
            return DROP
        if not self.pending:
            return IDLE if now - self._idle_since > STANDBY_PARK else NO_NEED
        self._idle_since = now
        claimed = self.claimed_by
        if claimed is not None and now < claimed.until:
            return NO_NEED  # the caller of a fan-out reads it in its turn
        seen = (self._reads, self._sends)
        if seen != self._seen or self._reading:
            self._seen = seen  # someone reads or is still sending: look again later
            return NO_NEED
        try:
            return channel.fileno()
        except (OSError, ValueError):
            return DROP

    def standby_read(self) -> None:
        """The standby thread reads what has come, unless a caller holds the reads or a
        fan-out claimed them since the standby's look (``Claim``)."""
        claimed = self.claimed_by
        if claimed is not None and time.monotonic() < claimed.until:
            return
        if self._take_reader(0):
            try:
                while self.pending and not self._nwait:
                    reads = self._reads
                    if not self._read_once(0) or self._reads == reads:
                        break
            finally:
                self._release_reader()
        self._seen = (self._reads, self._sends)  # our own reads do not count

    def standby_park(self) -> bool:
        """The standby is about to drop this idle reader (holding its own lock, which
        ``watch`` -> ``Standby.watch`` needs too): True if it may. Parked is set before
        ``pending`` is looked at again, and ``watch`` looks at parked after adding to
        ``pending``: so either the sender sees parked and watches anew, or this sees the
        new reply and stays."""
        self._parked = True
        if self.pending:
            self._parked = False
            return False
        return True


class Claim:
    """A fan-out's claim on the readers of the replies it will wait for in turn
    (``call_multi`` reads each connection when its turn comes): the standby thread
    leaves a claimed reader alone while the fan-out makes progress, that is until
    ``CLAIM_HOLD`` seconds pass without a reply collected (``progress``); then, a fan-out
    held up by one slow server, the standby reads the others' other replies (a
    done-callback's) again. ``take(fut)`` claims ``fut``'s reader, ``drop(fut)`` gives
    it back once its reply is in.

    Reading beside the caller only fights it for the interpreter: with 1,000 servers
    the standby found the replies further down the list unread after STANDBY_DELAY and
    read them too, a selector of 1,000 sockets a pass, and took half of the master's
    CPU per call. A reader holds one claim, a plain reference: racing fan-outs on one
    client at worst let the standby look sooner."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = time.monotonic() + CLAIM_HOLD

    def progress(self) -> None:
        self.until = time.monotonic() + CLAIM_HOLD

    def take(self, fut: Any) -> None:
        reader = getattr(fut, "reader", None)  # (a Client subclass may return its own)
        if isinstance(reader, InlineReader):
            reader.claimed_by = self

    @staticmethod
    def drop(fut: Any) -> None:
        reader = getattr(fut, "reader", None)
        if isinstance(reader, InlineReader):
            reader.claimed_by = None


NO_NEED = -1  # standby_look's answers other than a socket
IDLE = -2
DROP = -3


class Standby:
    """The one standby thread of the process, reading for every plain Client's
    non-blocking replies that nobody reads (see the module doc).

    One thread for all clients rather than one each: a master with 500 clients had 500
    threads waking 50 times a second. It is started on the first ``watch`` and sleeps
    while it watches nobody; a forked child starts its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers: Dict[int, InlineReader] = {}  # by id(): each once, in order
        self._thread: Optional[threading.Thread] = None

    def watch(self, reader: InlineReader) -> None:
        with self._lock:
            self._readers[id(reader)] = reader
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="easycluster-standby-reader"
                )
                self._thread.start()
            elif len(self._readers) == 1:
                self._cond.notify()

    def forked(self) -> None:
        """In a forked child: the parent's thread and readers are not ours."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._readers = {}
        self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self._pass()
            except Exception:  # (a bug of ours: the one thread that reads for every
                # client must not end with it; the pass is tried again after a delay)
                report_error("easycluster's standby reader")
                time.sleep(STANDBY_DELAY)

    def _pass(self) -> None:
        """One look at the watched readers: read for the needy ones, else sleep."""
        with self._lock:
            while not self._readers:
                self._cond.wait()
            readers = list(self._readers.values())
        now = time.monotonic()
        needy: List[Tuple[InlineReader, int]] = []
        leaving: List[Tuple[InlineReader, int]] = []
        for reader in readers:
            claimed = reader.claimed_by
            if claimed is not None and now < claimed.until:
                # A fan-out reads this one in its turn (``standby_look``'s first
                # answer, without the call: with 1,000 servers in one ``call_multi``
                # every watched reader is claimed, pass after pass). Its idle clock
                # still moves: it has replies outstanding.
                reader._idle_since = now
                continue
            fd = reader.standby_look(now)
            if fd >= 0:
                needy.append((reader, fd))
            elif fd != NO_NEED:
                leaving.append((reader, fd))
        if leaving:
            with self._lock:
                for reader, why in leaving:
                    if why == DROP or reader.standby_park():
                        self._readers.pop(id(reader), None)
        if needy:
            self._read_ready(needy)
        else:
            time.sleep(STANDBY_DELAY)

    @staticmethod
    def _read_ready(needy: List[Tuple[InlineReader, int]]) -> None:
        """Wait up to ``STANDBY_DELAY`` for any needy socket, and read the ready ones."""
        ready = []
        try:
            with selectors.DefaultSelector() as sel:
                for reader, fd in needy:
                    sel.register(fd, selectors.EVENT_READ, reader)
                ready = [key.data for key, _ in sel.select(STANDBY_DELAY)]
        except (OSError, ValueError):  # a socket closed under us: read each to find out
            ready = [reader for reader, _ in needy]
        for reader in ready:
            try:
                reader.standby_read()
            except Exception:  # (what a read raised on this thread has nobody to go to)
                report_error("the standby thread's read of a client's replies")


STANDBY = Standby()  # process-wide, like the interpreter's own threads (see Standby)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=STANDBY.forked)


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

    _thread: Optional[threading.Thread] = None

    def start(self, channel: Channel) -> None:
        self._thread = threading.Thread(
            target=self._run,
            args=(channel,),
            daemon=True,
            name=f"easycluster-reader {self._name()}",
        )
        self._thread.start()

    def stop(self) -> None:
        """Wait (briefly) for the reader thread to end: the channel was shut down, so its
        read fails at once. Not from the reader thread itself (it is ending anyway)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WAIT)

    def forget(self, rid: int) -> None:
        self.pending.pop(rid, None)

    def wait_for(self, fut: Any, timeout: Optional[float]) -> None:
        # (a Response is waited for: its module loaded concurrent.futures already)
        from concurrent.futures import Future, TimeoutError

        try:  # Future's own wait (the reader thread completes it)
            Future.exception(fut, timeout)
        except TimeoutError:
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
                    try:
                        self._handle(got)
                    except ConnectionLost:
                        raise
                    except Exception:  # (nobody to raise it to: reading goes on)
                        report_error(f"the reader thread of {self._name()}")
                elif limit and now - last > limit:
                    raise ConnectionLost(
                        f"no sign of life from {self._name()} for {limit:g} s (keep-alive)"
                    )
                else:
                    channel.post(frames.FT_PING, b"", flush=True)
            except ConnectionLost as e:
                self._lost(channel, e)
                return
