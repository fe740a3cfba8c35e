"""``Worker`` (one ``shell()`` call) and ``Timer``: what a Task's handlers are given.

They hold their settings and counters; the engine drives them and the Task answers the
getters. (Kept apart from ``task.py`` so that ``events.py`` and ``engine.py`` can name
these types without importing the Task.)
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Protocol

from .backends import Backend
from .feed import StdinFeed
from .results import Results, SlotResult, message


class Owner(Protocol):
    """What a worker or timer needs of its Task."""

    results: Results

    def abort(self, kill: bool = False) -> None: ...
    def info(self, key: str, default: Any = None) -> Any: ...
    def set_info(self, key: str, value: Any) -> None: ...
    def feed_changed(self, worker: Worker) -> None: ...
    def arm_timer(self, timer: Timer, delay: float) -> None: ...
    def node_buffer(self, node: str) -> bytes: ...
    def node_error(self, node: str) -> bytes: ...
    def node_retcode(self, node: str) -> Optional[int]: ...
    def node_status(self, node: str) -> str: ...


class Sink(Protocol):
    """Where a worker's stdout goes instead of the result buffers and ``ev_read`` (the
    raw bytes of ``Task.rcopy``). The engine calls, on the Task's thread: ``write`` with
    each piece of a slot's stdout as it comes; then, once per started slot, exactly one
    of ``commit`` (the command ended with its own return code 0 and its output was read
    to the end; before ``ev_hup``) or ``discard`` (anything else: another return code,
    unreachable, timed out, aborted, the run interrupted). ``commit`` returns the return
    code to report: 0, or non-zero with the reason appended to ``slot.stderr``. None of
    them may raise."""

    def write(self, slot: SlotResult, data: bytes) -> None: ...
    def commit(self, slot: SlotResult) -> int: ...
    def discard(self, slot: SlotResult) -> None: ...


def overrides(handler: object, event: str) -> bool:
    """True if ``handler`` has ``event`` and it is not the do-nothing default of
    ``EventHandler`` (the engine skips line splitting when nobody listens to ev_read)."""
    method = getattr(type(handler), event, None)
    if method is None:
        return False
    return getattr(method, "__qualname__", "") != f"EventHandler.{event}"


class Timer:
    """A timer of a Task: ``ev_timer(timer)`` fires ``fire`` s after it is armed, then
    every ``interval`` s if ``interval`` > 0. A timer keeps ``resume()`` running unless
    ``autoclose``; ``invalidate()`` stops it."""

    def __init__(
        self, task: Owner, fire: float, handler: Any, interval: float, autoclose: bool
    ) -> None:
        self.task = task
        self.fire = fire
        self.handler = handler
        self.interval = interval
        self.autoclose = autoclose
        self.valid = True
        self.seq = 0  # the engine's number for the schedule in force (older ones are stale)

    def invalidate(self) -> None:
        self.valid = False

    def is_valid(self) -> bool:
        return self.valid

    def set_nextfire(self, fire: float, interval: float = -1) -> None:
        """Fire again ``fire`` s from now (then every ``interval`` s if > 0)."""
        self.valid = True
        self.interval = interval
        self.task.arm_timer(self, fire)  # (a new schedule: the old one is ignored)


class Worker:
    """One ``shell()`` (or ``copy()``, ``rcopy()``) call: a command over a list of
    slots, run by one backend.

    ``keys`` are its slot keys in order; ``handler`` gets its events. The getters read
    the Task's results for this worker's slots. ``sink``, when given, takes the slots'
    stdout instead of the buffers (no ``ev_read`` for stdout then).
    """

    def __init__(
        self,
        task: Owner,
        command: str,
        keys: List[str],
        handler: Any,
        timeout: Optional[float],
        backend: Backend,
        stderr: bool,
        feed: Optional[StdinFeed],
        sink: Optional[Sink] = None,
    ) -> None:
        self.task = task
        self.command = command
        self.keys = keys
        self.handler = handler
        self.timeout = timeout
        self.backend = backend
        self.stderr = stderr
        self.feed = feed
        self.sink = sink  # takes stdout instead of the buffers (None: the buffers)
        self.started = False  # ev_start was called
        self.closed = False  # ev_close was called
        self.open = len(keys)  # slots not in a final state
        self.timeouts = 0
        self.wants_lines = overrides(handler, "ev_read")
        self.wants_written = overrides(handler, "ev_written")

    def __repr__(self) -> str:
        return f"<Worker {self.backend.name} {self.command!r} on {len(self.keys)} slots>"

    def write(self, data: bytes) -> None:
        """Write ``data`` to every node's stdin (``shell(..., stdin=True)``)."""
        if self.feed is None:
            raise ValueError("this worker's stdin is closed: shell(..., stdin=True) to write")
        self.feed.append(data)
        self.task.feed_changed(self)

    def set_write_eof(self) -> None:
        """End every node's stdin once what was written has gone."""
        if self.feed is not None:
            self.feed.end()
            self.task.feed_changed(self)

    def release(self) -> None:
        """The run this worker was part of is over (or it will never run): close what
        it holds (its stdin feed's file)."""
        if self.feed is not None:
            self.feed.close()

    def abort(self) -> None:
        """Abort the whole Task this worker belongs to."""
        self.task.abort()

    def node_buffer(self, node: str) -> bytes:
        """The stdout of this worker's slot ``node`` (a key of ``keys``)."""
        return message(bytes(self.task.results.slot(node).stdout))

    def node_error(self, node: str) -> bytes:
        """The stderr of this worker's slot ``node``."""
        return message(bytes(self.task.results.slot(node).stderr))

    def node_retcode(self, node: str) -> Optional[int]:
        """The return code of this worker's slot ``node`` (None: timed out, aborted)."""
        return self.task.results.slot(node).rc

    def node_status(self, node: str) -> str:
        return self.task.node_status(node)

    def host_of(self, node: str) -> str:
        """The host name of a slot key (``n1#2`` -> ``n1``)."""
        return self.task.results.slot(node).node

    def iter_keys_timeout(self) -> Iterator[str]:
        return (k for k in self.keys if self.task.node_status(k) == "timeout")

    def num_timeout(self) -> int:
        return self.timeouts

    def did_timeout(self) -> bool:
        return self.timeouts > 0
