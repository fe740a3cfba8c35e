"""Folding index tuples into vectors, the way ClusterShell 1.10 does (pure functions).

``fold_vectors`` turns a set of index tuples (one index string per dimension) into a
list of vectors (one set of indexes per dimension) whose products are disjoint and
cover the tuples, with the same result as ClusterShell 1.10:

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

from math import prod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import FrozenSet, Iterable, List, Optional, Sequence, Tuple

    Vector = Tuple[FrozenSet[str], ...]
    Elem = Tuple[str, ...]  # one index per dimension

__all__ = ["fold_vectors"]


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


def first_pass(elems: Sequence[Tuple[str, ...]]) -> Tuple[List[Vector], bool]:
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
    vectors, changed = first_pass(ordered)
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
