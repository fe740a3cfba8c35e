"""``Worker`` (one ``shell()`` call) and ``Timer``: what a Task's handlers are given.

They hold their settings and counters; the engine drives them and the Task answers the
getters. (Kept apart from ``task.py`` so that ``events.py`` and ``engine.py`` can name
these types without importing the Task.)
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional, Protocol, Tuple

from ..nodeset import NodeSet
from .backends import Backend
from .feed import StdinFeed
from .results import Message, Results, SlotResult, message


class Owner(Protocol):
    """What a worker or timer needs of its Task."""

    results: Results

    def abort(self, kill: bool = False) -> None: ...
    def abort_worker(self, worker: Worker) -> None: ...
    def info(self, key: str, default: Any = None) -> Any: ...
    def set_info(self, key: str, value: Any) -> None: ...
    def feed_changed(self, worker: Worker) -> None: ...
    def arm_timer(self, timer: Timer, delay: float) -> None: ...
    def node_buffer(self, node: str) -> bytes: ...
    def node_error(self, node: str) -> bytes: ...
    def node_retcode(self, node: str) -> Optional[int]: ...
    def node_status(self, node: str) -> str: ...
    def slot(self, key: str) -> SlotResult: ...
    def scheduled(self) -> Results: ...


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
        self.fire_delay = fire  # (ClusterShell's name)
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
    the Task's results for this worker's slots (ClusterShell's ``DistantWorker``
    getters; a key is a slot key, ``n1`` or ``n1#2``). ``sink``, when given, takes the
    slots' stdout instead of the buffers (no ``ev_read`` for stdout then).
    ``autoclose``: the worker does not keep ``resume()`` running (``Engine.run``).
    ``open_stdin``: stdin is open for ``write`` until the first node starts (the
    default of ``shell()``, see ``write``).

    ``current_node``, ``current_msg``, ``current_errmsg``, ``current_rc`` and
    ``current_sname`` are ClusterShell's older handler style: set by ``Task.emit``
    just before each event reaches the handler (the values are the event's arguments).
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
        autoclose: bool = False,
        open_stdin: bool = False,
    ) -> None:
        self.task = task
        # the results this worker's slots are in (its run's, before it starts too: a
        # worker of the last run keeps reading that run's once the next one is scheduled)
        self.results = task.scheduled()
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
        self.autoclose = autoclose
        self.open_stdin = open_stdin and feed is None  # (write() may still make a feed)
        self.aborted = False  # abort() was called: only ev_close is delivered from now on
        self.wants_lines = overrides(handler, "ev_read")
        self.wants_written = overrides(handler, "ev_written")
        self.current_node: Optional[str] = None
        self.current_msg: Optional[bytes] = None
        self.current_errmsg: Optional[bytes] = None
        self.current_rc: Optional[int] = None
        self.current_sname: Optional[str] = None

    def __repr__(self) -> str:
        return f"<Worker {self.backend.name} {self.command!r} on {len(self.keys)} slots>"

    @property
    def nodes(self) -> NodeSet:
        """The nodes of this worker's slots (ClusterShell's ``worker.nodes``)."""
        return NodeSet.fromlist(dict.fromkeys(self.results.slot(k).node for k in self.keys))

    @property
    def eh(self) -> Any:
        """ClusterShell's name of the handler."""
        return self.handler

    def write(self, data: bytes) -> None:
        """Write ``data`` to every node's stdin.

        With ``shell(..., stdin=True)``, at any time until ``set_write_eof``. With the
        default ``stdin`` (None), as in ClusterShell, where stdin is open by default,
        until the worker's first node starts (before ``resume()``, or in ``ev_start``):
        the nodes then get a pipe, and wait for ``set_write_eof`` as ClusterShell's do.
        A worker nothing was written to by then gives its nodes /dev/null (a command
        that reads stdin ends instead of waiting forever); writing later raises
        ValueError, as it does with ``stdin=False``."""
        if self.feed is None and self.open_stdin:  # (until its first node starts)
            self.feed = StdinFeed()
        if self.feed is None:
            raise ValueError(
                "this worker's stdin is closed: shell(..., stdin=True) to write once "
                "its nodes have started"
            )
        self.feed.append(data)
        self.task.feed_changed(self)

    def set_write_eof(self) -> None:
        """End every node's stdin once what was written has gone (nothing written: the
        nodes get /dev/null)."""
        if self.feed is not None:
            self.feed.end()
            self.task.feed_changed(self)

    def release(self) -> None:
        """The run this worker was part of is over (or it will never run): close what
        it holds (its stdin feed's file)."""
        if self.feed is not None:
            self.feed.close()

    def abort(self) -> None:
        """Abort this worker alone, as ClusterShell's: its running nodes are killed
        (status ``aborted``, no ``ev_hup``), its waiting ones never start, and its
        handler gets ``ev_close`` (if it had started) before this returns; no other
        event of it is delivered after. The other workers of the run go on. Call it
        from a handler (the Task's thread), or before ``resume()`` to drop the worker;
        after its run it does nothing. RuntimeError from another thread while the run
        is on."""
        self.task.abort_worker(self)

    def node_buffer(self, node: str) -> bytes:
        """The stdout of this worker's slot ``node`` (a key of ``keys``)."""
        return message(bytes(self.results.slot(node).stdout))

    def node_error(self, node: str) -> bytes:
        """The stderr of this worker's slot ``node``."""
        return message(bytes(self.results.slot(node).stderr))

    node_error_buffer = node_error

    def node_retcode(self, node: str) -> Optional[int]:
        """The return code of this worker's slot ``node`` (None: timed out, aborted)."""
        return self.results.slot(node).rc

    node_rc = node_retcode

    # -- ClusterShell's DistantWorker getters, over this worker's slots -----------------

    def matching(self, match_keys: Optional[Iterable[str]]) -> List[str]:
        """This worker's keys, those of ``match_keys`` only when given (a plain node
        name there matches every slot of that node: ``n1`` matches ``n1`` and ``n1#2``).
        A string is a TypeError, as ClusterShell's (a sequence of keys is meant)."""
        return self.results.matching(self.keys, match_keys)

    def iter_buffers(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[Message, NodeSet]]:
        """``(output, NodeSet of keys)`` per distinct non-empty stdout of this worker."""
        for buf, keys in self.results.gathered("stdout", self.matching(match_keys)):
            yield buf, NodeSet.fromlist(keys)

    def iter_errors(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[Message, NodeSet]]:
        """``(errors, NodeSet of keys)`` per distinct non-empty stderr of this worker."""
        for buf, keys in self.results.gathered("stderr", self.matching(match_keys)):
            yield buf, NodeSet.fromlist(keys)

    def iter_node_buffers(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[str, Message]]:
        """``(key, output)`` for each slot of this worker with some stdout."""
        return self.results.per_slot("stdout", self.matching(match_keys))

    def iter_node_errors(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[str, Message]]:
        """``(key, errors)`` for each slot of this worker with some stderr."""
        return self.results.per_slot("stderr", self.matching(match_keys))

    def iter_retcodes(
        self, match_keys: Optional[Iterable[str]] = None
    ) -> Iterator[Tuple[int, NodeSet]]:
        """``(rc, NodeSet of keys)`` per return code of this worker's slots."""
        for rc, keys in self.results.retcodes(self.matching(match_keys)):
            yield rc, NodeSet.fromlist(keys)

    def iter_node_retcodes(self) -> Iterator[Tuple[str, int]]:
        """``(key, rc)`` for each slot of this worker that has a return code."""
        slots = (self.results.slot(k) for k in self.keys)
        return ((s.key, s.rc) for s in slots if s.rc is not None)

    def flush_buffers(self) -> None:
        """Forget the stdout kept for this worker's slots."""
        self.results.flush("stdout", self.keys)

    def flush_errors(self) -> None:
        """Forget the stderr kept for this worker's slots."""
        self.results.flush("stderr", self.keys)

    # -- ClusterShell 1.x's last_* (the current_* attributes, as tuples) ----------------

    def last_node(self) -> Optional[str]:
        return self.current_node

    def last_read(self) -> Tuple[Optional[str], Optional[bytes]]:
        """``(node, line)`` of the last ``ev_read`` on stdout."""
        return self.current_node, self.current_msg

    def last_error(self) -> Tuple[Optional[str], Optional[bytes]]:
        """``(node, line)`` of the last ``ev_read`` on stderr."""
        return self.current_node, self.current_errmsg

    def last_retcode(self) -> Tuple[Optional[str], Optional[int]]:
        """``(node, rc)`` of the last ``ev_hup``."""
        return self.current_node, self.current_rc

    def node_status(self, node: str) -> str:
        """The state of slot ``node`` (``nodestate.py``), before its run too."""
        return self.results.slot(node).status

    def host_of(self, node: str) -> str:
        """The host name of a slot key (``n1#2`` -> ``n1``)."""
        return self.results.slot(node).node

    def iter_keys_timeout(self) -> Iterator[str]:
        return (k for k in self.keys if self.results.slot(k).status == "timeout")

    def num_timeout(self) -> int:
        return self.timeouts

    def did_timeout(self) -> bool:
        return self.timeouts > 0
