"""Tree mode: a shell command on many nodes through gateways.

Three faces over one engine (``treerun.TreeRun``, which routes, starts the sources and
grooms what they deliver):

- ``tree_shell(command, nodes, topology)``: the plain Python API, at the admin node;
  returns a ``TreeResult`` (every target in exactly one group) once all ended;
- a ``Task`` with a topology (``Task.load_topology``, ``shell(..., tree=True)``) runs
  its shell commands through a ``treeworker.TreeWorker``: the same events and results
  as flat;
- the gateway's entry points (``treerun.gateway_start``, ``gateway_read``,
  ``gateway_kill``), called by name over RPC by the parent; re-exported here.

Any depth works (ClusterShell #471 hung on deeper ones). How gateways are started,
batches and faults: see ``treerun.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..nodeset import RESOLVER_NOGROUP, NodeSet
from .results import message
from .task import node_list
from .topology import Topology
from .treegroom import expand, fold
from .treerun import (
    GATEWAY_ROOTS,
    LOST,
    SILENCE,
    UNREACHABLE,
    TreeRun,
    gateway_kill,
    gateway_read,
    gateway_start,
    open_gateway,
    options,
)

__all__ = [
    "GATEWAY_ROOTS",
    "OutputGroup",
    "TreeResult",
    "gateway_kill",
    "gateway_read",
    "gateway_start",
    "open_gateway",
    "options",
    "tree_shell",
]


@dataclass
class OutputGroup:
    """Nodes that ended alike: ``status`` (``hup``, ``timeout``, ``unreachable``,
    ``hostkey``, ``failed``, ``lost``, ``aborted``), return code (None when it has
    none), output (without one final newline, as ``Task.node_buffer``)."""

    nodes: NodeSet
    status: str
    rc: Optional[int]
    stdout: bytes
    stderr: bytes


@dataclass
class TreeResult:
    """The outcome of ``tree_shell``: every target appears in exactly one group.
    ``reasons`` holds ``(node set, why)`` for targets that did not run (gateway lost or
    unreachable, no route); ``stats`` maps each first-hop gateway to ``[reads, output
    entries, end entries]`` received from it; ``rerouted`` says what moved where."""

    groups: List[OutputGroup] = field(default_factory=list)
    reasons: List[Tuple[str, str]] = field(default_factory=list)
    stats: Dict[str, List[int]] = field(default_factory=dict)
    rerouted: List[str] = field(default_factory=list)

    def iter_groups(self) -> Iterator[OutputGroup]:
        return iter(self.groups)

    def status_nodes(self, status: str) -> NodeSet:
        """Every node whose status is ``status``, as one node set."""
        out = NodeSet(resolver=RESOLVER_NOGROUP)
        for g in self.groups:
            if g.status == status:
                out.update(g.nodes)
        return out

    @property
    def lost(self) -> NodeSet:
        return self.status_nodes(LOST)

    @property
    def unreachable(self) -> NodeSet:
        return self.status_nodes(UNREACHABLE)

    def node_group(self, node: str) -> OutputGroup:
        """The group ``node`` is in (KeyError when it was not a target)."""
        for g in self.groups:
            if node in g.nodes:
                return g
        raise KeyError(node)


def tree_shell(
    command: str,
    nodes: Union[str, Sequence[str], NodeSet],
    topology: Union[Topology, str, Dict[str, str]],
    ssh_options: Sequence[str] = (),
    timeout: Optional[float] = None,
    connect_timeout: float = 10.0,
    fanout: int = 64,
    rpython: Optional[str] = None,
    root: Optional[str] = None,
    stderr: bool = True,
    silence: float = SILENCE,
) -> TreeResult:
    """Run ``command`` on ``nodes`` (each once) through the gateways of ``topology``.

    ``ssh_options``: given to every ssh at every level (e.g. ``["-F", config]``; the
    files they name must exist on the gateways too). ``timeout``: seconds per node for
    the command (None: no bound). ``fanout``: ssh commands run at once per host.
    ``rpython``: the Python to start gateways with. ``root``: where this call stands in
    the tree (default: the topology's root). ``stderr``: False merges it into stdout.
    ``silence``: seconds a gateway may say nothing (it sends a heartbeat every second)
    before it is taken as hung or frozen, and its targets failed over or lost.
    Returns when every target has a result; see ``treerun.py`` for the faults.
    """
    topo = topology if isinstance(topology, Topology) else Topology.build(topology)
    opts = options(ssh_options, timeout, connect_timeout, fanout, rpython, stderr, silence=silence)
    run = TreeRun(command, node_list(nodes), topo, root, opts)
    run.start()
    outs: Dict[int, Dict[str, bytearray]] = {1: {}, 2: {}}
    ends: Dict[str, Tuple[str, Optional[int]]] = {}
    reasons: List[Tuple[str, str]] = []
    try:
        while True:
            outputs, done_nodes, why, done = run.next_batch(0.0)
            for text, sid, data in outputs:
                for node in expand(text):
                    outs[sid].setdefault(node, bytearray()).extend(data)
            for text, status, rc in done_nodes:
                for node in expand(text):
                    ends[node] = (status, rc)
            reasons += why
            if done:
                break
    finally:
        run.kill()
        run.wait(30)
    alike: Dict[Tuple[str, Optional[int], bytes, bytes], List[str]] = {}
    for node in run.targets:
        status, rc = ends.get(node, ("aborted", None))
        out = message(bytes(outs[1].get(node, b"")))
        err = message(bytes(outs[2].get(node, b"")))
        alike.setdefault((status, rc, out, err), []).append(node)
    groups = [
        OutputGroup(NodeSet(fold(names), resolver=RESOLVER_NOGROUP), *key)
        for key, names in alike.items()
    ]
    groups.sort(key=lambda g: (g.status, -len(g.nodes)))
    return TreeResult(groups, reasons, dict(run.stats), list(run.rerouted))
