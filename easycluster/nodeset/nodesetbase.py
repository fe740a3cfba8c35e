"""``NodeSetBase``: the set of node names under ``NodeSet`` (algebra, order, folding).

A node set maps each pattern to its indexes (``pattern``): nothing for a name
without digits, a ``RangeSet`` for one index, a ``RangeSetND`` for several.
Iteration and folding follow ClusterShell 1.10: patterns in order of their ``%s``
form, indexes by length then value, several dimensions in folded-vector order.
``fold_axis`` (0-based axes, negative from the end) limits folding to those
dimensions; the others are written out one index at a time.

``NodeSetBase(pattern, rangeset)`` builds one pattern as ClusterShell's does
(``NodeSetBase("n%s", RangeSet("1-3"))``); ``NodeSet`` (``nodeset``) adds parsing,
groups and the rest.
"""

from __future__ import annotations

from itertools import chain, islice, product

from .indexes import check_expand
from .parse import Context, parse_expr, parse_names
from .pattern import DIGITS, apply_op, combine, copy_value, is_plain, sort_key
from .rangeset import RangeSet, autostep_value
from .rangesetnd import RangeSetND
from .std import RESOLVER_NOGROUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Type, TypeVar, Union

    from .pattern import Key, Value
    from .std import ResolverArg

    # What the named set methods accept: a node set, node set text, node names or None.
    NodeSetLike = Union[str, "NodeSetBase", Iterable[str], None]
    _S = TypeVar("_S", bound="NodeSetBase")

__all__ = ["NodeSetBase"]


def _dim_text(rs: RangeSet, autostep: Optional[int]) -> str:
    if len(rs) == 1:
        return next(iter(rs))
    return "[" + ",".join(rs.fold_texts(autostep)) + "]"


