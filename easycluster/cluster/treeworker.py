"""``TreeWorker``: a Task's ``shell()`` run through gateways, seen by the Task's handlers
and results exactly as a flat one.

The Task's engine waits only on its own slots' descriptors and timers; a tree worker
has no descriptor per node (that is the point: the admin holds one connection per
gateway). So it drives itself from a Task timer (``TICK``), on the Task's thread: the
first tick emits ``ev_start`` and starts a ``treerun.TreeRun`` (its source threads
talk to the gateways); every tick takes what the run has (``TreeRun.take``, never
waiting) and applies it to the worker's slots with the same ``NodeState`` transitions
and the same events, in the same order per node, as the engine does:

    first news of a node      start    -> ev_pickup(worker, node)
    a line on stdout/stderr   read     -> kept in the node's buffer (buffer_max), then
                                          ev_read(worker, node, sname, line)
    ended: hup                exit(rc) -> ev_hup(worker, node, rc)
    ended: unreachable/lost   unreachable(255) -> ev_hup(worker, node, 255)
    ended: hostkey            hostkey(rc)      -> ev_hup(worker, node, rc)
    ended: failed             (never started here) spawn_error -> ev_pickup, ev_hup(127)
    ended: timeout            timeout  -> no ev_hup; ev_timeout before ev_close
    ended: aborted            abort    -> no ev_hup
    every node ended          ev_close(worker, timedout); the timer stops

A gateway lost mid-command, with no other gateway declared for its nodes, ends them as
``unreachable`` (rc 255, the reason in their error buffer), as flat ssh reports a
connection that died. The added latency is at most one tick after a batch arrives (the
gateways batch every ``treerun.DELAY`` anyway).

``finish()`` (the Task calls it when ``resume()`` ends, whatever the reason) kills the
run if it is still going, waits for its threads (bounded), aborts the slots not ended
(on the run's timeout, those picked up time out) and delivers ``ev_close`` once, as the
engine's ``end_all`` does for flat workers; ``abort()`` does the same for this worker
alone.

Differences from flat, by design: a node listed twice runs once (the Task dedupes
before making slots); a line's ``\\r\\n`` ending is kept as ``\\n`` in the buffers.
stdin (bytes, a file or a descriptor; not ``True``) is read here and streamed to every
gateway, which pipes it to its nodes (``treestdin.py``). A copy (``treecopy.py``) is
such a run whose stdin is the source, spooled at every level (``treespool.py``); an
rcopy's worker has a sink (``PullSink``): the nodes' raw stdout goes there (no
``ev_read``), committed when the node ends with 0 (its rc then is the commit's),
discarded otherwise or when the node is rerouted (``RESET``).
"""

from __future__ import annotations

import shlex
import threading
from typing import Any, Dict, List, Optional

from .backends import Backend, Command
from .nodestate import PENDING, RUNNING_STATES
from .results import SlotResult
from .slotio import LINE_MAX
from .topology import Topology
from .treecall import TreeCaller, call_options
from .treegroom import RAW, RESET, STDOUT, Batch, expand, lines_of
from .treerun import KILL_GRACE, SILENCE, TreeRun, options
from .treespool import SpoolStream
from .treestdin import read_into, start_thread
from .worker import Sink, Timer, Worker

TICK = 0.02  # s between two looks at what the gateways sent (bounds the added latency)
RC_NOT_STARTED = 127


class TreeBackend(Backend):
    """The backend a tree worker names (its slots are run by gateways, never here)."""

    name = "tree"

    def start(self, node: str, rank: int, command: str, stdin: bool, stderr: bool) -> Command:
        raise OSError("tree mode: the gateways run this command")


def task_options(task: Any, stderr: bool, timeout: Optional[float]) -> Dict[str, Any]:
    """The run's options (``treerun.options``) from a Task's infos: ``ssh_options``
    (and ``ssh_user`` as ``-l``), ``connect_timeout``, ``fanout``, ``gateway_python``,
    ``gateway_silence`` (seconds a silent gateway is waited for; default ``SILENCE``)."""
    ssh = shlex.split(task.info("ssh_options") or "")
    if task.info("ssh_user"):
        ssh += ["-l", str(task.info("ssh_user"))]
    return options(
        ssh,
        timeout or None,
        float(task.info("connect_timeout") or 10.0),
        int(task.info("fanout") or 64),
        task.info("gateway_python"),
        stderr,
        silence=float(task.info("gateway_silence") or SILENCE),
    )


