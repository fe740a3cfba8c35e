"""Tree mode, first cut: a shell command on many nodes through gateways.

``tree_shell(command, nodes, topology)`` runs at the admin node. The ``Router``
(``routing.py``) groups the targets by first hop; each gateway is bootstrapped over
ssh with nothing installed (``open_gateway``: a server payload plus ``GATEWAY_ROOTS``,
this module and what it imports) and asked, by one RPC call, to run the command on its
share (``gateway_main``). A gateway does exactly what the admin does, rooted at itself:
its own children are reached with plain ``ssh host command`` (the cluster ``Task`` and
its ``SshBackend``), deeper ones through the next level of gateways, so a topology of
any depth works (ClusterShell #471 hung on deeper ones). A gateway runs from memory and
has no source files, so the payload built once at the admin travels down with the call
when a share reaches below the next level. Targets that are children of the root, or
that the topology does not list, run from here directly.

Grooming: a gateway answers with one entry per distinct ``(status, return code,
stdout, stderr)``, keyed by the folded node set that produced it, so what crosses each
level (and what the admin merges) grows with distinct outputs, not with nodes. Per-node
state is kept in plain dicts and lists; node sets are folded once per group
(ClusterShell #560).

Faults, each reported by name, never dropped (ClusterShell #207):

- a node its gateway cannot reach: status ``unreachable`` (ssh's own verdict);
- a gateway that cannot be reached or started: its targets are rerouted to another
  gateway declared for them; when none is left they are ``unreachable`` with the reason;
- a gateway that dies mid-command: its connection's end fails the pending call at once,
  and every target it had is ``lost`` under one node set, with the gateway named. They
  are not rerun elsewhere: the command may have run (part of) its course there.

Wiring into ``Task``/``Cluster``/``easycluster shell`` later: a ``Task`` with a topology
would call ``route`` once per ``shell()``, keep the ``direct`` part on its own engine
and hand each gateway's part to a gateway worker; ``TreeResult.groups`` maps onto the
results' ``iter_buffers``/``iter_retcodes``/``iter_status`` without per-node expansion.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..client.client import Client
from ..errors import ConnectionLost, RemoteException
from ..launch import payload
from ..launch.ssh import open_channel
from ..nodeset import RESOLVER_NOGROUP, NodeSet
from .backends import SshBackend
from .routing import Router
from .task import Task, node_list
from .topology import Topology

# What a gateway's payload carries on top of a server's: this module and its imports.
GATEWAY_ROOTS = ("easycluster.cluster.tree",)

LOST = "lost"
UNREACHABLE = "unreachable"
FAILED = "failed"

# (status, rc, stdout, stderr): what makes two nodes' results the same
GroupKey = Tuple[str, Optional[int], bytes, bytes]
# what crosses a level: (folded node set, status, rc, stdout, stderr), and the reasons
WireGroup = Tuple[str, str, Optional[int], bytes, bytes]
Wire = Tuple[List[WireGroup], List[Tuple[str, str]]]


@dataclass
class OutputGroup:
    """Nodes that ended alike: ``status`` (``hup``, ``timeout``, ``unreachable``,
    ``hostkey``, ``failed``, ``lost``), return code (None unless it exited), output."""

    nodes: NodeSet
    status: str
    rc: Optional[int]
    stdout: bytes
    stderr: bytes


@dataclass
class TreeResult:
    """The outcome of ``tree_shell``: every target appears in exactly one group.
    ``reasons`` holds ``(node set, why)`` for targets that did not run (gateway lost or
    unreachable, no route)."""

    groups: List[OutputGroup] = field(default_factory=list)
    reasons: List[Tuple[str, str]] = field(default_factory=list)

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


class _Collector:
    """Merges groups from every source: node set texts are joined per key and folded
    once at the end, so the cost grows with distinct results, not nodes."""

    def __init__(self) -> None:
        self.parts: Dict[GroupKey, List[str]] = {}
        self.reasons: List[Tuple[str, str]] = []

    def add(self, nodes: str, key: GroupKey) -> None:
        if nodes:
            self.parts.setdefault(key, []).append(nodes)

    def add_wire(self, wire: Wire) -> None:
        groups, reasons = wire
        for nodes, status, rc, out, err in groups:
            self.add(nodes, (status, rc, bytes(out), bytes(err)))
        self.reasons.extend(reasons)

    def fail(self, nodes: Sequence[str], status: str, why: str) -> None:
        if nodes:
            text = _fold(nodes)
            self.add(text, (status, None, b"", why.encode()))
            self.reasons.append((text, why))

    def wire(self) -> Wire:
        groups = [(_fold_text(p), *key) for key, p in self.parts.items()]
        return groups, list(self.reasons)

    def result(self) -> TreeResult:
        groups = [
            OutputGroup(NodeSet(_fold_text(p), resolver=RESOLVER_NOGROUP), *key)
            for key, p in self.parts.items()
        ]
        groups.sort(key=lambda g: (g.status, -len(g.nodes)))
        return TreeResult(groups, list(self.reasons))


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
) -> TreeResult:
    """Run ``command`` on ``nodes`` through the gateways of ``topology``.

    ``ssh_options``: given to every ssh at every level (e.g. ``["-F", config]``; the
    files they name must exist on the gateways too). ``timeout``: seconds per node for
    the command (None: no bound). ``fanout``: ssh commands run at once per level.
    ``rpython``: the Python to start gateways with. ``root``: where this call stands in
    the tree (default: the topology's root). Returns when every target has a result;
    see the module docstring for the faults.
    """
    topo = topology if isinstance(topology, Topology) else Topology.build(topology)
    opts = (list(ssh_options), timeout, connect_timeout, fanout, rpython)
    wire = _run(command, node_list(nodes), topo, root, opts, None)
    out = _Collector()
    out.add_wire(wire)
    return out.result()


# (ssh options, timeout, connect timeout, fanout, rpython): plain data for the wire
Options = Tuple[List[str], Optional[float], float, int, Optional[str]]


def gateway_main(
    command: str,
    targets: List[str],
    topology_text: str,
    me: str,
    opts: Options,
    boot: Optional[bytes],
) -> Wire:
    """What a gateway runs for its parent (called by name over RPC): the same work
    rooted at ``me``, answered as plain data (groups and reasons). ``boot``: the
    gateway payload, sent along only when ``targets`` hold nodes below another level of
    gateways (a gateway runs from memory and has no files to build one from)."""
    return _run(command, targets, Topology.build(topology_text), me, opts, boot)


def _run(
    command: str,
    targets: List[str],
    topo: Topology,
    root: Optional[str],
    opts: Options,
    boot: Optional[bytes],
) -> Wire:
    ssh_options, timeout, connect_timeout, fanout, rpython = opts
    router = Router(topo, root)
    plan = router.route(targets)
    out = _Collector()
    out.fail(sorted(plan.lost), UNREACHABLE, f"no live gateway leads to these from {router.root}")
    direct = set(plan.direct)
    todo = dict(plan.via)
    clients: Dict[str, Client] = {}
    pending: Dict[Any, Tuple[str, List[str]]] = {}
    text = topo.to_text()
    try:
        while todo:  # one round per wave of reroutes
            batch, todo = todo, {}
            if boot is None:
                boot = payload.payload("server", GATEWAY_ROOTS)
            opened = _open_all([g for g in batch if g not in clients], opts, boot)
            for gw, share in batch.items():
                got = opened.get(gw)
                if isinstance(got, ConnectionLost):
                    moved = router.fail(gw)
                    for other, more in moved.via.items():
                        todo.setdefault(other, set()).update(more)
                    direct |= moved.direct
                    out.fail(sorted(moved.lost), UNREACHABLE, f"gateway {gw} unreachable: {got}")
                    continue
                if isinstance(got, BaseException):
                    out.fail(sorted(share), FAILED, f"gateway {gw} not started: {got}")
                    continue
                if got is not None:
                    clients[gw] = got
                names = sorted(share)
                deeper = not share <= topo.children.get(gw, frozenset())
                try:
                    resp = clients[gw].call(
                        "easycluster.cluster.tree.gateway_main",
                        command, names, text, gw, opts, boot if deeper else None,
                        nonblocking=True,
                    )  # fmt: skip
                except ConnectionLost as e:
                    out.fail(names, LOST, f"gateway {gw} lost: {e}")
                    continue
                pending[resp] = (gw, names)
        if direct:  # runs here while the gateways work
            _run_direct(command, sorted(direct), opts, out)
        for resp in concurrent.futures.as_completed(pending):
            gw, names = pending[resp]
            try:
                out.add_wire(resp.result())
            except ConnectionLost as e:
                out.fail(names, LOST, f"gateway {gw} lost: {e}")
            except RemoteException as e:
                out.fail(names, FAILED, f"gateway {gw} failed: {e}")
    finally:
        for client in clients.values():
            client.close()
    return out.wire()


def _open_all(
    gateways: List[str], opts: Options, boot: bytes
) -> Dict[str, Union[Client, BaseException]]:
    """Bootstrap ``gateways`` at once (up to ``fanout`` in flight): each a ``Client`` or
    the exception that stopped it. Each connection is set up by one pool thread and
    then handed over whole to the caller's thread (never shared)."""
    ssh_options, _, connect_timeout, fanout, rpython = opts
    if not gateways:
        return {}

    def one(gw: str) -> Union[Client, BaseException]:
        try:
            return open_gateway(gw, ssh_options, connect_timeout, rpython, boot)
        except Exception as e:  # reported per gateway by the caller
            return e

    workers = max(1, min(fanout, len(gateways)))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="gateway-open") as pool:
        return dict(zip(gateways, pool.map(one, gateways)))


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


def _run_direct(command: str, nodes: List[str], opts: Options, out: _Collector) -> None:
    """``ssh node command`` on each node from here, results grouped into ``out``."""
    ssh_options, timeout, connect_timeout, fanout, _ = opts
    task = Task()
    task.set_info("fanout", fanout)
    backend = SshBackend(options=ssh_options, connect_timeout=connect_timeout)
    task.shell(command, nodes=nodes, timeout=timeout or 0, backend=backend)
    task.resume()
    alike: Dict[GroupKey, List[str]] = {}
    for node in nodes:
        key = (task.node_status(node), task.node_retcode(node), task.node_buffer(node),
               task.node_error(node))  # fmt: skip
        alike.setdefault(key, []).append(node)
    for key, names in alike.items():
        out.add(_fold(names), key)


def _fold(names: Sequence[str]) -> str:
    return str(NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP))


def _fold_text(parts: List[str]) -> str:
    return parts[0] if len(parts) == 1 else str(NodeSet(",".join(parts), resolver=RESOLVER_NOGROUP))