class NodeSetBase:
    """A set of node names sharing the machinery of ``NodeSet`` (see the module doc).

    Set operators take node sets; the named methods also accept node set text, an
    iterable of names, or None (nothing). ``len()`` counts without expanding.
    """

    __slots__ = ("_pats", "_autostep", "_resolver", "fold_axis")

    def __init__(
        self,
        pattern: Optional[str] = None,
        rangeset: Union[RangeSet, RangeSetND, None] = None,
        copy_rangeset: bool = True,
        autostep: Optional[float] = None,
        fold_axis: Optional[Sequence[int]] = None,
    ) -> None:
        self._pats: Dict[Key, Value] = {}
        self._autostep = autostep_value(autostep)
        self._resolver: ResolverArg = None
        self.fold_axis = fold_axis
        if pattern is not None:
            key = tuple(part.replace("%%", "%") for part in pattern.split("%s"))
            if rangeset is not None and copy_rangeset:
                rangeset = rangeset.copy()
            self._pats[key] = rangeset if rangeset else None

    def _new(self: _S, pats: Dict[Key, Value]) -> _S:
        inst = type(self).__new__(type(self))
        inst._pats = pats
        inst._autostep = self._autostep
        inst._resolver = self._resolver
        inst.fold_axis = self.fold_axis
        return inst

    def _coerce(self, other: NodeSetLike) -> Dict[Key, Value]:
        if isinstance(other, NodeSetBase):
            return other._pats
        if other is None:
            return {}
        if isinstance(other, str):
            return parse_expr(other, Context(self._resolver))
        return parse_names(list(other), Context(self._resolver))

    def _sorted_keys(self) -> List[Key]:
        return sorted(self._pats, key=sort_key)

    # -- properties -------------------------------------------------------------
    def get_autostep(self) -> Optional[int]:
        """The autostep threshold used when folding, or None when disabled."""
        return self._autostep

    def set_autostep(self, value: Optional[float]) -> None:
        """Set the autostep threshold (None or ``AUTOSTEP_DISABLED`` disables it)."""
        self._autostep = autostep_value(value)

    autostep = property(get_autostep, set_autostep)

    # -- size, membership, iteration ---------------------------------------------
    def __len__(self) -> int:
        return sum(1 if v is None else len(v) for v in self._pats.values())

    def __bool__(self) -> bool:
        return bool(self._pats)

    def __iter__(self) -> Iterator[str]:
        for key in self._sorted_keys():
            yield from self._iter_key(key)

    def striter(self) -> Iterator[str]:
        """Node names in order (as iteration)."""
        return iter(self)

    def _iter_key(self, key: Key) -> Iterator[str]:
        value = self._pats[key]
        if value is None:
            return iter((key[0],))
        if isinstance(value, RangeSet):
            return value.format_iter(key[0], key[1])
        return map(sort_key(key).__mod__, value)

    def nsiter(self: _S) -> Iterator[_S]:
        """Each node as a one-node set."""
        for name in self:
            yield self._new(self._coerce([name]))

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
        # not (not iterable) raises TypeError, as it always has
        return self.issuperset(other)  # type: ignore[arg-type]

    def __getitem__(self: _S, index: Union[int, slice]) -> Union[str, _S]:
        if isinstance(index, slice):
            check_expand(len(self))  # (a slice lists the names first)
            return self._new(self._coerce(list(self)[index]))
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

    def index(self, node: str, start: int = 0, stop: Optional[int] = None) -> int:
        """Position of the single node ``node`` in iteration order, looked for in
        positions ``start`` to ``stop``; ValueError if absent or not one node."""
        one = self._new(dict(self._coerce(node)))
        if len(one) != 1:
            raise ValueError("index() argument must be a single node")
        node = next(iter(one))
        size = len(self)
        low = start + size if start < 0 else start
        high = size if stop is None else (stop + size if stop < 0 else stop)
        if node in self:
            ((key, index),) = one._pats.items()
            pos = 0  # the nodes of the patterns before this one are counted, not listed
            for other in self._sorted_keys():
                if other == key:
                    break
                value = self._pats[other]
                pos += 1 if value is None else len(value)
            value = self._pats[key]
            if isinstance(value, RangeSet) and isinstance(index, RangeSet):
                pos += value.index(next(iter(index)))
            elif value is not None:
                pos += next(i for i, name in enumerate(self._iter_key(key)) if name == node)
            if low <= pos < high:
                return pos
        raise ValueError(f"{node!r} is not in NodeSet")

    # -- text -----------------------------------------------------------------
    def _axes(self, dims: int) -> Optional[List[int]]:
        if self.fold_axis is None:
            return None
        return [int(x) % dims for x in self.fold_axis if -dims <= int(x) < dims]

    def _fold_key(self, key: Key) -> Iterator[str]:
        value = self._pats[key]
        if value is None:
            yield key[0]
            return
        vectors = [(value,)] if isinstance(value, RangeSet) else value.vectors()
        axes = self._axes(len(key) - 1)
        for vec in vectors:
            # each dimension: one folded text, or (axis not folded) each index alone
            choices = [
                [_dim_text(rs, self._autostep)]
                if axes is None or axis in axes or len(rs) == 1
                else list(rs.striter())
                for axis, rs in enumerate(vec)
            ]
            # ClusterShell writes the last dimension slowest: product over reversed axes
            for texts in product(*reversed(choices)):
                parts = [key[0]]
                for text, tail in zip(reversed(texts), key[1:]):
                    parts.append(text)
                    parts.append(tail)
                yield "".join(parts)

    def __str__(self) -> str:
        return ",".join(chain.from_iterable(self._fold_key(k) for k in self._sorted_keys()))

    def fold(self) -> str:
        """The folded text (as ``str()``)."""
        return str(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def expand(self) -> List[str]:
        """Every node name, in order (RangeSetTooLarge above ``EXPAND_LIMIT``)."""
        check_expand(len(self))
        return list(self)

    # -- set algebra -------------------------------------------------------------
    def _op(self: _S, op: str, other: NodeSetLike) -> _S:
        mine, theirs = self._pats, self._coerce(other)
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

    def copy(self: _S) -> _S:
        """An independent copy."""
        return self._new({k: copy_value(v) for k, v in self._pats.items()})

    __copy__ = copy

    def union(self: _S, other: NodeSetLike) -> _S:
        """Nodes in either set."""
        return self._op("|", other)

    def intersection(self: _S, other: NodeSetLike) -> _S:
        """Nodes in both sets."""
        return self._op("&", other)

    def difference(self: _S, other: NodeSetLike) -> _S:
        """Nodes of this set not in ``other``."""
        return self._op("-", other)

    def symmetric_difference(self: _S, other: NodeSetLike) -> _S:
        """Nodes in exactly one of the sets."""
        return self._op("^", other)

    # The in-place forms may be given the set itself (``ns -= ns``): apply_op reads
    # a copy then.
    def update(self, other: NodeSetLike) -> None:
        """Add the nodes of ``other``."""
        apply_op(self._pats, "|", self._coerce(other))

    def updaten(self, others: Iterable[NodeSetLike]) -> None:
        """Add the nodes of each item of ``others``."""
        for other in others:
            self.update(other)

    def intersection_update(self, other: NodeSetLike) -> None:
        """Keep only nodes also in ``other``."""
        apply_op(self._pats, "&", self._coerce(other))

    def difference_update(self, other: NodeSetLike, strict: bool = False) -> None:
        """Remove the nodes of ``other``; with ``strict``, KeyError if one is absent."""
        theirs = self._coerce(other)
        if strict:
            missing = self._new(dict(theirs)).difference(self)
            if missing:
                raise KeyError(str(missing))
        apply_op(self._pats, "-", theirs)

    def symmetric_difference_update(self, other: NodeSetLike) -> None:
        """Keep nodes in exactly one of the sets."""
        apply_op(self._pats, "^", self._coerce(other))

    def __or__(self: _S, other: NodeSetBase) -> _S:
        return self.union(other) if isinstance(other, NodeSetBase) else NotImplemented

    def __and__(self: _S, other: NodeSetBase) -> _S:
        return self.intersection(other) if isinstance(other, NodeSetBase) else NotImplemented

    def __sub__(self: _S, other: NodeSetBase) -> _S:
        return self.difference(other) if isinstance(other, NodeSetBase) else NotImplemented

    def __xor__(self: _S, other: NodeSetBase) -> _S:
        if not isinstance(other, NodeSetBase):
            return NotImplemented
        return self.symmetric_difference(other)

    def __ior__(self: _S, other: NodeSetLike) -> _S:
        self.update(other)
        return self

    def __iand__(self: _S, other: NodeSetLike) -> _S:
        self.intersection_update(other)
        return self

    def __isub__(self: _S, other: NodeSetLike) -> _S:
        self.difference_update(other)
        return self

    def __ixor__(self: _S, other: NodeSetLike) -> _S:
        self.symmetric_difference_update(other)
        return self

    def issubset(self, other: NodeSetLike) -> bool:
        """True if every node is also in ``other``."""
        theirs = self._coerce(other)
        for key, value in self._pats.items():
            if key not in theirs:
                return False
            # one key, one number of indexes: both RangeSet or both RangeSetND
            if value is not None and not value.issubset(theirs[key]):  # type: ignore[arg-type]
                return False
        return True

    def issuperset(self, other: NodeSetLike) -> bool:
        """True if every node of ``other`` is in this set."""
        return self._new(dict(self._coerce(other))).issubset(self)

    def __le__(self, other: object) -> bool:
        return self.issubset(other) if isinstance(other, NodeSetBase) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.issuperset(other) if isinstance(other, NodeSetBase) else NotImplemented

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, NodeSetBase):
            return NotImplemented
        return len(self) < len(other) and self.issubset(other)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, NodeSetBase):
            return NotImplemented
        return len(self) > len(other) and self.issuperset(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeSetBase):
            return NotImplemented
        return self._pats.keys() == other._pats.keys() and all(
            v is None or v == other._pats[k] for k, v in self._pats.items()
        )

    # unhashable, like set (object's stub declares __hash__ a method, not Optional)
    __hash__ = None  # type: ignore[assignment]

    def add(self, nodes: NodeSetLike) -> None:
        """Add a node (or node set text)."""
        self.update(nodes)

    def remove(self, nodes: NodeSetLike) -> None:
        """Remove nodes; KeyError if any of them is absent."""
        self.difference_update(nodes, strict=True)

    def discard(self, nodes: NodeSetLike) -> None:
        """Remove nodes that are present."""
        self.difference_update(nodes)

    def clear(self) -> None:
        """Remove every node."""
        self._pats = {}

    # -- cutting up --------------------------------------------------------------
    def contiguous(self: _S) -> Iterator[_S]:
        """Sub-sets whose indexes are contiguous (per pattern, per dimension)."""
        for key in self._sorted_keys():
            value = self._pats[key]
            if value is None:
                yield self._new({key: None})
            elif isinstance(value, RangeSet):
                for part in value.contiguous():
                    yield self._new({key: part})
            else:
                for nd in value.contiguous():
                    yield self._new({key: nd})

    def __reduce__(self) -> tuple[Type[NodeSetBase], tuple[()], dict[str, object]]:
        state: Dict[str, object] = {
            "text": str(self),
            "autostep": self._autostep,
            "fold_axis": self.fold_axis,
        }
        return (type(self), (), state)

    def __setstate__(self, state: Dict[str, object]) -> None:
        # the text was folded by this class: groups are not read again (no resolver)
        self._pats = parse_expr(str(state["text"]), Context(RESOLVER_NOGROUP))
        self._autostep = state["autostep"]  # type: ignore[assignment]
        self._resolver = None
        self.fold_axis = state["fold_axis"]  # type: ignore[assignment]
