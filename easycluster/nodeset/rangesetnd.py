"""Sets of index vectors for names with several numbers, such as ``r[1-100]n[1-500]``.

A ``RangeSetND`` holds either one product of ``RangeSet`` (what a parsed
``r[1-100]n[1-500]`` is, so parsing and counting never expand it) or a set of
tuples of index strings. Folding turns the tuples back into a list of vectors
(one ``RangeSet`` per dimension) with the same result as ClusterShell 1.10:

1. sort the tuples by their index strings and scan them once, growing the current
   vector while the next tuple differs from it along one dimension only;
2. repeat passes over the vectors, sorted largest first, merging two vectors when
   they differ along at most one dimension (one range set then being disjoint from,
   or containing, the other): first only neighbours, then, when that stops
   changing anything, every pair.

Step 1 does the bulk of the work (usually folding along the last dimension) in
one pass with tuple comparisons; step 2 then works on few vectors.
"""

from __future__ import annotations

from itertools import product
from math import prod
from typing import FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from .rangeset import RangeSet

__all__ = ["RangeSetND"]

Vector = Tuple[FrozenSet[str], ...]
Elem = Tuple[str, ...]  # one index per dimension


def _index_key(text: str) -> Tuple[int, str]:
    return (len(text), text)


def _vector_key(vec: Vector) -> Tuple[int, Tuple[Tuple[int, str, str], ...]]:
    keys: List[Tuple[int, str, str]] = []
    for dim in vec:
        if len(dim) == 1:
            (only,) = dim
            keys.append((-1, only, only))
        else:
            keys.append((-len(dim), min(dim, key=_index_key), max(dim, key=_index_key)))
    return (-prod(len(dim) for dim in vec), tuple(keys))


def _merge(vec1: Vector, vec2: Vector) -> Optional[Vector]:
    """The merged vector if the two differ along at most one dimension, else None."""
    merged = None
    for pos, (dim1, dim2) in enumerate(zip(vec1, vec2)):
        if dim1 == dim2:
            continue
        if merged is not None:
            return None
        if dim1.isdisjoint(dim2):
            merged = (pos, dim1 | dim2)
        elif dim1 > dim2:
            merged = (pos, dim1)
        elif dim1 < dim2:
            merged = (pos, dim2)
        else:
            return None
    if merged is None:
        return vec1
    pos, dim = merged
    return vec1[:pos] + (dim,) + vec1[pos + 1 :]


def _first_pass(elems: Sequence[Tuple[str, ...]]) -> Tuple[List[Vector], bool]:
    """Scan sorted tuples, growing a vector along one dimension while possible."""
    vectors: List[Vector] = []
    changed = False
    it = iter(elems)
    cur = next(it)
    axis = -1
    members: List[str] = []

    def emit() -> None:
        if axis < 0:
            vectors.append(tuple(frozenset((i,)) for i in cur))
        else:
            vec = [frozenset((i,)) for i in cur]
            vec[axis] = frozenset(members)
            vectors.append(tuple(vec))

    for elem in it:
        if axis >= 0:
            if elem[:axis] == cur[:axis] and elem[axis + 1 :] == cur[axis + 1 :]:
                members.append(elem[axis])
                continue
        else:
            diff = [pos for pos, (a, b) in enumerate(zip(cur, elem)) if a != b]
            if len(diff) == 1:
                axis = diff[0]
                members = [cur[axis], elem[axis]]
                changed = True
                continue
        emit()
        cur, axis = elem, -1
    emit()
    return vectors, changed


def fold_vectors(elems: Iterable[Tuple[str, ...]]) -> List[Vector]:
    """Fold index tuples into vectors of index sets, in ClusterShell's order."""
    ordered = sorted(elems)
    if not ordered:
        return []
    vectors, changed = _first_pass(ordered)
    full = not changed
    changed = True
    while changed:
        changed = False
        vectors.sort(key=_vector_key)
        i1 = 0
        while i1 + 1 < len(vectors):
            item1 = vectors[i1]
            i2 = i1 + 1
            i1 += 1
            while i2 < len(vectors):
                merged = _merge(item1, vectors[i2])
                if merged is not None:
                    changed = True
                    vectors[i1 - 1] = item1 = merged
                    del vectors[i2]
                elif not full:
                    break
                else:
                    i2 += 1
        if not changed and not full:
            changed = full = True
    return vectors


