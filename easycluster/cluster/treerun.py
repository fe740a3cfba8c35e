"""One tree-mode run of a shell command, rooted at this host: the admin node, or a
gateway doing its share for its parent. The same code runs at every level.

``TreeRun(command, targets, topology, root, opts, new_task)`` routes the targets
(``routing.Router``) and starts one *source* thread per part:

- the targets reached from here (children of ``root``, nodes the topology does not
  list): the cluster engine runs ``ssh node command`` on them (``treelocal.py``) and
  hands each line and each end to the run as they come;
- each first-hop gateway: bootstrapped over ssh with nothing installed
  (``open_gateway``), then asked to start its share (``gateway_start``, below) and
  read from (``gateway_read``) until it says it is done. Each read is a long poll that
  returns one groomed batch: at most one per ``opts["delay"]`` seconds (0.25) while
  output comes, an empty one every ``HEARTBEAT`` seconds when nothing does, and the
  last one at once. So a gateway's results stream up as they come, grouped.

Everything the sources deliver goes into one ``Groomer`` (``treegroom.py``) under the
run's lock; the consumer takes batches from it: ``next_batch`` (a gateway answering its
parent: waits, batches) or ``take`` (the admin's tree worker: whatever is there now).
That side of the run, its state and the sources' deliveries, is ``treestate.py``'s.

Faults, each reported by name (ClusterShell #207), never a hang (#471):

- a gateway that cannot be reached, or whose connection ends (it died), or that says
  nothing for ``opts["silence"]`` seconds (default ``SILENCE``; it hangs, or it was
  frozen with SIGSTOP): its targets that had not ended are rerouted through another
  gateway declared for them (``Router.fail``), or reached from here when they are
  children of this host; the command then runs on them from the start again. With no
  route left they end as ``unreachable`` (the gateway could not be reached) or
  ``lost`` (it died mid-command), rc 255, with the reason as a line of their stderr
  and in the batch's reasons;
- targets no live gateway leads to: ``unreachable`` at once, with the reason;
- ``kill()``: every source stops (local commands killed, gateways told to stop, then
  closed);
  targets not ended yet end as ``aborted``.

Copies (``treecopy.py``): a push is a command whose stdin is spooled to a file at every
level (``options(spool=True)``, ``treespool.py``); a pull sends the nodes' stdout up raw
(``options(raw=True)``: ``RAW`` entries, at most ``RAW_LIMIT`` bytes pending per host,
a ``RESET`` entry before a rerouted node's second try).

Per-target state is plain sets and dicts, under one lock; node sets are folded once per
batch, by the groomer (ClusterShell #560).

The gateway's entry points are at the end of this module (``gateway_start``,
``gateway_read``, ``gateway_feed``, ``gateway_kill``), called by name by the parent over
RPC. A gateway is our own server, bootstrapped over ssh with nothing installed: its
payload is a server's plus this module and what it imports (``GATEWAY_ROOTS``: client,
launch, the engine, nodeset), built once at the admin; a gateway runs from memory, so
the payload travels down with ``gateway_start`` when a share reaches below the next
level. A run's options (``options``) and timings are in ``treeopts.py``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Set

from ..client.client import Client
from ..errors import CallTimeout, ConnectionLost, RemoteException
from ..launch import payload
from ..launch.ssh import open_channel
from ..protocol.messages import CONTROL, SINGLE
from .topology import Topology
from .treegroom import RAW, RESET, Batch, expand, fold
from .treelocal import run_local
from .treeopts import DELAY, HEARTBEAT

# (re-exported: their home was this module; tree.py, treeworker.py, treecall.py, session.py)
from .treeopts import KILL_GRACE as KILL_GRACE
from .treeopts import SILENCE as SILENCE
from .treeopts import options as options
from .treespool import SpoolStream

# (re-exported: their home was this module; tree.py)
from .treestate import ABORTED as ABORTED
from .treestate import FAILED as FAILED
from .treestate import LOST as LOST
from .treestate import RC_LOST as RC_LOST
from .treestate import UNREACHABLE as UNREACHABLE
from .treestate import RunState
from .treestdin import pump, start_thread

# What a gateway's payload carries on top of a server's: this module and its imports
# (a gateway for Python calls carries treecall.py too: its CALL_ROOTS).
GATEWAY_ROOTS = ("easycluster.cluster.treerun",)
ENTRY = "easycluster.cluster.treerun."  # the gateway's entry points (called by name)


class TreeRun(RunState):
    """See the module docstring: the sources, over the run's state, delivery and
    consumer side (``RunState``, ``treestate.py``). Thread-safe: sources deliver from
    their threads, one consumer takes batches from another."""

    # -- starting --------------------------------------------------------------------

    def start(self) -> None:
        with self.cond:
            plan = self.router.route(self.targets)
            self._lose(
                sorted(plan.lost),
                UNREACHABLE,
                f"no live gateway leads to them from {self.router.root}",
            )
            if plan.direct:
                self._spawn(self._local, sorted(plan.direct))
            for gw, share in plan.via.items():
                self._spawn(self._gateway, gw, sorted(share))
            self._check_done()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        """Start a source thread (the caller holds the lock)."""
        self.sources += 1
        name = f"easycluster-tree {args[0] if target == self._gateway else 'local'}"
        thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self.threads.append(thread)
        thread.start()

    # -- the local source: a Task here -----------------------------------------------

    def _local(self, names: List[str]) -> None:
        ended = threading.Event()
        source = None  # the read end of the pipe the stdin stream is pumped into
        try:
            if self.stdin is not None:
                source, sink = os.pipe()
                stop = lambda: self.killed or ended.is_set()  # noqa: E731
                start_thread(pump, self.stdin, sink, stop, name="easycluster-tree stdin")
            spool = self.stdin if isinstance(self.stdin, SpoolStream) else None
            raw = self.raw if self.opts.get("raw") else None
            run_local(
                self.command,
                names,
                self.opts,
                self.line,
                self._end_one,
                lambda: self.killed,
                source,
                spool,
                raw,
            )
        except Exception as e:  # reported per node, never dropped
            with self.cond:
                self._lose(names, FAILED, f"{self.router.root}: cannot run the command: {e}")
        finally:
            ended.set()
            if source is not None:
                os.close(source)  # (a pump blocked on a full pipe gets EPIPE and ends)
            self._source_done()

    def _end_one(self, node: str, status: str, rc: Optional[int]) -> None:
        self.ended([node], status, rc)

    # -- a gateway source ------------------------------------------------------------

    def _gateway(self, gw: str, names: List[str]) -> None:
        left = set(names)  # this source's targets not ended yet
        source: Hashable = object()  # (its blocks' identity in the groomer)
        client: Optional[Client] = None
        ended = threading.Event()  # (tells the stdin feeder to stop)
        stage = UNREACHABLE  # until the gateway runs our command: then LOST
        opts = self.opts
        silence = float(opts.get("silence", SILENCE))
        try:
            boot = self._boot()
            client = open_gateway(
                gw, opts["ssh_options"], opts["connect_timeout"], opts["rpython"], boot
            )
            if self.killed:
                return  # (nothing started there: left targets end as aborted)
            deeper = not set(names) <= self.topology.children.get(gw, frozenset())
            token = client.call(
                ENTRY + "gateway_start",
                self.command,
                names,
                self.topology.to_text(),
                gw,
                opts,
                boot if deeper else None,
                threadid=SINGLE,
                call_timeout=silence,
            )
            stage = LOST
            if self.stdin is not None:
                start_thread(self._feed, client, token, ended, name=f"easycluster-feed {gw}")
            kill_by: Optional[float] = None
            while True:
                if self.killed and kill_by is None:
                    client.call(
                        ENTRY + "gateway_kill", token, threadid=CONTROL, call_timeout=silence
                    )
                    kill_by = time.monotonic() + KILL_GRACE
                if kill_by is not None and time.monotonic() > kill_by:
                    break  # (closing the connection ends the gateway and its commands)
                batch = client.call(
                    ENTRY + "gateway_read", token, threadid=SINGLE, call_timeout=silence
                )
                if self._absorb(gw, source, left, batch):
                    break
        except (ConnectionLost, CallTimeout, OSError) as e:
            what = "unreachable" if stage == UNREACHABLE else "lost"
            self._failover(gw, left, stage, f"gateway {gw} {what}: {e}")
        except RemoteException as e:
            with self.cond:
                self._lose(sorted(left), FAILED, f"gateway {gw} failed: {e}")
        finally:
            ended.set()
            if client is not None:
                client.close()
            self._source_done()

    def _feed(self, client: Client, token: int, ended: threading.Event) -> None:
        """Send the stdin stream to a gateway's run, chunk by chunk, in order (no
        deadline: a full pipe down there holds a chunk back; the reads find a death)."""
        stream = self.stdin
        if stream is None:
            return
        try:
            for chunk, last in stream.follow(lambda: self.killed or ended.is_set()):
                client.call(ENTRY + "gateway_feed", token, chunk, last, threadid=SINGLE)
        except (ConnectionLost, CallTimeout, OSError, RemoteException):
            pass  # (the gateway died or its run ended: the source reports it)

    def _boot(self) -> bytes:
        with self.cond:
            if self.boot is None:
                self.boot = payload.payload("server", GATEWAY_ROOTS)
            return self.boot

    def _absorb(self, gw: str, source: Hashable, left: Set[str], batch: Batch) -> bool:
        """Take in one batch from ``gw``; True when it was its last."""
        outputs, ends, reasons, done = batch
        with self.cond:
            counts = self.stats.setdefault(gw, [0, 0, 0])
            counts[0] += 1
            counts[1] += len(outputs)
            counts[2] += len(ends)
            for nodes, sid, data in outputs:
                if sid == RAW:
                    self._hold_raw()  # (this gateway's reads wait: it holds its nodes back)
                    self.raw_pending += len(data)
                if sid == RESET:
                    self.groomer.void(nodes)
                else:
                    self.groomer.block(source, nodes, sid, bytes(data))
            for nodes, status, rc in ends:
                names = [n for n in expand(nodes) if n in left]
                left.difference_update(names)
                self.open.difference_update(names)
                self.router.release(names)
                self.groomer.end(nodes, status, rc)
            for nodes, why in reasons:
                self.groomer.reason(nodes, why)
            if outputs or ends or reasons:
                self.cond.notify_all()
        return bool(done)

    def _failover(self, gw: str, left: Set[str], stage: str, why: str) -> None:
        """``gw`` failed: reroute what it had not finished, or end it with ``why``."""
        with self.cond:
            moved = self.router.fail(gw)
            mine = left & self.open
            if self.killed:
                self._ended(sorted(mine), ABORTED, None)
                return
            self._lose(sorted(mine & moved.lost), stage, why)
            if self.opts.get("raw"):  # (their rcopy starts again: void what came)
                again = sorted(mine - moved.lost)
                if again:
                    self.groomer.void(fold(again))
            direct = sorted(mine & moved.direct)
            if direct:
                self.rerouted.append(f"{fold(direct)}: {gw} -> {self.router.root}")
                self._spawn(self._local, direct)
            for other, share in moved.via.items():
                names = sorted(mine & share)
                if names:
                    self.rerouted.append(f"{fold(names)}: {gw} -> {other}")
                    self._spawn(self._gateway, other, names)


def open_gateway(
    gw: str,
    ssh_options: Sequence[str] = (),
    connect_timeout: float = 10.0,
    rpython: Optional[str] = None,
    boot: Optional[bytes] = None,
) -> Client:
    """A ``Client`` of a fresh gateway server on ``gw``, bootstrapped over ssh with
    nothing installed there (``boot``: the payload; default: the gateway payload built
    here). Raises ConnectionLost subclasses as ``Client`` does; close it when done."""
    if boot is None:
        boot = payload.payload("server", GATEWAY_ROOTS)
    client = Client(connect_timeout=connect_timeout, remote_output=False)
    channel, closer, name = open_channel(
        gw,
        rpython=rpython,
        extra_args=list(ssh_options),
        options=client.wire_options(),
        timeout=connect_timeout,
        payload_data=boot,
    )
    client.attach(channel, name, closer)
    return client


# -- the gateway's entry points (called by name by the parent) -----------------------

RUNS: Dict[int, TreeRun] = {}  # the runs this gateway serves, by token
_RUNS_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


def gateway_start(
    command: str,
    targets: List[str],
    topology_text: str,
    me: str,
    opts: Dict[str, Any],
    boot: Optional[bytes],
) -> int:
    """Start running ``command`` on ``targets``, rooted at ``me`` (this gateway), and
    return the run's token for ``gateway_read``/``gateway_kill``. ``boot``: the gateway
    payload, sent along only when ``targets`` hold nodes below another level of
    gateways (a gateway runs from memory and has no files to build one from)."""
    run = TreeRun(command, targets, Topology.build(topology_text), me, opts, boot)
    with _RUNS_LOCK:
        token = next(_TOKENS)
        RUNS[token] = run
    run.start()
    return token


def gateway_read(token: int) -> Batch:
    """The next batch of run ``token`` (``TreeRun.next_batch``: grouped, at most one per
    the run's ``delay``, an empty one after ``HEARTBEAT`` s of silence). The run is
    forgotten once its last batch (``done``) was read."""
    with _RUNS_LOCK:
        run = RUNS.get(token)
    if run is None:
        raise KeyError(f"no tree run {token} on this gateway")
    batch = run.next_batch(float(run.opts.get("delay", DELAY)), HEARTBEAT)
    if batch[3]:
        with _RUNS_LOCK:
            RUNS.pop(token, None)
        if isinstance(run.stdin, SpoolStream):
            run.stdin.close()  # (a copy's spool: every consumer ended with the run)
    return batch


def gateway_feed(token: int, data: bytes, eof: bool) -> bool:
    """More stdin for run ``token`` (``TreeRun.feed``); False when the run is over."""
    with _RUNS_LOCK:
        run = RUNS.get(token)
    if run is None:
        return False
    run.feed(data, eof)
    return True


def gateway_kill(token: int) -> bool:
    """Stop run ``token`` (returns at once; its last batch says what ended how)."""
    with _RUNS_LOCK:
        run = RUNS.get(token)
    if run is None:
        return False
    run.kill()
    return True
