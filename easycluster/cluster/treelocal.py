"""The targets a tree-mode host reaches itself: ``ssh node command`` on each, run by the
cluster engine (fan-out window, command timeouts, unreachable/hostkey classification),
with every line and every end handed to a callback as it comes.

``run_local`` drives an ``Engine`` with ``LocalOwner``, the few things the engine and a
worker need of a Task (``engine.Hooks``, ``worker.Owner``), rather than a ``Task``:
tree mode runs inside the Task's own tree worker (``treeworker.py``, loaded by
``task.py``), so it must not import the Task back; and a gateway needs nothing else of
it. One engine run per call, on the calling thread, which alone owns its I/O.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

from .engine import Engine
from .events import EventHandler
from .feed import StdinFeed
from .results import Results, SlotResult, message
from .sshexec import SshBackend
from .treespool import SpoolFeed, SpoolStream
from .window import FanoutWindow
from .worker import Timer, Worker

KILL_CHECK = 0.1  # s between two looks at the stop flag (a run is stopped from its thread)

# line(node, sid, data), raw(node, data) and end(node, status, rc), on the running thread
LineSink = Callable[[str, int, bytes], None]
RawSink = Callable[[str, bytes], None]
EndSink = Callable[[str, str, Optional[int]], None]


class LocalOwner:
    """What the engine and a worker ask of their Task, and no more: results with no
    buffers kept (lines are forwarded as they come), events to the worker's handler,
    ``abort``. Node getters read the results (for the handler's ``node_status``)."""

    def __init__(self) -> None:
        self.results = Results()
        self.aborting = False
        self.buffer_max: Optional[int] = 0

    def emit(self, worker: Worker, event: str, *args: Any) -> None:
        method = getattr(worker.handler, event, None)
        if method is not None and (not self.aborting or event == "ev_close"):
            method(*args)

    def abort(self, kill: bool = False) -> None:
        self.aborting = True

    def scheduled(self) -> Results:
        return self.results

    def info(self, key: str, default: Any = None) -> Any:
        return default

    def set_info(self, key: str, value: Any) -> None:
        pass

    def feed_changed(self, worker: Worker) -> None:
        pass  # (stdin comes from a pipe the engine reads itself: never written to here)

    def arm_timer(self, timer: Timer, delay: float) -> None:
        raise RuntimeError("timers are armed by run_local only")

    def node_buffer(self, node: str) -> bytes:
        return message(bytes(self.results.slot(node).stdout))

    def node_error(self, node: str) -> bytes:
        return message(bytes(self.results.slot(node).stderr))

    def node_retcode(self, node: str) -> Optional[int]:
        return self.results.slot(node).rc

    def node_status(self, node: str) -> str:
        return self.results.slot(node).status

    def slot(self, key: str) -> SlotResult:
        return self.results.slot(key)

    def abort_worker(self, worker: Worker) -> None:
        self.abort()  # (a gateway's local run has this one worker)


class RawForward:
    """``worker.Sink`` of an rcopy on a tree host: each node's stdout goes to ``raw`` as
    it comes; nothing is committed here (the admin's ``PullSink`` does that when the
    node's end, rc 0, reaches it), so ``commit`` keeps the return code 0."""

    def __init__(self, raw: RawSink) -> None:
        self.raw = raw

    def write(self, slot: SlotResult, data: bytes) -> None:
        self.raw(slot.node, data)

    def commit(self, slot: SlotResult) -> int:
        return 0

    def discard(self, slot: SlotResult) -> None:
        pass  # (the node's end says it failed: the admin drops what came)


class _Forward(EventHandler):
    def __init__(self, line: LineSink, end: EndSink, stop: Callable[[], bool]) -> None:
        self.line = line
        self.end = end
        self.stop = stop

    def ev_read(self, worker: Worker, node: str, sname: str, msg: bytes) -> None:
        self.line(node, 1 if sname == "stdout" else 2, msg)

    def ev_hup(self, worker: Worker, node: str, rc: int) -> None:
        self.end(node, worker.node_status(node), rc)  # (a failed start's reason: ev_read)

    def ev_timer(self, timer: Timer) -> None:
        if self.stop():
            timer.task.abort()


def run_local(
    command: str,
    names: Sequence[str],
    opts: Any,
    line: LineSink,
    end: EndSink,
    stop: Callable[[], bool],
    stdin_fd: Optional[int] = None,
    spool: Optional[SpoolStream] = None,
    raw: Optional[RawSink] = None,
) -> None:
    """Run ``command`` on ``names`` (each once) over ssh with the run's options
    (``treerun.options``): ``line`` gets each line, ``end`` each node's end as the
    Task would report it (``hup``/``unreachable``/``hostkey``/``failed`` with the rc;
    ``timeout`` and ``aborted`` with None). Returns when every node ended, or soon
    after ``stop()`` turns true (the rest end as ``aborted``). No process is left.
    ``stdin_fd``: a descriptor whose bytes every node gets on its stdin, read to its end
    by the engine (None: no stdin; the caller closes it); ``spool``: the stream behind
    it is in that file (a copy's): the nodes' writes are read back from there. ``raw``:
    the nodes' stdout is data (an rcopy's), handed to ``raw`` as it comes, not lines."""
    owner = LocalOwner()
    keys: List[str] = [owner.results.new_slot(n, rank).key for rank, n in enumerate(names)]
    forward = _Forward(line, end, stop)
    backend = SshBackend(options=opts["ssh_options"], connect_timeout=opts["connect_timeout"])
    feed: Optional[StdinFeed] = None
    if stdin_fd is not None:
        feed = StdinFeed(source=stdin_fd) if spool is None else SpoolFeed(spool, stdin_fd)
    sink = None if raw is None else RawForward(raw)
    worker = Worker(
        owner,
        command,
        keys,
        forward,
        opts["timeout"] or None,
        backend,
        bool(opts["stderr"]),
        feed,
        sink,
    )
    engine = Engine(owner, owner.results, FanoutWindow(int(opts["fanout"])))
    engine.add_worker(worker)
    engine.add_timer(Timer(owner, KILL_CHECK, forward, KILL_CHECK, True), KILL_CHECK)
    engine.run(None)
    for key in keys:  # timed out (no ev_hup) or aborted
        slot = owner.results.slot(key)
        if slot.status in ("timeout", "aborted"):
            end(slot.node, slot.status, None)