class RangeSetND:
    """A set of index tuples (all of the same length, two or more).

    ``vectors()`` gives the folded form (tuples of ``RangeSet``); iteration yields
    index tuples in that folded order, like ClusterShell.
    """

    __slots__ = ("_product", "_elems", "_folded", "autostep")

    def __init__(
        self,
        vector: Optional[Sequence[RangeSet]] = None,
        elems: Optional[Set[Elem]] = None,
        autostep: Optional[int] = None,
    ) -> None:
        self._product: Optional[Tuple[RangeSet, ...]] = tuple(vector) if vector else None
        self._elems: Optional[Set[Elem]] = elems if elems is not None or vector else set()
        if vector:
            self._elems = None
        self._folded: Optional[List[Tuple[RangeSet, ...]]] = None
        self.autostep = autostep

    def elems(self) -> Set[Elem]:
        """The set of index tuples (built on demand; do not mutate)."""
        if self._elems is None:
            if self._product is None:
                raise ValueError("RangeSetND: neither elements nor a product to build them")
            self._elems = set(product(*[list(rs.striter()) for rs in self._product]))
        return self._elems

    def dim(self) -> int:
        """Number of dimensions (0 if empty and unknown)."""
        if self._product is not None:
            return len(self._product)
        for elem in self.elems():
            return len(elem)
        return 0

    def __len__(self) -> int:
        if self._product is not None:
            return prod(len(rs) for rs in self._product)
        return len(self._elems or ())

    def __bool__(self) -> bool:
        return len(self) > 0

    def vectors(self) -> List[Tuple[RangeSet, ...]]:
        """Folded vectors of RangeSet, in display order."""
        if self._folded is None:
            if self._product is not None:
                self._folded = [self._product]
            else:
                self._folded = [
                    tuple(RangeSet(dim, autostep=self.autostep) for dim in vec)
                    for vec in fold_vectors(self.elems())
                ]
        return self._folded

    def __iter__(self) -> Iterator[Tuple[str, ...]]:
        for vec in self.vectors():
            yield from product(*[list(rs.striter()) for rs in vec])

    def __contains__(self, elem: object) -> bool:
        if self._product is not None and isinstance(elem, tuple):
            return len(elem) == len(self._product) and all(
                i in rs for i, rs in zip(elem, self._product)
            )
        return elem in self.elems()

    def copy(self) -> RangeSetND:
        """An independent copy."""
        if self._product is not None:
            return RangeSetND(self._product, autostep=self.autostep)
        return RangeSetND(elems=set(self.elems()), autostep=self.autostep)

    def _new(self, elems: Set[Elem]) -> RangeSetND:
        return RangeSetND(elems=elems, autostep=self.autostep)

    def union(self, other: RangeSetND) -> RangeSetND:
        """Tuples in either set."""
        return self._new(self.elems() | other.elems())

    def intersection(self, other: RangeSetND) -> RangeSetND:
        """Tuples in both sets."""
        return self._new(self.elems() & other.elems())

    def difference(self, other: RangeSetND) -> RangeSetND:
        """Tuples of this set not in ``other``."""
        return self._new(self.elems() - other.elems())

    def symmetric_difference(self, other: RangeSetND) -> RangeSetND:
        """Tuples in exactly one of the sets."""
        return self._new(self.elems() ^ other.elems())

    def issubset(self, other: RangeSetND) -> bool:
        """True if every tuple is also in ``other``."""
        return self.elems() <= other.elems()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSetND):
            return NotImplemented
        return len(self) == len(other) and self.elems() == other.elems()

    # unhashable, like set (object's stub declares __hash__ a method, not Optional)
    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return "; ".join(",".join(f"[{rs}]" for rs in vec) for vec in self.vectors())

    def __repr__(self) -> str:
        return f"RangeSetND({str(self)!r})"
