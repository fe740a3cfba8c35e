"""``Outbox``: the pure state of a ``Channel``'s outbox (what waits to be sent, who sends it).

The ``Channel`` keeps the socket, the two locks and the writer thread; it calls the
``Outbox`` with its ``_lock`` held, does what the answer says, and the ``Outbox`` never
blocks, sleeps, writes or looks at a clock (the time of a post is passed in). Every
transition is drawn in the class docstring and tested in ``tests/transport/test_outbox.py``
without sockets or threads.
"""

from __future__ import annotations

from ..errors import ConnectionLost, FrameTooLarge
from ..protocol.frames import BATCH_ITEM_OVERHEAD

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Sequence, Tuple

    Item = Tuple[int, bytes]  # frame type, body

POST_MAX = 1 << 15  # bodies up to this size may be batched (bigger ones are frames of their own)
BURST_GAP = 50e-6  # posts closer together than this are batched
BATCH_MAX = 512  # bodies in one batch frame
BATCH_BYTES = 1 << 18  # bytes in one batch frame (or the peer's limit, if lower)

# What the channel does next (the answers drawn in the tables). Plain ints: they are
# compared on every message.
ALONE = 0  # write this body alone now if the write lock is free; else call post_behind()
WRITE = 1  # write the outbox now, unless another thread writes (it looks again after)
NOTHING = 2  # nothing to do now
START = 3  # start the writer thread
NOTIFY = 4  # wake the writer thread (it sleeps on the channel's condition)
WAIT = 5  # (writer thread) sleep on the condition until notified
EXIT = 6  # (writer thread) end: the outbox is closed

# The writer thread's states.
NO_WRITER = 0
WRITER_BUSY = 1  # started, or woken: it looks at the outbox before it sleeps again
WRITER_IDLE = 2  # asleep on the condition


_NO_ITEMS: Tuple[Sequence[Item], int] = ((), 0)


