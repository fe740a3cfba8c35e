"""Tree-mode topology: which gateways stand between the admin node and the others.

Pure code (no I/O except ``load_topology`` reading one file). The syntax is
ClusterShell's ``topology.conf``: an optional ``[routes]`` section header, then one
route per line, ``PARENTS: CHILDREN``, both node sets::

    [routes]
    admin: gw[1-4]
    gw[1-2]: rack[1-8]
    gw[3-4]: node[1-4000]
    rack[1-8]: cn[1-800]

Comments start with ``#`` or ``;``; blank lines are ignored. A line's parents are
*alternatives* for every one of its children: ``gw[1-2]: rack[1-8]`` means each rack
is served by gw1 or gw2 (the router picks the least loaded live one, and the other is
the failover). The root is the one name that is a parent and never a child (the admin
node).

Validation (each a ``TopologyError`` naming the line and saying how to fix it):

- a line without ``:``, an empty side, or a node set that does not parse;
- a child listed on two lines with different parents (list the failover gateways
  together on one line instead: ``gw[1,3]: node5``);
- no root, or more than one (every name must hang below one admin node);
- a parent nobody reaches (not the root and not a child of any line);
- a cycle (a node below itself);
- a root listed with other parents on its line (the admin node stands alone).

Nodes that appear nowhere are not the topology's business: the router sends them
directly (ClusterShell does the same, #314) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Set, Tuple, Union

from ..errors import ConfigError, NodeSetError
from ..nodeset import RESOLVER_NOGROUP, NodeSet


class TopologyError(ConfigError):
    """A topology that cannot be used; the message names the line and the fix."""


RouteSpec = Union[str, Mapping[str, str], Iterable[Tuple[str, str]]]


@dataclass(frozen=True)
class Route:
    """One ``PARENTS: CHILDREN`` line (``line`` is 1-based; 0 when built from Python)."""

    parents: Tuple[str, ...]
    children: Tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Topology:
    """A validated tree: ``root`` (the admin node), ``parents`` (each child's candidate
    parents, in order) and ``children`` (each parent's children). Build it with
    ``parse_topology``, ``load_topology`` or ``Topology.build``."""

    root: str
    parents: Dict[str, Tuple[str, ...]] = field(repr=False)
    children: Dict[str, FrozenSet[str]] = field(repr=False)
    routes: Tuple[Route, ...] = ()

    @classmethod
    def build(cls, routes: RouteSpec) -> Topology:
        """A topology from text, a ``{parents: children}`` mapping or ``(parents,
        children)`` pairs. TopologyError when it is not a valid tree."""
        if isinstance(routes, str):
            return parse_topology(routes)
        pairs = routes.items() if isinstance(routes, Mapping) else routes
        parsed = [_route(str(p), str(c), 0) for p, c in pairs]
        return _validate(parsed)

    @property
    def gateways(self) -> FrozenSet[str]:
        """Every node that has children, the root excepted."""
        return frozenset(n for n in self.children if n != self.root)

    def candidates(self, node: str) -> Tuple[str, ...]:
        """The parents that can serve ``node`` (empty for the root and unknown nodes)."""
        return self.parents.get(node, ())

    def __contains__(self, node: object) -> bool:
        return node == self.root or node in self.parents

    def below(self, node: str) -> Set[str]:
        """Every node reachable downwards from ``node`` (itself excluded)."""
        seen: Set[str] = set()
        todo = list(self.children.get(node, ()))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.children.get(n, ()))
        return seen

    def depth(self, node: str) -> int:
        """Number of hops from the root to ``node`` along first candidates (root: 0).
        ValueError for a node outside the topology."""
        if node not in self:
            raise ValueError(f"{node!r} is not in the topology")
        hops = 0
        while node != self.root:
            node = self.parents[node][0]
            hops += 1
        return hops

    def to_text(self) -> str:
        """The topology in its file syntax (what ``parse_topology`` reads back)."""
        lines = ["[routes]"]
        for r in self.routes:
            lines.append(f"{_fold(r.parents)}: {_fold(r.children)}")
        return "\n".join(lines) + "\n"


def load_topology(path: str) -> Topology:
    """Read and validate a topology file. TopologyError (with the path) when it is bad,
    OSError when it cannot be read."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return parse_topology(text)
    except TopologyError as e:
        raise TopologyError(f"{path}: {e}") from None


def parse_topology(text: str) -> Topology:
    """Parse and validate topology text (see the module docstring for the syntax)."""
    routes: List[Route] = []
    section: Optional[str] = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]") and ":" not in line:
            section = line[1:-1].strip()
            continue
        if section not in (None, "routes"):
            continue  # other sections are not ours (ClusterShell ignores them too)
        parents, sep, children = line.partition(":")
        if not sep:
            raise TopologyError(
                f"line {number}: {raw.strip()!r} has no ':'; write 'PARENTS: CHILDREN'"
            )
        routes.append(_route(parents, children, number))
    return _validate(routes)