def tree_call(task: Any, names: List[str], func: Any, args: Any, kwargs: Any) -> Dict[str, Any]:
    """``Task.call`` through the gateways of the Task's topology (``treecall.py``):
    ``{node: value, or the exception in its place}``, as flat. The caller (its
    sessions to the gateways and theirs to the nodes) is kept in ``task.tree_caller``
    for the next call, until the topology changes or ``Task.close_sessions``."""
    caller = task.tree_caller
    if caller is None or caller.topology is not task.topology:
        if caller is not None:
            caller.close()
        ssh = shlex.split(task.info("ssh_options") or "")
        opts = call_options(
            ssh,
            task.info("ssh_user"),
            gateway_python=task.info("gateway_python"),
            connect_timeout=float(task.info("connect_timeout") or 10.0),
            silence=float(task.info("gateway_silence") or SILENCE),
            fanout=int(task.info("fanout") or 64),
        )
        caller = task.tree_caller = TreeCaller(
            task.topology, opts, connect=task.info("rpc_connect")
        )
    return {node: value for node, (_, value) in caller.call(names, func, args, kwargs).items()}


class TreeWorker(Worker):
    """One ``shell()`` through the tree (module docstring); ``task`` is the Task."""

    def __init__(
        self,
        task: Any,
        command: str,
        keys: List[str],
        handler: Any,
        timeout: Optional[float],
        stderr: bool,
        topology: Topology,
        stdin: Any = None,
        sink: Optional[Sink] = None,
    ) -> None:
        super().__init__(task, command, keys, handler, timeout, TreeBackend(), stderr, None, sink)
        self.owner = task
        self.topology = topology
        self.opts = task_options(task, stderr, timeout)
        self.opts["stdin"] = stdin is not None and stdin is not False
        self.opts["spool"] = isinstance(stdin, SpoolStream)  # (a copy: treecopy.py)
        self.opts["raw"] = sink is not None  # (an rcopy: the nodes' stdout is data)
        self.stdin = stdin
        self.key_of: Dict[str, str] = {task.slot(k).node: k for k in keys}
        self.run: Optional[TreeRun] = None
        self.timer: Optional[Timer] = None

    def arm(self) -> None:
        """Ask for the first tick (at once if the Task runs, else when it starts)."""
        self.timer = self.owner.timer(0, self, interval=TICK)

    # -- the tick --------------------------------------------------------------------

    def ev_timer(self, timer: Timer) -> None:
        if self.closed:
            timer.invalidate()
            return
        if self.run is None:
            self.started = True
            self.owner.emit(self, "ev_start", self)
            spool = self.stdin if isinstance(self.stdin, SpoolStream) else None
            self.run = TreeRun(
                self.command, list(self.key_of), self.topology, None, self.opts, stream=spool
            )
            self.run.start()
            self.start_stdin(self.run)
        self.apply(self.run.take())

    def start_stdin(self, run: TreeRun) -> None:
        """Give ``run`` the stdin of this shell(): bytes at once, a file or descriptor
        read to its end by a thread (every node gets all of it: ``treestdin.py``)."""
        stdin = self.stdin
        if stdin is None or stdin is False or run.stdin is None or stdin is run.stdin:
            return
        if isinstance(stdin, (bytes, bytearray, memoryview)):
            run.feed(bytes(stdin), eof=True)
            return
        fd = stdin if isinstance(stdin, int) else stdin.fileno()
        start_thread(read_into, run.stdin, fd, lambda: self.closed, name="easycluster-stdin")

    def apply(self, batch: Batch) -> None:
        """Apply one batch to the slots, emitting the events (module docstring)."""
        outputs, ends, _, done = batch
        results = self.owner.results
        limit = self.owner.buffer_max
        for text, sid, data in outputs:
            if sid in (RAW, RESET):
                self.apply_raw(text, sid, bytes(data))
                continue
            sname = "stdout" if sid == STDOUT else "stderr"
            lines = lines_of(bytes(data), LINE_MAX) if self.wants_lines else []
            for node in expand(text):
                key = self.key_of.get(node)
                if key is None:
                    continue
                slot = results.slot(key)
                if slot.state.final:
                    continue
                self.pickup(slot)
                slot.state.read()
                slot.keep(sname, bytes(data), limit, sname == "stderr" or not self.stderr)
                for line in lines:
                    if self.owner.aborting or self.aborted:
                        return
                    self.owner.emit(self, "ev_read", self, key, sname, line)
        for text, status, rc in ends:
            for node in expand(text):
                key = self.key_of.get(node)
                if key is not None:
                    self.end(results.slot(key), status, rc)
        if done:
            for key in self.keys:  # (none left unless the run was killed)
                slot = results.slot(key)
                if not slot.state.final:
                    self.end(slot, "aborted", None)

    def apply_raw(self, text: str, sid: int, data: bytes) -> None:
        """An rcopy's data for the nodes ``text`` to the sink, or (``RESET``) what came
        for them dropped: they run again through another gateway."""
        if self.sink is None:
            return
        for node in expand(text):
            key = self.key_of.get(node)
            if key is None or self.owner.results.slot(key).state.final:
                continue
            slot = self.owner.results.slot(key)
            if sid == RESET:
                self.sink.discard(slot)
                continue
            self.pickup(slot)
            slot.state.read()
            self.sink.write(slot, data)

    def pickup(self, slot: SlotResult) -> None:
        if slot.state.state == PENDING:
            slot.state.start()
            self.owner.emit(self, "ev_pickup", self, slot.key)

    def end(self, slot: SlotResult, status: str, rc: Optional[int]) -> None:
        """``slot`` ended with ``status`` (as a gateway's Task saw it)."""
        if slot.state.final:
            return
        state = slot.state
        if self.sink is not None:  # (an rcopy: what came is kept only after a 0)
            if status == "hup" and rc == 0:
                rc = self.sink.commit(slot)
            else:
                self.sink.discard(slot)
        if status == "aborted":
            state.abort()
        elif status == "failed" and state.state == PENDING:
            state.spawn_error()
            self.owner.emit(self, "ev_pickup", self, slot.key)
            self.owner.emit(self, "ev_hup", self, slot.key, state.rc)
        else:
            self.pickup(slot)
            if status == "timeout":
                state.timeout()
                self.timeouts += 1
            else:
                code = rc if rc is not None else RC_NOT_STARTED
                if status in ("unreachable", "lost"):
                    state.unreachable(code)
                elif status == "hostkey":
                    state.hostkey(code)
                else:  # hup (or failed after some output: its own code)
                    state.exit(code)
                self.owner.emit(self, "ev_hup", self, slot.key, code)
        self.open -= 1
        if self.open == 0:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.invalidate()
        if self.timeouts:
            self.owner.emit(self, "ev_timeout", self)
        self.owner.emit(self, "ev_close", self, self.timeouts > 0)

    # -- the end of the Task's run, or of this worker --------------------------------

    def abort(self) -> None:
        """``Worker.abort`` for a tree worker: its run is killed, its nodes not ended are
        ``aborted``, ``ev_close`` is delivered (``finish``); the Task's other workers go
        on. Waits for the run's threads (bounded, as ``finish``)."""
        owner = self.owner
        if owner.running() and threading.current_thread() is not owner.thread:
            raise RuntimeError("Worker.abort(): call it from a handler (the Task's thread)")
        self.aborted = True
        self.finish()

    def finish(self, timed_out: bool = False) -> None:
        """The Task's run is over (module docstring): nothing of it is left running.
        ``timed_out``: the run's own timeout ended it; the nodes already picked up count
        as timed out (``ev_timeout`` before ``ev_close``), as the engine counts flat ones."""
        if self.timer is not None:
            self.timer.invalidate()
        if self.run is not None:
            if not self.closed:
                self.run.kill()
            self.run.wait(KILL_GRACE + 5)  # (bounded: a source stops within KILL_GRACE)
        if isinstance(self.stdin, SpoolStream):
            self.stdin.close()  # (a copy's source: this worker owns it)
        for key in self.keys:
            slot = self.owner.slot(key)  # (aborted before its run: a slot still upcoming)
            if not slot.state.final:
                if timed_out and slot.state.state in RUNNING_STATES:
                    slot.state.timeout()
                    self.timeouts += 1
                else:
                    slot.state.abort()
                self.open -= 1
                if self.sink is not None:
                    self.sink.discard(slot)
        if self.started and not self.closed:
            self.closed = True
            if self.timeouts:
                self.owner.emit(self, "ev_timeout", self)
            self.owner.emit(self, "ev_close", self, self.timeouts > 0)
