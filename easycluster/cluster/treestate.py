"""The state of one tree run (``treerun.py``) under its lock: the targets not ended yet,
the ``Groomer`` (``treegroom.py``) that the sources deliver into, and the consumer's side.

``RunState`` is what the sources and the consumer share; ``treerun.TreeRun`` adds the
sources themselves (routing, the local Task, the gateways, failover). Sources deliver
``line``, ``raw`` and ``ended`` (each takes the lock; ``raw`` holds its source back
while ``RAW_LIMIT`` bytes are pending); a node ends once, and a target that cannot run
ends with ``RC_LOST`` and the reason on its stderr (``_lose``). The consumer takes
batches: ``next_batch`` (a gateway answering its parent: waits, batches) or ``take``
(the admin's tree worker: whatever is there now); the last one says ``done``, once
every source finished.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Set

from .routing import Router
from .topology import Topology
from .treegroom import STDERR, Batch, Groomer, empty_batch, fold
from .treeopts import HEARTBEAT, RAW_LIMIT, RAW_SEND
from .treespool import SpoolStream
from .treestdin import StdinStream

LOST = "lost"
UNREACHABLE = "unreachable"
FAILED = "failed"
ABORTED = "aborted"
RC_LOST = 255  # as ssh's own failure: the admin's Task reports these as unreachable


class RunState:
    """A tree run's targets, groomed output and consumer side, under ``cond`` (module
    docstring). Thread-safe: sources deliver from their threads, one consumer takes
    batches from another."""

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
