"""What SLURM says about an allocation's nodes: their CPUs, and which became unusable.

``SlurmWatch(nodes, on_unusable)`` asks SLURM for the state of ``nodes`` every
``interval`` seconds (one ``sinfo -h -N -n NODES -o '%N %T'`` per round, from one daemon
thread) and calls ``on_unusable(node, state)`` once for each node SLURM marks DOWN,
DRAINED or DRAINING (its administrator or slurmctld took it out of service), or FAIL /
FAILING. The executor and the farm retire such a node as *lost* and run its work
elsewhere (``ClusterExecutor.from_slurm``, ``easycluster farm --slurm``).

Why both this and our heartbeat: the heartbeat stays the primary liveness signal (a
server that stops answering is lost whatever SLURM thinks), but a drained node's steps
keep running and answering, so only SLURM can say that it is leaving; and a node set
DOWN is seen here within ``interval`` even when its step lingers. A round that fails
(slurmctld busy or restarting, ``sinfo`` missing) changes nothing: the next round asks
again, and the failure is kept in ``last_error``.

``cpus_per_node(nodes, environ)`` reads ``SLURM_JOB_CPUS_PER_NODE`` (``2(x3),1``: two
CPUs on each of the first three nodes, one on the fourth), which salloc and sbatch set
in the allocation, as ``{node: cpus}`` in the allocation's node order.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "UNUSABLE",
    "WATCH_INTERVAL",
    "SlurmWatch",
    "cpus_per_node",
    "node_states",
    "parse_states",
    "unusable",
]

WATCH_INTERVAL = 3.0  # seconds between two questions to slurmctld (a few: it serves many)
# sinfo's long state names (%T) that mean "this node is out of service"
UNUSABLE = frozenset({"down", "drain", "drained", "draining", "fail", "failing"})
_FLAGS = "*~#!%$@^-+"  # marks sinfo appends to a state: not responding, powered off...
_COMMAND_TIMEOUT = 10.0  # sinfo answers in milliseconds when slurmctld is well
_CPUS = re.compile(r"(\d+)(?:\(x(\d+)\))?\Z")


def parse_states(text: str) -> Dict[str, str]:
    """``sinfo -h -N -o '%N %T'`` output as ``{node: state}`` (lower case, as printed).
    A node listed once per partition keeps its first line; other lines are skipped."""
    out: Dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            out.setdefault(fields[0], fields[1].lower())
    return out


def unusable(state: str) -> bool:
    """True when ``state`` (a ``%T`` state such as ``draining``, ``down*`` or
    ``mixed+drain``) takes the node out of service: see ``UNUSABLE``."""
    words = state.lower().rstrip(_FLAGS).split("+")
    return any(word.rstrip(_FLAGS) in UNUSABLE for word in words)


def node_states(nodes: Sequence[str], sinfo: Optional[str] = None) -> Dict[str, str]:
    """The state of each of ``nodes`` as SLURM reports it now (nodes SLURM does not
    know are left out). Raises OSError or subprocess errors when sinfo cannot answer."""
    if not nodes:
        return {}
    program = sinfo or shutil.which("sinfo") or "sinfo"
    proc = subprocess.run(
        [program, "-h", "-N", "-n", ",".join(nodes), "-o", "%N %T"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
    )
    if proc.returncode != 0:
        raise OSError(f"sinfo exited {proc.returncode}: {proc.stderr.strip()}")
    return parse_states(proc.stdout)


def cpus_per_node(
    nodes: Sequence[str], environ: Optional[Mapping[str, str]] = None
) -> Dict[str, int]:
    """``{node: CPUs}`` from ``SLURM_JOB_CPUS_PER_NODE`` for ``nodes``, the allocation's
    nodes in SLURM's order (as ``launch.srun.allocation_nodes`` returns them). Empty
    when the variable is unset or does not describe exactly that many nodes (e.g. it
    belongs to another allocation): the caller then picks a count itself."""
    env = os.environ if environ is None else environ
    text = env.get("SLURM_JOB_CPUS_PER_NODE", "").strip()
    counts: List[int] = []
    for part in text.split(",") if text else ():
        m = _CPUS.match(part.strip())
        if m is None:
            return {}
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if len(counts) != len(nodes) or any(c < 1 for c in counts):
        return {}
    return dict(zip(nodes, counts))


class SlurmWatch:
    """Polls SLURM for ``nodes`` and reports each node that became unusable, once
    (module docstring).

    ``on_unusable(node, why)`` runs on the watch's thread, ``why`` a sentence such as
    ``"SLURM marks n2 draining"``; it must be quick and thread-safe (the executor and
    the farm only note the node and wake their own threads). An exception it raises is
    kept in ``last_error`` and the watch goes on. ``start()`` polls at once and then
    every ``interval`` seconds until ``stop()`` (which waits for a poll under way, at
    most sinfo's timeout), until ``until()`` returns True (checked before each poll:
    an owner that may end without calling ``stop``), or until every node was reported.
    Also a context manager.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        on_unusable: Callable[[str, str], None],
        interval: float = WATCH_INTERVAL,
        sinfo: Optional[str] = None,
        until: Optional[Callable[[], bool]] = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a number of seconds > 0, not {interval!r}")
        self.nodes = list(dict.fromkeys(nodes))
        self.on_unusable = on_unusable
        self.interval = interval
        self.sinfo = sinfo
        self.until = until
        self.reported: Dict[str, str] = {}  # node: the state it was reported in
        self.last_error: Optional[BaseException] = None
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def poll(self) -> List[Tuple[str, str]]:
        """One round: ask SLURM, report the nodes newly found unusable and return them
        as ``(node, state)``. A failed question reports nothing."""
        todo = [n for n in self.nodes if n not in self.reported]
        try:
            states = node_states(todo, self.sinfo)
        except (OSError, subprocess.SubprocessError) as e:
            self.last_error = e
            return []
        found = [(n, states[n]) for n in todo if n in states and unusable(states[n])]
        for node, state in found:
            self.reported[node] = state
            try:
                self.on_unusable(node, f"SLURM marks {node} {state}")
            except Exception as e:  # the watch outlives a failing observer
                self.last_error = e
        return found

    def start(self) -> SlurmWatch:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, daemon=True, name="easycluster-slurmwatch"
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_COMMAND_TIMEOUT + 1.0)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if len(self.reported) == len(self.nodes) or (self.until and self.until()):
                return  # nothing left to watch, or nobody left to tell
            self.poll()
            if self._stopping.wait(self.interval):
                return

    def __enter__(self) -> SlurmWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
