"""``ReaderHandoff``: the pure state of a server connection's reads (who reads, who runs).

``ServerConnection`` (``connection.py``) keeps the threads, the lock and the I/O; it
calls the ``ReaderHandoff`` with its lock held, does what the answer says, and the
``ReaderHandoff`` never blocks, sleeps or reads a clock (times are passed in). Every
transition is drawn in the class docstring and tested in ``tests/remote/test_handoff.py``
without processes, sockets or threads.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Deque, List, Optional

# The reads: who reads, and whether the main thread runs a batch.
READING = 0  # the main thread reads (or is about to); nothing runs
RUNNING = 1  # the main thread runs a batch; the standby watches it
TAKEN = 2  # a call ran long: the standby took over the reads; the batch still runs
RETURNING = 3  # the batch is done; the standby gives the reads back after its next read

STATE_NAMES = ("READING", "RUNNING", "TAKEN", "RETURNING")

# What the main thread does next (``main_next``).
READ = 10  # read, then ``begin`` a batch of what came
RUN_BACKLOG = 11  # ``begin`` a batch of the backlog (the standby read it)
WAIT = 12  # wait on the condition: the standby reads, and nothing waits to run
END = 13  # the connection ended: return ``ended``
DRAINED = 14  # (``main_done`` only) draining, and the last request is answered: exit

# What the standby thread does next (``standby_poll``).
WATCH = 20  # wait ``STANDBY_DELAY`` on the condition, then ``standby_check``
SLEEP = 21  # the connection is quiet: wait on the condition until notified
POLL = 22  # wait ``STANDBY_DELAY`` on the condition, then poll again
EXIT = 23  # the connection ended: the standby thread ends

# Who reads, for the thread that finishes a drained connection (``finish``).
MAIN = "main"
STANDBY = "standby"


class ReaderHandoff:
    """Who reads a server connection, when the standby takes the reads over, and when a
    draining connection is done.

    The main thread reads and runs thread 0's calls itself, in batches (all it read at
    once). While it runs a batch a standby thread watches the call count; if the same
    call runs for a whole ``STANDBY_DELAY``, the standby takes over the reads (so pings,
    other threads' requests and the end of the connection are seen at once), queues
    thread 0's requests in ``backlog`` and gives the reads back at its first read after
    the batch ends. Exactly one thread reads at any time. The states:

    - READING: the main thread reads (or is about to); nothing runs.
    - RUNNING: the main thread runs a batch; the standby watches it.
    - TAKEN: a call ran long; the standby reads while the batch still runs.
    - RETURNING: the batch is done; the standby gives the reads back after its next read
      (the main thread waits for that, or runs the backlog meanwhile).

    The events, all with the connection's lock held but ``call`` (see there):
    the main thread's ``main_next`` (what now?), ``begin`` (a batch of what it read,
    after any backlog; or of the backlog), ``call`` (each call of the batch, counted in
    ``calls``; the answer: may its small reply be held? A batch of one is not asked:
    ``begin`` counts its call) and ``main_done`` (the batch is answered: what now?); the
    standby's ``standby_poll`` (what now?), ``standby_check`` (after a WATCH: take over?)
    and ``standby_read`` (it read; give back?); and ``end`` (the connection ended).
    Conditions: "backlog" (requests wait in it), "ended" (``end`` was called), "quiet"
    (the standby has seen no call begin for ``idle_after`` seconds), "same call" (the
    call the standby watched is still the current one). A cell gives the next state
    (when it changes) and the answer::

                                  READING         RUNNING         TAKEN           RETURNING
        main_next                 READ            illegal         illegal         WAIT
        main_next, backlog        RUN_BACKLOG     illegal         illegal         RUN_BACKLOG
        main_next, ended          END             illegal         illegal         END
        begin(read)               RUNNING batch   illegal         illegal         illegal
        begin(read), backlog      RUNNING batch   illegal         illegal         illegal
        begin(backlog)            RUNNING batch   illegal         illegal         TAKEN batch
        call                      illegal         more            False           illegal
        main_done                 illegal         READING READ    RETURNING WAIT  illegal
        standby_poll              POLL            WATCH           illegal         illegal
        standby_poll, quiet       SLEEP           WATCH           illegal         illegal
        standby_poll, ended       EXIT            EXIT            illegal         illegal
        standby_check, same call  False           TAKEN True      illegal         illegal
        standby_check, next call  False           False           illegal         illegal
        standby_check, ended      False           False           illegal         illegal
        standby_read              illegal         illegal         False           READING True
        end                       True            True            True            True
        end, ended                False           False           False           False

    Answers: ``batch`` is the list to run (the backlog first, then what was read) and
    after ``begin`` the standby must be woken if it sleeps (``standby_idle``); ``more``
    is ``call``'s argument (hold the reply when more calls follow: the standby watches,
    so a long call gets held replies flushed), False once the standby reads (nobody
    would flush it); ``main_done`` answers what ``main_next`` would answer next (drawn
    without backlog or end), or DRAINED when ``answered(n)`` would answer True (below:
    the last request of a draining connection is answered); ``standby_check``
    answers True when the standby takes over (it then flushes the replies held behind
    the long call and reads); ``standby_read`` True when it gives the reads back (after
    queuing what it read); ``end`` True the first time (the first reason is kept).
    ``illegal`` raises RuntimeError: a thread acted out of turn. ``end`` does not stop
    the other events: a batch that was running finishes, and what a reader read is
    queued; only the questions (``main_next``, ``standby_poll``, ``standby_check``)
    answer differently.

    Draining (SIGUSR1: finish the calls received so far, then exit) counts requests from
    receipt to reply on every thread (``requests``). Thread 0's requests are counted in
    bulk where they are queued or run (``begin(read)``, ``standby_read``: dropped while
    draining), so the reading thread takes no lock per request; the others one by one.
    Its events: ``receive`` (count a request of another thread: True; False drops it),
    ``answered`` (``main_done`` and the server threads; True when a drained connection's
    last request is answered), ``drain`` (without the lock: it runs in a signal handler;
    True if nothing runs) and ``finish`` (the thread that ends the process; who reads, or
    None if another thread already finishes). With one request counted in OPEN and
    DRAINING (none can be counted in FINISHING)::

                                  OPEN            DRAINING        FINISHING
        receive                   True            False           False
        answered                  False           True            illegal
        drain                     DRAINING False  False           True
        finish                    illegal         FINISHING MAIN  None

    ``finish`` answers STANDBY instead when the standby reads (TAKEN, RETURNING).
    ``answered`` with no request counted raises RuntimeError, like the ``illegal`` cells.
    """

    __slots__ = (
        "state",
        "calls",
        "watched",
        "last_call",
        "standby_idle",
        "idle_after",
        "backlog",
        "ended",
        "requests",
        "draining",
        "finishing",
        "seen_calls",
    )

    def __init__(self, idle_after: float):
        self.state = READING
        self.calls = 0  # calls the main thread started (the standby compares, never writes)
        self.watched = -1  # ``calls`` when the standby began to watch
        # ``calls`` at the standby's last poll, and when it saw that count change (its
        # monotonic clock): the main thread reads no clock per request
        self.seen_calls = 0
        self.last_call = 0.0
        # The standby sleeps until notified: ``begin`` must wake it. True at first, as the
        # standby may go to sleep before the first batch.
        self.standby_idle = True
        self.idle_after = idle_after  # quiet this long, the standby sleeps
        self.backlog: Deque[Any] = collections.deque()  # thread 0's requests the standby read
        self.ended: Optional[str] = None
        self.requests = 0  # received and not yet answered, on any thread
        self.draining = False
        self.finishing = False  # drained: the last replies are on their way out

    @property
    def state_name(self) -> str:
        """The state's name, for tests and messages."""
        return STATE_NAMES[self.state]

    def main_next(self) -> int:
        """What the main thread does next, after ``main_done``: READ, RUN_BACKLOG, WAIT or
        END."""
        state = self.state
        if state in (RUNNING, TAKEN):
            raise self._illegal("main_next")
        if self.ended is not None:
            return END
        if self.backlog:
            return RUN_BACKLOG
        return READ if state == READING else WAIT

    def begin(self, read: Optional[List[Any]] = None) -> List[Any]:
        """The main thread begins a batch: what it just ``read`` (it read in READING,
        counted here) after any backlog, or (``read`` None) the backlog. Returns the batch
        to run; empty (and still READING) when draining dropped what was read and no
        backlog waits."""
        state = self.state
        backlog = self.backlog
        if read is None:
            if state == READING:
                self.state = RUNNING
            elif state == RETURNING:
                self.state = TAKEN
            else:
                raise self._illegal("begin(backlog)")
            batch = list(backlog)
            backlog.clear()
        else:
            if state != READING:
                raise self._illegal("begin(read)")
            if self.draining:  # (dropped: not run, not counted)
                if not backlog:
                    return []
                read = []
            self.requests += len(read)
            self.state = RUNNING
            if backlog:  # (rare: the standby gave back with requests still queued)
                backlog.extend(read)
                batch = list(backlog)
                backlog.clear()
            else:
                batch = read
        if len(batch) == 1:  # a lone call is run without ``call``: counted here
            self.calls += 1
        return batch

    def call(self, more: bool) -> bool:
        """The main thread starts a call of its batch (``more``: others follow it). True:
        hold its small reply for the end of the batch.

        Called without the lock: only the main thread counts, and a standby that takes
        over meanwhile flushes what was held (the caller flushes after the call if the
        state changed under it).
        """
        self.calls += 1
        state = self.state
        if state == RUNNING:
            return more
        if state == TAKEN:
            return False
        raise self._illegal("call")

    def main_done(self, n: int) -> int:
        """The main thread answered its batch of ``n`` requests: what it does next, as
        ``main_next`` answers (READ, RUN_BACKLOG, WAIT or END), or DRAINED (see
        ``answered``)."""
        state = self.state
        if state == RUNNING:
            self.state = state = READING
        elif state == TAKEN:
            self.state = state = RETURNING
        else:
            raise self._illegal("main_done")
        left = self.requests - n  # (``answered`` and ``main_next`` written out: once
        if left < 0:  # per batch, the main thread's usual way back to its read)
            self.answered(n)  # (raises)
        self.requests = left
        if self.draining and left == 0:
            return DRAINED
        if self.ended is not None:
            return END
        if self.backlog:
            return RUN_BACKLOG
        return READ if state == READING else WAIT

    def standby_poll(self, now: float) -> int:
        """What the standby does next (it is not reading): WATCH, SLEEP, POLL or EXIT.
        SLEEP sets ``standby_idle`` (cleared at the next poll)."""
        state = self.state
        if state in (TAKEN, RETURNING):
            raise self._illegal("standby_poll")
        self.standby_idle = False
        if self.ended is not None:
            return EXIT
        calls = self.calls
        if calls != self.seen_calls:  # a call began since the last poll
            self.seen_calls = calls
            self.last_call = now
        if state == RUNNING:
            self.watched = self.calls
            return WATCH
        if now - self.last_call > self.idle_after:
            # Sleep until a batch begins: ``begin`` wakes it only then, so a busy
            # connection pays no wake-up per call.
            self.standby_idle = True
            return SLEEP
        return POLL

    def standby_check(self) -> bool:
        """After a WATCH: True if the same call ran all along; the standby has taken over
        the reads (TAKEN)."""
        state = self.state
        if state in (TAKEN, RETURNING):
            raise self._illegal("standby_check")
        if state == RUNNING and self.calls == self.watched and self.ended is None:
            self.state = TAKEN
            return True
        return False

    def standby_read(self, got: List[Any]) -> bool:
        """The standby read thread 0's requests ``got`` (maybe none): counted and queued
        in the backlog (dropped while draining). True: the batch is done, so the reads go
        back to the main thread."""
        state = self.state
        if state != TAKEN and state != RETURNING:
            raise self._illegal("standby_read")
        if not self.draining:  # (dropped while draining: not run, not counted)
            self.requests += len(got)
            self.backlog.extend(got)
        if state == TAKEN:
            return False
        self.state = READING
        return True

    def end(self, reason: str) -> bool:
        """The connection ended (``reason``). True the first time (the caller wakes the
        waiters); later calls keep the first reason."""
        if self.ended is not None:
            return False
        self.ended = reason
        return True

    def receive(self) -> bool:
        """A request for a thread other than 0 arrived: True, counted until ``answered``;
        False while draining (the request is dropped, not run)."""
        if self.draining:
            return False
        self.requests += 1
        return True

    def answered(self, n: int = 1) -> bool:
        """``n`` requests were answered. True: draining and none left (end the process)."""
        left = self.requests - n
        if left < 0:
            raise RuntimeError(
                f"reader hand-off: {n} answered, but only {self.requests} requests were counted"
            )
        self.requests = left
        return self.draining and left == 0

    def drain(self) -> bool:
        """Drop requests from now on; True if none is running (end the process now).

        Takes no lock (a signal handler calls it, and the interrupted thread may hold
        it): a racy read only means the last request to finish ends the process instead.
        """
        self.draining = True
        return self.requests == 0

    def finish(self) -> Optional[str]:
        """A drained connection ends: who reads (MAIN or STANDBY: only it may read the
        input out), or None if another thread already finishes. From now on nothing may
        be sent after the last replies (pings go unanswered)."""
        if not self.draining:
            raise RuntimeError("reader hand-off: finish before drain")
        if self.finishing:
            return None
        self.finishing = True
        return MAIN if self.state == READING or self.state == RUNNING else STANDBY

    def _illegal(self, event: str) -> RuntimeError:
        return RuntimeError(
            f"reader hand-off: {event} is not allowed in state {STATE_NAMES[self.state]}"
        )
