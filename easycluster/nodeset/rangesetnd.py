"""Sets of index vectors for names with several numbers, such as ``r[1-100]n[1-500]``,
with ClusterShell 1.10's ``RangeSetND`` API.

A ``RangeSetND`` holds either one product of ``RangeSet`` (what a parsed
``r[1-100]n[1-500]`` is, so parsing and counting never expand it) or a set of
tuples of index strings, folded back into vectors by ``ndfold.fold_vectors`` with
the same result as ClusterShell, so the same set prints the same text.

``RangeSetND([["0-10", "1-2"], ["5", "3"]])`` takes a list of vectors, each a list
of range-set texts, ``RangeSet`` objects or single indexes (ints), as ClusterShell's
does. ``str()`` is ClusterShell's: one line per vector, ``"0-4,6-10; 1-2\\n5; 1-3\\n"``.
"""

from __future__ import annotations

from itertools import product
from math import prod

from .indexes import check_expand, index_text
from .ndfold import fold_vectors
from .rangeset import RangeSet, autostep_value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

    Elem = Tuple[str, ...]  # one index per dimension
    # One dimension of a vector as a caller may give it: text, a RangeSet, or one index.
    DimLike = Union[str, RangeSet, int]

__all__ = ["RangeSetND"]


def _dim_rangeset(item: DimLike, pad: int, autostep: Optional[int], copy: bool) -> RangeSet:
    if isinstance(item, RangeSet):
        return item.copy() if copy else item
    if isinstance(item, str):
        return RangeSet(item, autostep=autostep)
    return RangeSet.fromone(item, pad, autostep)


