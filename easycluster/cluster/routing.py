"""Tree-mode routing: which hop each target goes through, and the reroute when a
gateway dies. Pure code over a ``Topology``; no I/O, no clock.

A ``Router`` stands at one node of the tree (the admin by default, or a gateway
routing what it was sent) and keeps plain dicts and sets (never node sets on the hot
path: ClusterShell #560 spent minutes updating a NodeSet per node):

- ``route(targets) -> Plan`` assigns each target a path up to this router's root and
  groups the targets by their first hop. At each level the live candidate parent with
  the fewest targets assigned so far is chosen (ties: the order of the topology line),
  so the targets of ``gw[1-2]: node[1-100]`` split 50/50 between gw1 and gw2.
- ``fail(gateway) -> Plan`` marks a gateway dead and reroutes every target whose path
  went through it: through another declared candidate when one is alive, else the
  target is *lost* (the plan says which, as one node set, at once).
- ``release(targets)`` forgets finished targets, so the load is what is in flight.

Targets the topology does not know are sent directly (``Plan.direct`` and
``Plan.unlisted``: reported, never dropped; ClusterShell #207 reported nothing).

A path ``(hop1, hop2, ..., target)`` lists the nodes after the root; the first hop
is the gateway to send the target to (or the target itself when it is a child of the
root, or unlisted: direct).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..nodeset import RESOLVER_NOGROUP, NodeSet
from .topology import Topology


@dataclass
class Plan:
    """Where targets go: ``via`` maps a gateway (first hop) to the targets sent through
    it; ``direct`` holds targets reached straight from the root (children of the root
    and unlisted nodes); ``unlisted`` the subset of ``direct`` the topology does not
    know; ``lost`` targets no live path reaches. Every target is in exactly one of
    ``via`` values, ``direct`` or ``lost``."""

    via: Dict[str, Set[str]] = field(default_factory=dict)
    direct: Set[str] = field(default_factory=set)
    unlisted: Set[str] = field(default_factory=set)
    lost: Set[str] = field(default_factory=set)

    def lost_nodeset(self) -> NodeSet:
        """The lost targets folded as one node set (for reports)."""
        return NodeSet.fromlist(sorted(self.lost), resolver=RESOLVER_NOGROUP)

    def targets(self) -> Set[str]:
        out = set(self.direct) | self.lost
        for nodes in self.via.values():
            out |= nodes
        return out


class Router:
    """Routing state at ``root`` (default: the topology's root) over ``topology``."""

    def __init__(self, topology: Topology, root: Optional[str] = None) -> None:
        self.topology = topology
        self.root = topology.root if root is None else root
        if self.root not in topology:
            raise ValueError(f"{self.root!r} is not in the topology; it cannot route from there")
        self.scope: Set[str] = topology.below(self.root)
        self.dead: Set[str] = set()
        self.load: Dict[str, int] = {}
        self.paths: Dict[str, Tuple[str, ...]] = {}
        self._reach: Dict[str, bool] = {}  # node -> a live path up to root exists

    # -- queries ---------------------------------------------------------------

    def next_hop(self, node: str) -> Optional[str]:
        """The node to send ``node``'s work to from here without assigning it (no load
        change): a gateway, ``node`` itself (direct), or None when no live path exists."""
        if node == self.root or node not in self.topology:
            return node
        if node in self.paths:
            return self.paths[node][0]
        path = self._path(node)
        return path[0] if path else None

    def assigned(self, gateway: str) -> Set[str]:
        """Targets currently routed with ``gateway`` on their path."""
        return {t for t, p in self.paths.items() if gateway in p[:-1]}

    # -- changes ---------------------------------------------------------------

    def route(self, targets: Iterable[str]) -> Plan:
        """Assign each target a path (least-loaded live candidates) and group them."""
        plan = Plan()
        for t in targets:
            if t in self.paths:
                self._file(plan, t, self.paths[t])
                continue
            if t == self.root or t not in self.topology:
                plan.direct.add(t)
                if t not in self.topology:
                    plan.unlisted.add(t)
                continue
            path = self._path(t)
            if path is None:
                plan.lost.add(t)
                continue
            self.paths[t] = path
            for hop in path[:-1]:
                self.load[hop] = self.load.get(hop, 0) + 1
            self._file(plan, t, path)
        return plan

    def fail(self, gateway: str) -> Plan:
        """Mark ``gateway`` dead and reroute the targets whose path crossed it; the plan
        holds their new routes and the ones now lost. Idempotent."""
        self.dead.add(gateway)
        self._reach.clear()
        moved = [t for t, p in self.paths.items() if gateway in p[:-1]]
        self.release(moved)
        return self.route(moved)

    def revive(self, gateway: str) -> None:
        """Let ``gateway`` be chosen again (targets already moved stay where they are)."""
        self.dead.discard(gateway)
        self._reach.clear()

    def release(self, targets: Iterable[str]) -> None:
        """Forget the routes of ``targets`` (done, or about to be rerouted)."""
        for t in targets:
            path = self.paths.pop(t, None)
            if path is None:
                continue
            for hop in path[:-1]:
                left = self.load.get(hop, 0) - 1
                if left > 0:
                    self.load[hop] = left
                else:
                    self.load.pop(hop, None)

    # -- inside ------------------------------------------------------------------

    def _file(self, plan: Plan, target: str, path: Tuple[str, ...]) -> None:
        if len(path) == 1:
            plan.direct.add(target)
        else:
            plan.via.setdefault(path[0], set()).add(target)

    def _usable(self, node: str) -> bool:
        return node == self.root or (node in self.scope and node not in self.dead)

    def _reaches(self, node: str) -> bool:
        """A live path goes up from ``node`` to the root (memoized until a failure)."""
        if node == self.root:
            return True
        known = self._reach.get(node)
        if known is not None:
            return known
        self._reach[node] = False  # guards against revisiting (the topology is acyclic)
        ok = self._usable(node) and any(self._reaches(p) for p in self.topology.candidates(node))
        self._reach[node] = ok
        return ok

    def _path(self, target: str) -> Optional[Tuple[str, ...]]:
        """Walk up from ``target``, choosing the least-loaded reachable parent each step."""
        if target not in self.scope:
            return None
        up: List[str] = [target]
        node = target
        while True:
            ups = [p for p in self.topology.candidates(node) if self._reaches(p)]
            if not ups:
                return None
            best = min(ups, key=lambda p: self.load.get(p, 0))
            if best == self.root:
                return tuple(reversed(up))
            up.append(best)
            node = best