def _route(parents: str, children: str, line: int) -> Route:
    where = f"line {line}" if line else f"route {parents.strip()!r}"
    if not parents.strip() or not children.strip():
        raise TopologyError(f"{where}: both sides of ':' need node names")
    try:
        p = NodeSet(parents.strip(), resolver=RESOLVER_NOGROUP)
        c = NodeSet(children.strip(), resolver=RESOLVER_NOGROUP)
    except NodeSetError as e:
        raise TopologyError(f"{where}: bad node set: {e}") from None
    return Route(tuple(p), tuple(c), line)


def _validate(routes: List[Route]) -> Topology:
    if not routes:
        raise TopologyError("the topology has no routes; add a line such as 'admin: gw[1-2]'")
    parents: Dict[str, Tuple[str, ...]] = {}
    origin: Dict[str, Route] = {}
    for r in routes:
        for child in r.children:
            if child in r.parents:
                raise TopologyError(f"{_at(r)}: {child} is listed as its own parent")
            known = parents.get(child)
            if known is None:
                parents[child] = r.parents
                origin[child] = r
            elif set(known) != set(r.parents):
                first = origin[child]
                raise TopologyError(
                    f"{_at(r)}: {child} is already under {_fold(known)} ({_at(first)}); a node"
                    f" has one set of parents: list failover gateways together on one line,"
                    f" e.g. '{_fold(set(known) | set(r.parents))}: {child}'"
                )
    all_parents = {p for r in routes for p in r.parents}
    roots = sorted(all_parents - set(parents))
    if not roots:
        raise TopologyError(
            "the topology has no root: every parent is also a child (a cycle); the first"
            " line should start with the admin node, e.g. 'admin: gw[1-2]'"
        )
    root_lines = [r for r in routes if set(r.parents) & set(roots)]
    for r in root_lines:
        if len(r.parents) > 1:
            unknown = _fold(set(r.parents) & set(roots))
            raise TopologyError(
                f"{_at(r)}: {unknown} is not below any node; a parent must be the admin"
                f" node (alone on its line) or a child of another line"
            )
    if len(roots) > 1:
        lines = ", ".join(_at(r) for r in root_lines)
        raise TopologyError(
            f"several nodes are below no one: {_fold(roots)} ({lines}); there must be one"
            f" root (the admin node): add lines linking them under it, or fix the names"
        )
    root = roots[0]
    children: Dict[str, Set[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(child)
    _check_cycles(root, parents, origin)
    return Topology(
        root=root,
        parents=parents,
        children={p: frozenset(c) for p, c in children.items()},
        routes=tuple(routes),
    )


def _check_cycles(root: str, parents: Dict[str, Tuple[str, ...]], origin: Dict[str, Route]) -> None:
    """Every node must reach the root going up; a node met twice on the way is a cycle."""
    done: Set[str] = {root}
    for start in parents:
        path: List[str] = []
        on_path: Set[str] = set()
        stack: List[Tuple[str, int]] = [(start, 0)]
        while stack:  # iterative DFS upwards over candidate parents
            node, i = stack.pop()
            if i == 0:
                if node in done:
                    continue
                if node in on_path:
                    cycle = path[path.index(node) :] + [node]
                    raise TopologyError(
                        f"{_at(origin[node])}: cycle {' -> '.join(reversed(cycle))}; a node"
                        " cannot be below itself"
                    )
                path.append(node)
                on_path.add(node)
            ups = parents.get(node, ())
            if i < len(ups):
                stack.append((node, i + 1))
                stack.append((ups[i], 0))
            else:
                done.add(node)
                on_path.discard(node)
                path.pop()


def _at(r: Route) -> str:
    return f"line {r.line}" if r.line else f"route '{_fold(r.parents)}: {_fold(r.children)}'"


def _fold(names: Iterable[str]) -> str:
    return str(NodeSet.fromlist(sorted(names), resolver=RESOLVER_NOGROUP))