class Outbox:
    """Small frame bodies waiting to leave together, and the decision of who sends them.

    The outbox is in one of four states: EMPTY; QUEUED (bodies below both limits:
    ``BATCH_MAX`` bodies and ``cap`` bytes, the batch size); FULL (bodies at or above a
    limit: the next poster writes them); CLOSED (the connection is gone: ``reason``).
    The events, called with the channel's ``_lock`` held (``flush`` only reads and
    needs no lock; the method ``lone``, ``post``'s answer for a body the channel sends
    by itself when the outbox is EMPTY, runs under the write lock): ``post`` a body
    (``flush``: it must leave now; ``lone``: the previous post was at least
    ``BURST_GAP`` ago; ``burst``: it was not), ``post_behind`` (the body ``post``
    answered ALONE for found the write lock taken), ``hold`` (the caller flushes
    soon), ``later`` (never written by the caller: it owns the reads), ``flush``,
    ``flush_later``, ``take`` (by the holder of the write lock, which then writes what
    it took) and ``close``. "fills" means the event brings the outbox to a limit; "too
    large" is a body above the peer's limit ``max_body``. A cell gives the next state
    (when it changes) and the answer::

                            EMPTY          QUEUED         FULL           CLOSED
        post flush          ALONE          WRITE          WRITE          lost
        post lone           ALONE          WRITE          WRITE          lost
        post burst          QUEUED wake    wake           WRITE          lost
        post burst fills    FULL WRITE     FULL WRITE     WRITE          lost
        post too large      too large      too large      too large      lost
        post behind         QUEUED WRITE   WRITE          WRITE          lost
        hold                QUEUED -       -              WRITE          lost
        hold fills          FULL WRITE     FULL WRITE     WRITE          lost
        hold too large      too large      too large      too large      lost
        later               QUEUED wake    wake           wake           lost
        later too large     too large      too large      too large      lost
        flush               -              WRITE          WRITE          -
        flush later         -              wake           wake           -
        take                none           EMPTY bodies   EMPTY bodies   lost
        close               CLOSED True    CLOSED True    CLOSED True    False

    Answers: ALONE, WRITE (module constants, above); ``-`` is NOTHING; ``wake`` is the
    answer of the writer table below (START, NOTIFY or NOTHING); ``lost`` raises
    ConnectionLost(reason) and ``too large`` FrameTooLarge, with nothing queued; ``take``
    returns ``(bodies, bytes)`` (``none``: nothing) for ``batches()`` to cut into frames;
    ``close`` returns True the first time (the channel then wakes every waiter) and
    keeps the first reason.

    So a body that must leave now, with nothing queued, goes straight out (a blocking
    call); bursts gather and leave together, sent by the writer thread unless a limit is
    reached or a flush comes first; a writer that finds the write lock taken leaves its
    bodies to the holder, who looks at the outbox again before letting go.

    The writer thread, started on the first ``wake``, sends bursts nobody flushes.
    ``writer_next`` is its event: it asks what to do, with ``_lock`` held, whenever it
    has nothing to write or was woken::

                              NO_WRITER           WRITER_BUSY         WRITER_IDLE
        wake                  WRITER_BUSY START   -                   WRITER_BUSY NOTIFY
        writer_next, empty    illegal             WRITER_IDLE WAIT    WAIT
        writer_next, bodies   illegal             WRITE               WRITER_BUSY WRITE
        writer_next, closed   illegal             EXIT                WRITER_BUSY EXIT

    (WRITER_IDLE column: a wake-up without ``wake``, spurious or from ``close``.)
    ``illegal`` raises RuntimeError: the channel asked for a thread it never started. A
    thread that EXITs is not started again: a closed outbox takes no bodies, so nothing
    wakes it.
    """

    __slots__ = ("items", "nbytes", "max_body", "cap", "last_post", "writer", "closed", "reason")

    def __init__(self, max_body: int):
        self.items: List[Item] = []
        self.nbytes = 0  # the bodies' size in a batch frame (each with its item header)
        self.max_body = max_body  # the peer's limit on one frame
        self.cap = min(BATCH_BYTES, max_body)
        self.last_post = 0.0  # when ``post`` last ran (the caller's clock)
        self.writer = NO_WRITER
        self.closed = False
        self.reason = ""

    @property
    def state(self) -> str:
        """EMPTY, QUEUED, FULL or CLOSED (for tests and messages; not on the hot path)."""
        if self.closed:
            return "CLOSED"
        if not self.items:
            return "EMPTY"
        return "FULL" if self._full() else "QUEUED"

    def post(self, ftype: int, body: bytes, flush: bool, now: float) -> int:
        """A body to send now (``flush``) or soon; ``now`` on the caller's monotonic clock.

        Returns ALONE, WRITE, START, NOTIFY or NOTHING (table above). Raises
        ConnectionLost once closed and FrameTooLarge above the peer's limit.
        """
        if self.closed:
            raise self._lost()
        burst = now - self.last_post < BURST_GAP
        self.last_post = now
        if len(body) > self.max_body:
            raise _too_large(len(body), self.max_body)
        items = self.items
        if (flush or not burst) and not items:
            return ALONE  # (waking the writer costs more than a send: only bursts wait)
        items.append((ftype, body))
        self.nbytes += len(body) + BATCH_ITEM_OVERHEAD
        if flush or not burst or len(items) >= BATCH_MAX or self.nbytes >= self.cap:
            return WRITE
        return self._wake()

    def lone(self, now: float) -> bool:
        """Whether a body posted ``now`` is lone (``post``'s word: the previous post was
        at least ``BURST_GAP`` ago), noting the post. For the channel's shortcut on an
        EMPTY outbox, taken with the write lock instead of ``_lock``: a post racing it
        through ``post`` at worst sees a burst one body early or late."""
        lone = now - self.last_post >= BURST_GAP
        self.last_post = now
        return lone

    def post_behind(self, ftype: int, body: bytes) -> int:
        """The body ``post`` answered ALONE for found another thread writing: it waits
        here for that thread (which looks again before letting go). Returns WRITE."""
        self._queue(ftype, body)
        return WRITE

    def hold(self, ftype: int, body: bytes) -> int:
        """A body whose sender will flush soon (a server running a batch): it waits,
        unless the outbox is full. Returns WRITE or NOTHING; raises as ``post``."""
        if self.closed:
            raise self._lost()
        if len(body) > self.max_body:
            raise _too_large(len(body), self.max_body)
        items = self.items
        items.append((ftype, body))
        self.nbytes += len(body) + BATCH_ITEM_OVERHEAD
        if len(items) >= BATCH_MAX or self.nbytes >= self.cap:
            return WRITE
        return NOTHING

    def later(self, ftype: int, body: bytes) -> int:
        """A body for the writer thread only (the caller owns the reads and must not
        block on the socket). Returns START, NOTIFY or NOTHING; raises as ``post``."""
        self._queue(ftype, body)
        return self._wake()

    def flush(self) -> int:
        """Everything queued must leave now: WRITE, or NOTHING (empty or closed).

        Only reads: the channel calls it without its lock, as a cheap first look (a
        writer looks again with the lock held).
        """
        return WRITE if self.items and not self.closed else NOTHING

    def flush_later(self) -> int:
        """Everything queued must leave now, sent by the writer thread: START, NOTIFY or
        NOTHING."""
        if self.items and not self.closed:
            return self._wake()
        return NOTHING

    def take(self) -> Tuple[Sequence[Item], int]:
        """Empty the outbox for the holder of the write lock, who writes what it gets:
        ``(bodies, their size)``. Raises ConnectionLost once closed."""
        if self.closed:
            raise self._lost()
        items = self.items
        if not items:
            return _NO_ITEMS
        taken = items, self.nbytes
        self.items, self.nbytes = [], 0
        return taken

    def batches(self, items: Sequence[Item], nbytes: int) -> Sequence[Sequence[Item]]:
        """Cut what ``take`` returned into batches within ``BATCH_MAX`` bodies and ``cap``
        bytes, in order (a body alone above ``cap`` is a batch of one). Pure: the channel
        calls it after letting go of its lock."""
        cap = self.cap
        if nbytes <= cap and len(items) <= BATCH_MAX:
            return (items,)
        out = []
        start = size = 0
        for i, (_ftype, body) in enumerate(items):
            n = len(body) + BATCH_ITEM_OVERHEAD
            if i > start and (size + n > cap or i - start >= BATCH_MAX):
                out.append(items[start:i])
                start, size = i, 0
            size += n
        out.append(items[start:])
        return out

    def writer_next(self) -> int:
        """The writer thread asks what to do: WRITE (the outbox), WAIT (until notified)
        or EXIT (closed). Raises RuntimeError if no writer thread was started."""
        if self.writer == NO_WRITER:
            raise RuntimeError("outbox: writer_next called, but no writer thread was started")
        if self.closed:
            self.writer = WRITER_BUSY
            return EXIT
        if self.items:
            self.writer = WRITER_BUSY
            return WRITE
        self.writer = WRITER_IDLE
        return WAIT

    def close(self, reason: str) -> bool:
        """The connection is gone (closed, or broken by a failed write): every later
        body is refused with ConnectionLost(reason). True the first time only (the caller
        then wakes its waiters); the first reason is kept."""
        if self.closed:
            return False
        self.closed, self.reason = True, reason
        return True

    def _full(self) -> bool:
        return len(self.items) >= BATCH_MAX or self.nbytes >= self.cap

    def _queue(self, ftype: int, body: bytes) -> None:
        if self.closed:
            raise self._lost()
        if len(body) > self.max_body:
            raise _too_large(len(body), self.max_body)
        self.items.append((ftype, body))
        self.nbytes += len(body) + BATCH_ITEM_OVERHEAD

    def _wake(self) -> int:
        """The writer thread must see the outbox (the ``wake`` row of the writer table)."""
        writer = self.writer
        if writer == WRITER_BUSY:
            return NOTHING  # it looks at the outbox before it sleeps
        self.writer = WRITER_BUSY
        return START if writer == NO_WRITER else NOTIFY

    def _lost(self) -> ConnectionLost:
        return ConnectionLost(self.reason or "connection closed")


def _too_large(size: int, limit: int) -> FrameTooLarge:
    return FrameTooLarge(f"message of {size} bytes exceeds the peer's limit of {limit} bytes")