class RangeSetND:
    """A set of index tuples, all with the same number of dimensions.

    ``RangeSetND(args=None, pads=None, autostep=None, copy_rangeset=True)``: ``args``
    is a list of vectors (see the module docstring), ``pads`` the zero-padding width
    per dimension for int indexes. ``vectors()`` gives the folded form (tuples of
    ``RangeSet``); iteration yields index-string tuples in that folded order.
    """

    __slots__ = ("_product", "_elems", "_folded", "_autostep")

    def __init__(
        self,
        args: Optional[Iterable[Sequence[DimLike]]] = None,
        pads: Optional[Sequence[int]] = None,
        autostep: Optional[float] = None,
        copy_rangeset: bool = True,
    ) -> None:
        self._autostep = autostep_value(autostep)
        self._product: Optional[Tuple[RangeSet, ...]] = None
        self._elems: Optional[Set[Elem]] = set()
        self._folded: Optional[List[Tuple[RangeSet, ...]]] = None
        vectors = []
        for vec in args or ():
            if not vec:
                continue
            widths = list(pads) if pads is not None else [0] * len(vec)
            vectors.append(
                tuple(
                    _dim_rangeset(item, pad, self._autostep, copy_rangeset)
                    for item, pad in zip(vec, widths)
                )
            )
        if len(vectors) == 1:
            self._product, self._elems = vectors[0], None
        else:
            for vec in vectors:
                self._elems.update(product(*[list(rs) for rs in vec]))

    @classmethod
    def from_product(cls, dims: Sequence[RangeSet], autostep: Optional[int] = None) -> RangeSetND:
        """The product of ``dims`` (owned, not copied), never expanded to count it."""
        inst = cls(autostep=autostep)
        inst._product, inst._elems = tuple(dims), None
        return inst

    @classmethod
    def from_elems(cls, elems: Set[Elem], autostep: Optional[int] = None) -> RangeSetND:
        """A set owning ``elems`` (tuples of index strings)."""
        inst = cls(autostep=autostep)
        inst._elems = elems
        return inst

    def elems(self) -> Set[Elem]:
        """The set of index tuples (built on demand; do not mutate)."""
        if self._elems is None:
            check_expand(len(self))  # (a product is counted, never listed, to count it)
            dims = self._product or ()
            self._elems = set(product(*[list(rs.striter()) for rs in dims]))
        return self._elems

    def _set_elems(self, elems: Set[Elem]) -> None:
        self._product, self._elems, self._folded = None, elems, None

    # -- properties -------------------------------------------------------------
    def get_autostep(self) -> Optional[int]:
        """The autostep threshold used when folding, or None when disabled."""
        return self._autostep

    def set_autostep(self, value: Optional[float]) -> None:
        """Set the autostep threshold (None or ``AUTOSTEP_DISABLED`` disables it)."""
        self._autostep = autostep_value(value)
        self._folded = None

    autostep = property(get_autostep, set_autostep)

    def dim(self) -> int:
        """Number of dimensions (0 when empty)."""
        if self._product is not None:
            return len(self._product)
        for elem in self.elems():
            return len(elem)
        return 0

    def pads(self) -> Tuple[int, ...]:
        """The widest zero padding of each dimension (0: not padded)."""
        widths = [[rs.padding or 0 for rs in vec] for vec in self.vectors()]
        return tuple(max(column) for column in zip(*widths))

    def __len__(self) -> int:
        if self._product is not None:
            return prod(len(rs) for rs in self._product)
        return len(self._elems or ())

    def __bool__(self) -> bool:
        return len(self) > 0

    # -- folding and iteration ----------------------------------------------------
    def vectors(self) -> List[Tuple[RangeSet, ...]]:
        """Folded vectors of RangeSet, in display order (do not mutate them)."""
        if self._folded is None:
            if self._product is not None:
                self._folded = [self._product]
            else:
                self._folded = [
                    tuple(RangeSet(dim, autostep=self._autostep) for dim in vec)
                    for vec in fold_vectors(self.elems())
                ]
        return self._folded

    def fold(self) -> None:
        """Fold now (folding otherwise happens when the vectors are first needed)."""
        self.vectors()

    def __iter__(self) -> Iterator[Elem]:
        for vec in self.vectors():
            yield from product(*[list(rs.striter()) for rs in vec])

    def iter_padding(self) -> Iterator[Tuple[Elem, List[Optional[int]]]]:
        """Each tuple with the padding of each dimension of its vector."""
        for vec in self.vectors():
            pads = [rs.padding for rs in vec]
            for elem in product(*[list(rs.striter()) for rs in vec]):
                yield elem, pads

    def __str__(self) -> str:
        return "".join("; ".join(map(str, vec)) + "\n" for vec in self.vectors())

    def __repr__(self) -> str:
        return f"RangeSetND({[[str(rs) for rs in vec] for vec in self.vectors()]!r})"

    def __getitem__(self, index: Union[int, slice]) -> Union[Elem, RangeSetND]:
        if isinstance(index, slice):
            return RangeSetND.from_elems(set(list(self)[index]), self._autostep)
        size = len(self)
        pos = index + size if index < 0 else index
        if not 0 <= pos < size:
            raise IndexError(f"{index} out of range")
        for vec in self.vectors():
            count = prod(len(rs) for rs in vec)
            if pos < count:
                # mixed-radix position inside this vector's product, last axis fastest
                elem = []
                for rs in reversed(vec):
                    pos, digit = divmod(pos, len(rs))
                    elem.append(str(rs[digit]))
                return tuple(reversed(elem))
            pos -= count
        raise IndexError(f"{index} out of range")  # pragma: no cover - counted above

    def index(
        self, elem: Sequence[Union[str, int]], start: int = 0, stop: Optional[int] = None
    ) -> int:
        """Position of the tuple ``elem`` (indexes as str or int) in iteration order,
        looked for in positions ``start`` to ``stop``; ValueError if absent."""
        if isinstance(elem, str) or not hasattr(elem, "__iter__"):
            raise TypeError("RangeSetND.index() argument must be a vector of indexes")
        target = tuple(index_text(i) or str(i) for i in elem)
        size = len(self)
        low = start + size if start < 0 else start
        high = size if stop is None else (stop + size if stop < 0 else stop)
        for pos, item in enumerate(self):
            if item == target and low <= pos < high:
                return pos
        raise ValueError(f"{tuple(elem)} is not in RangeSetND")

    def contiguous(self) -> Iterator[RangeSetND]:
        """Sub-sets whose indexes have no holes along any dimension."""
        for vec in self.vectors():
            for pieces in product(*[list(rs.contiguous()) for rs in vec]):
                yield RangeSetND.from_product(pieces, self._autostep)

    def __contains__(self, element: object) -> bool:
        """A tuple of indexes is in the set; a RangeSetND is a subset."""
        if isinstance(element, RangeSetND):
            return element.issubset(self)
        if self._product is not None and isinstance(element, tuple):
            return len(element) == len(self._product) and all(
                i in rs for i, rs in zip(element, self._product)
            )
        return element in self.elems()

    # -- set algebra -------------------------------------------------------------
    def copy(self) -> RangeSetND:
        """An independent copy."""
        if self._product is not None:
            return RangeSetND.from_product([rs.copy() for rs in self._product], self._autostep)
        return RangeSetND.from_elems(set(self.elems()), self._autostep)

    __copy__ = copy

    def union(self, other: RangeSetND) -> RangeSetND:
        """Tuples in either set."""
        return RangeSetND.from_elems(self.elems() | other.elems(), self._autostep)

    def intersection(self, other: RangeSetND) -> RangeSetND:
        """Tuples in both sets."""
        return RangeSetND.from_elems(self.elems() & other.elems(), self._autostep)

    def difference(self, other: RangeSetND) -> RangeSetND:
        """Tuples of this set not in ``other``."""
        return RangeSetND.from_elems(self.elems() - other.elems(), self._autostep)

    def symmetric_difference(self, other: RangeSetND) -> RangeSetND:
        """Tuples in exactly one of the sets."""
        return RangeSetND.from_elems(self.elems() ^ other.elems(), self._autostep)

    # In-place forms compute the new tuple set before replacing their own, so an
    # operation with the set itself (``rs -= rs``) is safe.
    def update(self, other: RangeSetND) -> None:
        """Add the tuples of ``other``."""
        self._set_elems(self.elems() | other.elems())

    union_update = update

    def intersection_update(self, other: RangeSetND) -> None:
        """Keep only the tuples also in ``other``."""
        self._set_elems(self.elems() & other.elems())

    def difference_update(self, other: RangeSetND, strict: bool = False) -> None:
        """Remove the tuples of ``other``; with ``strict``, KeyError if one is absent."""
        if strict and not other.elems() <= self.elems():
            raise KeyError(str(other.difference(self)).strip())
        self._set_elems(self.elems() - other.elems())

    def symmetric_difference_update(self, other: RangeSetND) -> None:
        """Keep the tuples in exactly one of the sets."""
        self._set_elems(self.elems() ^ other.elems())

    def __or__(self, other: RangeSetND) -> RangeSetND:
        return self.union(other) if isinstance(other, RangeSetND) else NotImplemented

    def __and__(self, other: RangeSetND) -> RangeSetND:
        return self.intersection(other) if isinstance(other, RangeSetND) else NotImplemented

    def __sub__(self, other: RangeSetND) -> RangeSetND:
        return self.difference(other) if isinstance(other, RangeSetND) else NotImplemented

    def __xor__(self, other: RangeSetND) -> RangeSetND:
        if not isinstance(other, RangeSetND):
            return NotImplemented
        return self.symmetric_difference(other)

    def __ior__(self, other: RangeSetND) -> RangeSetND:
        self.update(other)
        return self

    def __iand__(self, other: RangeSetND) -> RangeSetND:
        self.intersection_update(other)
        return self

    def __isub__(self, other: RangeSetND) -> RangeSetND:
        self.difference_update(other)
        return self

    def __ixor__(self, other: RangeSetND) -> RangeSetND:
        self.symmetric_difference_update(other)
        return self

    def issubset(self, other: RangeSetND) -> bool:
        """True if every tuple is also in ``other``."""
        return self.elems() <= other.elems()

    def issuperset(self, other: RangeSetND) -> bool:
        """True if every tuple of ``other`` is in this set."""
        return self.elems() >= other.elems()

    def __le__(self, other: object) -> bool:
        return self.issubset(other) if isinstance(other, RangeSetND) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.issuperset(other) if isinstance(other, RangeSetND) else NotImplemented

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RangeSetND):
            return NotImplemented
        return self.elems() < other.elems()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, RangeSetND):
            return NotImplemented
        return self.elems() > other.elems()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSetND):
            return NotImplemented
        return len(self) == len(other) and self.elems() == other.elems()

    # unhashable, like set (object's stub declares __hash__ a method, not Optional)
    __hash__ = None  # type: ignore[assignment]
