"""Node sets: ClusterShell's notation for many host names, such as ``node[1-100]``.

    >>> ns = NodeSet("node[1-4],login")
    >>> str(ns - NodeSet("node[2-3]")), len(ns), list(NodeSet("n[01-02]"))
    ('login,node[1,4]', 5, ['n01', 'n02'])

Notation (see docs/nodeset.md): a name's digit runs are its indexes and the rest
its *pattern*; ``prefix[ranges]suffix`` gives many indexes (``1-5,7,10-20/5``,
``001-100`` keeps zero padding); several brackets make several dimensions
(``r[1-100]n[1-500]``); ``,`` union, ``!`` difference, ``&`` intersection and ``^``
symmetric difference are read left to right; ``@group``, ``@source:group``,
``@source:*``, ``@*`` and ``@@source`` (the group names) need a ``GroupResolver``.

A NodeSet maps each pattern to its indexes: nothing for a name without digits, a
``RangeSet`` for one index, a ``RangeSetND`` for several. Iteration and folding
follow ClusterShell 1.10: patterns in order of their ``%s`` form, indexes by length
then value, several dimensions in folded-vector order.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from itertools import chain, islice, product
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Type, Union

from ..errors import NodeSetError, NodeSetParseError
from .groups import GroupResolver
from .pattern import (
    DIGITS,
    NOT_PLAIN,
    SCAN,
    Key,
    Value,
    apply_op,
    combine,
    copy_value,
    is_plain,
    names_to_pats,
    parse_pattern,
    sort_key,
)
from .rangeset import RangeSet, split_sequence
from .rangesetnd import RangeSetND

__all__ = ["NodeSet", "RangeSet", "RangeSetND", "expand", "fold", "count"]

Nodes = Union[str, "NodeSet", Iterable[str], None]
# What the named set methods accept: a NodeSet, node set text or node names.
NodeSetLike = Union[str, "NodeSet", Iterable[str]]

_MAX_DEPTH = 16


class _Context:
    """What parsing needs besides the text: the resolver, default source, depth."""

    __slots__ = ("resolver", "source", "depth")

    def __init__(self, resolver: Optional[GroupResolver], source: Optional[str], depth: int):
        self.resolver, self.source, self.depth = resolver, source, depth
        if depth > _MAX_DEPTH:
            raise NodeSetError("node groups nested too deeply (a group includes itself?)")


def _parse_group(text: str, ctx: _Context) -> Dict[Key, Value]:
    resolver = ctx.resolver
    body = text[1:]
    if body.startswith("@"):  # @@source: the names of the source's groups
        source = body[1:] or None
        if resolver is None or not resolver.has_source(source or ctx.source):
            raise NodeSetParseError(text, "unknown group source")
        return names_to_pats(resolver.groups(source or ctx.source))
    source, sep, name = body.rpartition(":")
    if sep and not source:
        raise NodeSetParseError(text, "empty group source name")
    if not name:
        raise NodeSetParseError(text, "empty group name")
    source = source or ctx.source
    if resolver is None or not resolver.has_source(source):
        raise NodeSetParseError(
            text, "unknown group source" if resolver else "no group source configured"
        )
    sub = _Context(resolver, source or resolver.default, ctx.depth + 1)
    if name == "*":
        return _parse_expr(resolver.all_nodes(source), sub)
    pats: Dict[Key, Value] = {}
    names = [name] if "[" not in name else list(NodeSet(name))
    for group in names:
        apply_op(pats, "|", _parse_expr(resolver.resolve(group, source), sub))
    return pats


def _parse_operand(text: str, ctx: _Context) -> Dict[Key, Value]:
    if text.startswith("@"):
        return _parse_group(text, ctx)
    if "*" in text or "?" in text:
        if ctx.resolver is None or not ctx.resolver.has_source(ctx.source):
            raise NodeSetParseError(text, "wildcards need a group source listing all nodes")
        every = NodeSet(ctx.resolver.all_nodes(ctx.source), resolver=ctx.resolver)
        return names_to_pats([n for n in every if fnmatchcase(n, text)])
    if "[" in text or "]" in text:
        return parse_pattern(text)
    if any(c.isspace() for c in text):
        raise NodeSetParseError(text, "space inside a node name")
    return names_to_pats([text])


def _parse_expr(text: str, ctx: _Context) -> Dict[Key, Value]:
    """Parse a whole node set expression, operators read left to right."""
    result: Dict[Key, Value] = {}
    if not text.strip():
        return result
    pending: List[str] = []  # plain names waiting to be unioned in bulk
    op, start, depth = ",", 0, 0

    def take(operand: str, op: str) -> None:
        operand = operand.strip()
        if not operand:
            raise NodeSetParseError(text, f"missing node set operand with {op!r} operator")
        if op == "," and is_plain(operand):
            pending.append(operand)
            return
        if pending:
            apply_op(result, "|", names_to_pats(pending))
            pending.clear()
        apply_op(result, {",": "|", "!": "-", "&": "&", "^": "^"}[op], _parse_operand(operand, ctx))

    for match in SCAN.finditer(text):
        char = match.group()
        if char == "[":
            if depth:
                raise NodeSetParseError(text[start:], "illegal opening bracket")
            depth = 1
        elif char == "]":
            if not depth:
                raise NodeSetParseError(text[start:].strip(), "illegal closing bracket")
            depth = 0
        elif not depth:
            take(text[start : match.start()], op)
            op, start = char, match.end()
    if depth:
        raise NodeSetParseError(text[start:].strip(), "missing bracket")
    take(text[start:], op)
    if pending:
        apply_op(result, "|", names_to_pats(pending))
    return result


# -- the NodeSet class ------------------------------------------------------------
class NodeSet:
    """An ordered set of unique node names written in ClusterShell's notation.

    ``NodeSet(text, autostep=None, resolver=None)`` parses ``text`` (groups need a
    ``resolver``); ``NodeSet(other_nodeset)`` copies; an iterable of strings is
    taken as ``fromlist``. Parse errors raise ``NodeSetParseError`` whose ``part``
    is the piece that failed; group source failures raise ``GroupSourceError``.
    Set operators take NodeSets; the named methods also accept strings.
    """

    __slots__ = ("_pats", "autostep", "resolver")

    def __init__(
        self,
        nodes: Nodes = None,
        autostep: Optional[int] = None,
        resolver: Optional[GroupResolver] = None,
    ) -> None:
        self._pats: Dict[Key, Value] = {}
        self.autostep = autostep
        self.resolver = resolver
        if nodes is None:
            return
        if isinstance(nodes, NodeSet):
            self._pats = {k: copy_value(v) for k, v in nodes._pats.items()}
        elif isinstance(nodes, str):
            self._pats = _parse_expr(nodes, _Context(resolver, None, 0))
        else:
            self._pats = NodeSet.fromlist(nodes, resolver=resolver)._pats

    @classmethod
    def fromlist(
        cls,
        items: Iterable[str],
        autostep: Optional[int] = None,
        resolver: Optional[GroupResolver] = None,
    ) -> NodeSet:
        """Union of node set strings; plain names are parsed in bulk (fast)."""
        items = list(items)
        inst = cls(autostep=autostep, resolver=resolver)
        joined = "\n".join(items)
        if (
            joined.count("\n") == len(items) - 1
            and NOT_PLAIN.search(joined.replace("\n", "")) is None
            and all(items)
        ):
            inst._pats = names_to_pats(items)
        else:
            ctx = _Context(resolver, None, 0)
            for item in items:
                apply_op(inst._pats, "|", _parse_expr(item, ctx))
        return inst

    @classmethod
    def fromall(
        cls, resolver: GroupResolver, source: Optional[str] = None, autostep: Optional[int] = None
    ) -> NodeSet:
        """Every node of a group source (its ``all`` upcall or the union of its groups)."""
        return cls(resolver.all_nodes(source), autostep=autostep, resolver=resolver)

    def _new(self, pats: Dict[Key, Value]) -> NodeSet:
        inst = NodeSet(autostep=self.autostep, resolver=self.resolver)
        inst._pats = pats
        return inst

    def _coerce(self, other: NodeSetLike) -> NodeSet:
        if isinstance(other, NodeSet):
            return other
        if isinstance(other, str):
            return NodeSet(other, resolver=self.resolver)
        return NodeSet.fromlist(other, resolver=self.resolver)

    def _sorted_keys(self) -> List[Key]:
        return sorted(self._pats, key=sort_key)

    # -- size, membership, iteration ---------------------------------------------
    def __len__(self) -> int:
        return sum(1 if v is None else len(v) for v in self._pats.values())

    def __bool__(self) -> bool:
        return bool(self._pats)

    def __iter__(self) -> Iterator[str]:
        for key in self._sorted_keys():
            yield from self._iter_key(key)

    striter = __iter__

    def _iter_key(self, key: Key) -> Iterator[str]:
        value = self._pats[key]
        if value is None:
            return iter((key[0],))
        if isinstance(value, RangeSet):
            return value.format_iter(key[0], key[1])
        fmt = sort_key(key)
        return map(fmt.__mod__, value)

    def nsiter(self) -> Iterator[NodeSet]:
        """Each node as a one-node NodeSet."""
        return (NodeSet(name) for name in self)

    def __contains__(self, other: object) -> bool:
        if isinstance(other, str) and is_plain(other):
            parts = DIGITS.split(other)
            key = tuple(parts[0::2])
            if key not in self._pats:
                return False
            value = self._pats[key]
            if value is None:
                return True
            if isinstance(value, RangeSet):
                return parts[1] in value
            return tuple(parts[1::2]) in value
        # `in` takes any object: anything else is read as nodes, and one that is
        # not (not iterable) raises TypeError in fromlist, as it always has
        return self.issuperset(other)  # type: ignore[arg-type]

    def __getitem__(self, index: Union[int, slice]) -> Union[str, NodeSet]:
        if isinstance(index, slice):
            return NodeSet.fromlist(list(self)[index], autostep=self.autostep)
        size = len(self)
        pos = index + size if index < 0 else index
        if not 0 <= pos < size:
            raise IndexError("NodeSet index out of range")
        for key in self._sorted_keys():
            value = self._pats[key]
            count = 1 if value is None else len(value)
            if pos < count:
                if isinstance(value, RangeSet):
                    return f"{key[0]}{value[pos]}{key[1]}"
                return next(islice(self._iter_key(key), pos, None))
            pos -= count
        raise IndexError("NodeSet index out of range")  # pragma: no cover

    def index(self, node: str) -> int:
        """Position of ``node`` in iteration order; ValueError if absent."""
        for pos, name in enumerate(self):
            if name == node:
                return pos
        raise ValueError(f"{node!r} is not in NodeSet")

    # -- text -----------------------------------------------------------------
    def _fold_key(self, key: Key) -> Iterator[str]:
        value = self._pats[key]
        if value is None:
            yield key[0]
        elif isinstance(value, RangeSet):
            yield key[0] + _dim_text(value, self.autostep) + key[1]
        else:
            for vec in value.vectors():
                parts = [key[0]]
                for rs, text in zip(vec, key[1:]):
                    parts.append(_dim_text(rs, self.autostep))
                    parts.append(text)
                yield "".join(parts)

    def __str__(self) -> str:
        return ",".join(chain.from_iterable(self._fold_key(k) for k in self._sorted_keys()))

    fold = __str__

    def __repr__(self) -> str:
        return f"NodeSet({str(self)!r})"

    def expand(self) -> List[str]:
        """Every node name, in order."""
        return list(self)

    def __reduce__(self) -> Tuple[Type[NodeSet], Tuple[str, Optional[int]]]:
        return (NodeSet, (str(self), self.autostep))

    # -- set algebra -------------------------------------------------------------
    def _op(self, op: str, other: NodeSetLike) -> NodeSet:
        mine, theirs = self._pats, self._coerce(other)._pats
        pats: Dict[Key, Value] = {}
        for key, value in mine.items():
            if key not in theirs:
                if op != "&":
                    pats[key] = copy_value(value)
            elif value is not None:
                merged = combine(op, value, theirs[key])
                if merged:
                    pats[key] = merged
            elif op in "|&":
                pats[key] = None
        if op in "|^":
            for key, value in theirs.items():
                if key not in mine:
                    pats[key] = copy_value(value)
        return self._new(pats)

    def copy(self) -> NodeSet:
        """An independent copy."""
        return self._new({k: copy_value(v) for k, v in self._pats.items()})

    __copy__ = copy

    def union(self, other: NodeSetLike) -> NodeSet:
        """Nodes in either set."""
        return self._op("|", other)

    def intersection(self, other: NodeSetLike) -> NodeSet:
        """Nodes in both sets."""
        return self._op("&", other)

    def difference(self, other: NodeSetLike) -> NodeSet:
        """Nodes of this set not in ``other``."""
        return self._op("-", other)

    def symmetric_difference(self, other: NodeSetLike) -> NodeSet:
        """Nodes in exactly one of the sets."""
        return self._op("^", other)

    def update(self, other: NodeSetLike) -> None:
        """Add the nodes of ``other``."""
        apply_op(self._pats, "|", self._coerce(other)._pats)

    def updaten(self, others: Iterable[NodeSetLike]) -> None:
        """Add the nodes of each item of ``others``."""
        for other in others:
            self.update(other)

    def intersection_update(self, other: NodeSetLike) -> None:
        """Keep only nodes also in ``other``."""
        apply_op(self._pats, "&", self._coerce(other)._pats)

    def difference_update(self, other: NodeSetLike) -> None:
        """Remove the nodes of ``other``."""
        apply_op(self._pats, "-", self._coerce(other)._pats)

    def symmetric_difference_update(self, other: NodeSetLike) -> None:
        """Keep nodes in exactly one of the sets."""
        apply_op(self._pats, "^", self._coerce(other)._pats)

    def __or__(self, other: NodeSet) -> NodeSet:
        return self.union(other) if isinstance(other, NodeSet) else NotImplemented

    def __and__(self, other: NodeSet) -> NodeSet:
        return self.intersection(other) if isinstance(other, NodeSet) else NotImplemented

    def __sub__(self, other: NodeSet) -> NodeSet:
        return self.difference(other) if isinstance(other, NodeSet) else NotImplemented

    def __xor__(self, other: NodeSet) -> NodeSet:
        return self.symmetric_difference(other) if isinstance(other, NodeSet) else NotImplemented

    def __ior__(self, other: NodeSetLike) -> NodeSet:
        self.update(other)
        return self

    def __iand__(self, other: NodeSetLike) -> NodeSet:
        self.intersection_update(other)
        return self

    def __isub__(self, other: NodeSetLike) -> NodeSet:
        self.difference_update(other)
        return self

    def __ixor__(self, other: NodeSetLike) -> NodeSet:
        self.symmetric_difference_update(other)
        return self

    def issubset(self, other: NodeSetLike) -> bool:
        """True if every node is also in ``other``."""
        theirs = self._coerce(other)._pats
        for key, value in self._pats.items():
            if key not in theirs:
                return False
            # one key, one number of indexes: both RangeSet or both RangeSetND
            if value is not None and not value.issubset(theirs[key]):  # type: ignore[arg-type]
                return False
        return True

    def issuperset(self, other: NodeSetLike) -> bool:
        """True if every node of ``other`` is in this set."""
        return self._coerce(other).issubset(self)

    def __le__(self, other: object) -> bool:
        return self.issubset(other) if isinstance(other, NodeSet) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.issuperset(other) if isinstance(other, NodeSet) else NotImplemented

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, NodeSet):
            return NotImplemented
        return len(self) < len(other) and self.issubset(other)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, NodeSet):
            return NotImplemented
        return len(self) > len(other) and self.issuperset(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeSet):
            return NotImplemented
        return self._pats.keys() == other._pats.keys() and all(
            v is None or v == other._pats[k] for k, v in self._pats.items()
        )

    # unhashable, like set (object's stub declares __hash__ a method, not Optional)
    __hash__ = None  # type: ignore[assignment]

    def add(self, nodes: NodeSetLike) -> None:
        """Add a node (or node set string)."""
        self.update(nodes)

    def remove(self, nodes: NodeSetLike) -> None:
        """Remove nodes; KeyError if any of them is absent."""
        other = self._coerce(nodes)
        if not other.issubset(self):
            raise KeyError(str(other - self))
        self.difference_update(other)

    def discard(self, nodes: NodeSetLike) -> None:
        """Remove nodes that are present."""
        self.difference_update(nodes)

    def clear(self) -> None:
        """Remove every node."""
        self._pats = {}

    # -- cutting up --------------------------------------------------------------
    def split(self, parts: int) -> Iterator[NodeSet]:
        """Up to ``parts`` NodeSets of nearly equal size (larger first), in order."""
        for chunk in split_sequence(list(self), parts):
            yield NodeSet.fromlist(chunk, autostep=self.autostep)

    def contiguous(self) -> Iterator[NodeSet]:
        """Sub-sets whose indexes are contiguous (per pattern, per dimension)."""
        for key in self._sorted_keys():
            value = self._pats[key]
            if value is None:
                yield self._new({key: None})
            elif isinstance(value, RangeSet):
                for part in value.contiguous():
                    yield self._new({key: part})
            else:
                for vec in value.vectors():
                    for pieces in product(*[list(rs.contiguous()) for rs in vec]):
                        yield self._new({key: RangeSetND(pieces)})

    # -- groups ---------------------------------------------------------------
    def regroup(
        self,
        resolver: Optional[GroupResolver] = None,
        source: Optional[str] = None,
        noprefix: bool = False,
    ) -> str:
        """Fold using the largest groups of ``source`` fully inside this set.

        Groups are taken largest first (then by name) as long as they do not
        overlap the groups already taken; the nodes left are folded after them.
        """
        resolver = resolver or self.resolver
        if resolver is None:
            raise NodeSetError("regroup needs a group resolver")
        explicit = source is not None and source != resolver.default
        prefix = "@" if noprefix or not explicit else f"@{source}:"
        candidates = []
        for group in resolver.groups(source):
            members = NodeSet(resolver.resolve(group, source), resolver=resolver)
            if members and members.issubset(self):
                candidates.append((-len(members), group, members))
        candidates.sort(key=lambda item: (item[0], item[1]))
        rest = self.copy()
        chosen = []
        for _, group, members in candidates:
            if members.issubset(rest):
                chosen.append(prefix + group)
                rest.difference_update(members)
        return ",".join(chosen + ([str(rest)] if rest else []))

    def groups(
        self, resolver: Optional[GroupResolver] = None, source: Optional[str] = None
    ) -> Dict[str, Tuple[NodeSet, NodeSet]]:
        """``{group: (group nodes, nodes of this set in it)}`` for groups meeting this set."""
        resolver = resolver or self.resolver
        if resolver is None:
            raise NodeSetError("groups() needs a group resolver")
        found = {}
        for group in resolver.groups(source):
            members = NodeSet(resolver.resolve(group, source), resolver=resolver)
            common = members & self
            if common:
                found[group] = (members, common)
        return found


def _dim_text(rs: RangeSet, autostep: Optional[int]) -> str:
    if len(rs) == 1:
        return next(iter(rs))
    return "[" + ",".join(rs.fold_texts(autostep)) + "]"


def expand(text: str, resolver: Optional[GroupResolver] = None) -> List[str]:
    """Every name of a node set string, in order."""
    return list(NodeSet(text, resolver=resolver))


def fold(nodes: Union[str, Iterable[str]], resolver: Optional[GroupResolver] = None) -> str:
    """The folded text of a node set string or of an iterable of names."""
    if isinstance(nodes, str):
        return str(NodeSet(nodes, resolver=resolver))
    return str(NodeSet.fromlist(nodes, resolver=resolver))


def count(text: str, resolver: Optional[GroupResolver] = None) -> int:
    """Number of nodes of a node set string (without expanding ranges)."""
    return len(NodeSet(text, resolver=resolver))
