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
from .routing import Router
from .topology import Topology
from .treegroom import RAW, RESET, STDERR, Batch, Groomer, empty_batch, expand, fold
from .treelocal import run_local
from .treeopts import DELAY, HEARTBEAT, RAW_LIMIT, RAW_SEND

# (re-exported: their home was this module; tree.py, treeworker.py, treecall.py, session.py)
from .treeopts import KILL_GRACE as KILL_GRACE
from .treeopts import SILENCE as SILENCE
from .treeopts import options as options
from .treespool import SpoolStream
from .treestdin import StdinStream, pump, start_thread

# What a gateway's payload carries on top of a server's: this module and its imports
# (a gateway for Python calls carries treecall.py too: its CALL_ROOTS).
GATEWAY_ROOTS = ("easycluster.cluster.treerun",)
ENTRY = "easycluster.cluster.treerun."  # the gateway's entry points (called by name)

LOST = "lost"
UNREACHABLE = "unreachable"
FAILED = "failed"
ABORTED = "aborted"
RC_LOST = 255  # as ssh's own failure: the admin's Task reports these as unreachable


class TreeRun:
    """See the module docstring. Thread-safe: sources deliver from their threads, one
    consumer takes batches from another."""

    def __init__(
        self,
        command: str,
        targets: Sequence[str],
        topology: Topology,
        root: Optional[str],
        opts: Dict[str, Any],
        boot: Optional[bytes] = None,
        stream: Optional[SpoolStream] = None,
    ) -> None:
        self.command = command
        self.targets = list(dict.fromkeys(targets))  # each node once
        self.topology = topology
        self.opts = opts
        self.boot = boot  # the gateway payload (built here on first need when None)
        self.router = Router(topology, root)
        self.cond = threading.Condition()
        self.groomer = Groomer()
        self.open: Set[str] = set(self.targets)  # targets not ended yet
        self.sources = 0  # source threads not finished
        self.threads: List[threading.Thread] = []
        self.killed = False
        self.done = False  # every source finished (every target ended)
        self.sent_done = False  # the batch saying so was taken
        self.last_sent = time.monotonic()
        self.raw_pending = 0  # bytes of rcopy data not taken yet (RAW_LIMIT)
        # per gateway: [reads answered, output entries, end entries] (what crossed a level)
        self.stats: Dict[str, List[int]] = {}
        self.rerouted: List[str] = []  # "node set: gw1 -> gw3" for each reroute
        # the commands' stdin (treestdin.py), a copy's in a file (treespool.py; ``stream``:
        # one given complete, the admin's source)
        self.stdin: Any = stream
        if stream is None and opts.get("stdin"):
            self.stdin = SpoolStream() if opts.get("spool") else StdinStream()

    def feed(self, data: bytes, eof: bool = False) -> None:
        """More of the commands' stdin (``eof``: its end); every target gets it all.
        ValueError when the run has no stdin (``options(stdin=True)``)."""
        if self.stdin is None:
            raise ValueError("this tree run was started without stdin")
        self.stdin.append(data, eof)

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

    # -- consuming -------------------------------------------------------------------

    def take(self) -> Batch:
        """Whatever is pending now (never waits); the last batch says ``done``."""
        with self.cond:
            return self._take()

    def next_batch(self, delay: float, heartbeat: float = HEARTBEAT) -> Batch:
        """Wait for a batch: once something is pending, until ``delay`` s after the
        previous batch; when nothing comes, an empty batch after ``heartbeat`` s (it
        tells the parent this host lives). The last batch comes as soon as the run is
        done."""
        with self.cond:
            quiet_until = time.monotonic() + heartbeat
            while not self.groomer and not self.done:
                left = quiet_until - time.monotonic()
                if left <= 0:
                    return self._take()
                self.cond.wait(left)
            while not self.done and self.raw_pending < RAW_SEND:
                left = self.last_sent + delay - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            return self._take()

    def _take(self) -> Batch:
        if self.sent_done:
            return empty_batch(True)
        batch = self.groomer.take(self.done)
        self.raw_pending = 0
        self.cond.notify_all()  # (sources held back by RAW_LIMIT go on)
        self.sent_done = self.done
        self.last_sent = time.monotonic()
        return batch

    def kill(self) -> None:
        """Stop every source (see the module docstring); returns at once."""
        with self.cond:
            self.killed = True
            self.cond.notify_all()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until every source thread ended (True), at most ``timeout`` s."""
        end = None if timeout is None else time.monotonic() + timeout
        for t in list(self.threads):
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    # -- what sources deliver (each takes the lock) ----------------------------------

    def line(self, node: str, sid: int, data: bytes) -> None:
        with self.cond:
            if node in self.open:
                self.groomer.line(node, sid, data)
                self.cond.notify_all()

    def raw(self, node: str, data: bytes) -> None:
        """A chunk of ``node``'s rcopy data; waits while ``RAW_LIMIT`` bytes are pending
        (the engine's thread: every node here is held back, so memory stays bounded)."""
        with self.cond:
            self._hold_raw()
            if node in self.open:
                self.groomer.raw(node, data)
                self.raw_pending += len(data)
                self.cond.notify_all()

    def _hold_raw(self) -> None:
        while self.raw_pending >= RAW_LIMIT and not self.killed:
            self.cond.wait(HEARTBEAT)

    def ended(self, nodes: List[str], status: str, rc: Optional[int]) -> None:
        with self.cond:
            self._ended(nodes, status, rc)

    def _ended(self, nodes: List[str], status: str, rc: Optional[int]) -> None:
        nodes = [n for n in nodes if n in self.open]
        if nodes:
            self.open.difference_update(nodes)
            self.router.release(nodes)
            self.groomer.end(fold(nodes), status, rc)
            self.cond.notify_all()

    def _lose(self, nodes: List[str], status: str, why: str) -> None:
        """End ``nodes`` that cannot run (lock held): rc 255, ``why`` on their stderr."""
        nodes = [n for n in nodes if n in self.open]
        if not nodes:
            return
        for n in nodes:
            self.groomer.line(n, STDERR, why.encode())
        self.groomer.reason(fold(nodes), why)
        self._ended(nodes, status, RC_LOST)

    def _source_done(self) -> None:
        with self.cond:
            self.sources -= 1
            self._check_done()

    def _check_done(self) -> None:
        if self.sources == 0 and not self.done:
            self._ended(sorted(self.open), ABORTED, None)  # (only when killed)
            self.done = True
            self.cond.notify_all()

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
