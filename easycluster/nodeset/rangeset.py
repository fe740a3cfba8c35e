"""Range sets: ordered sets of numeric indexes, with ClusterShell 1.10's ``RangeSet`` API.

An index is a string of digits; ``"9"`` and ``"09"`` are different indexes (see
``indexes`` for the codes and spans underneath). A ``RangeSet`` keeps either a list
of spans (parsed ranges, so ``1-1000000`` costs O(1) to parse and count) or a Python
``set`` of codes (for set algebra at C speed), building the other one only when
asked. Set algebra on a big set of spans without steps works on the spans' ends, so
``1-1000000000`` minus ``5`` lists nothing; what must list indexes one by one
refuses above ``indexes.EXPAND_LIMIT`` (``RangeSetTooLarge``).

Where ClusterShell's ``RangeSet`` differs (it subclasses ``set``, accepts negative
integers, refuses ``""``), docs/nodeset.md says what we do and why.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import chain
from math import inf
from operator import and_, or_, sub, xor

from .indexes import (
    check_expand,
    checked_code,
    code_runs,
    code_text,
    combine_runs,
    fold_stepped,
    index_code,
    index_text,
    merge_spans,
    parse_rangeset,
    runs,
    span_range,
    span_str,
    span_texts,
    split_run,
    split_sequence,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Iterator, List, Optional, Set, Tuple, Type, Union

    from .indexes import Span

    Index = Union[str, int]
    # What the named set methods accept: a RangeSet, range-set text or indexes.
    RangeSetLike = Union["RangeSet", str, Iterable[Index]]

__all__ = ["RangeSet", "AUTOSTEP_DISABLED", "index_code", "code_text", "split_sequence"]

# ClusterShell's "no autostep" value; any autostep at or above it means disabled.
AUTOSTEP_DISABLED = 1e100
# Above this many indexes, algebra on spans works on their ends (below, code sets
# are faster).
_RUNS_ABOVE = 4096
_CODE_OPS = {"|": or_, "&": and_, "-": sub, "^": xor}


def autostep_value(value: Optional[float]) -> Optional[int]:
    """An autostep as stored: None when disabled (None or ``AUTOSTEP_DISABLED``), else an int."""
    if value is None or value >= AUTOSTEP_DISABLED:
        return None
    return int(value)


class RangeSet:
    """An ordered set of indexes (strings of digits), e.g. ``RangeSet("1-5,08-10/2")``.

    ``RangeSet(pattern=None, autostep=None)``: ``pattern`` is range-set text, another
    RangeSet, or an iterable of index strings and non-negative ints. Iteration yields
    index strings sorted by length then value; ``str()`` folds to the compact text.
    ``autostep`` (an int, or None / ``AUTOSTEP_DISABLED`` to disable) is the minimum
    number of evenly spaced indexes printed as ``a-b/step``. Set operators take another
    RangeSet; the named methods also take text or an iterable of indexes. Bad text
    raises ``RangeSetParseError`` (``RangeSetPaddingError`` for ``01-100``).
    """

    __slots__ = ("_spans", "_codes", "_sorted", "_autostep")

    def __init__(
        self,
        pattern: Union[str, Iterable[Index], RangeSet, None] = None,
        autostep: Optional[float] = None,
    ) -> None:
        self._spans: Optional[List[Span]] = []
        self._codes: Optional[Set[int]] = None
        self._sorted: Optional[List[int]] = None
        self._autostep = autostep_value(autostep)
        if pattern is None:
            return
        if isinstance(pattern, RangeSet):
            self._spans = pattern._spans
            self._codes = None if pattern._codes is None else set(pattern._codes)
            self._sorted = pattern._sorted
            return
        if isinstance(pattern, str):
            if not pattern.strip():
                return
            spans, raw = parse_rangeset(pattern)
            if spans is None:
                self._set_codes(set(chain.from_iterable(span_range(s) for s in raw)))
            else:
                self._spans = spans
            return
        self._set_codes({checked_code(i) for i in pattern})

    # -- construction helpers -------------------------------------------------
    @classmethod
    def from_codes(cls, codes: Set[int], autostep: Optional[int] = None) -> RangeSet:
        """A RangeSet owning ``codes`` (see ``indexes.index_code``)."""
        inst = cls.__new__(cls)
        inst._spans = None
        inst._codes = codes
        inst._sorted = None
        inst._autostep = autostep
        return inst

    @classmethod
    def from_spans(cls, spans: List[Span], autostep: Optional[int] = None) -> RangeSet:
        """A RangeSet owning sorted, disjoint ``spans``."""
        inst = cls.__new__(cls)
        inst._spans = spans
        inst._codes = None
        inst._sorted = None
        inst._autostep = autostep
        return inst

    @classmethod
    def fromlist(
        cls, rnglist: Iterable[Union[str, RangeSet]], autostep: Optional[float] = None
    ) -> RangeSet:
        """Union of range-set strings or RangeSets such as ``["1-3", "5"]``."""
        result = cls(autostep=autostep)
        result.updaten(rnglist)
        return result

    @classmethod
    def fromone(
        cls, index: Union[Index, slice], pad: int = 0, autostep: Optional[float] = None
    ) -> RangeSet:
        """One index (an int written with ``pad`` digits, or a string), or a ``slice``."""
        result = cls(autostep=autostep)
        if isinstance(index, slice):
            if not index.stop:
                raise ValueError(f"invalid range upper limit ({index.stop})")
            result.add_range(index.start or 0, index.stop, index.step or 1, pad)
        else:
            result.add(index, pad)
        return result

    def _set_codes(self, codes: Set[int]) -> None:
        self._codes = codes
        self._spans = None
        self._sorted = None

    def codes(self) -> Set[int]:
        """The set of codes (see ``indexes.index_code``); do not mutate it."""
        if self._codes is None:
            check_expand(len(self))
            codes: Set[int] = set()
            for span in self._spans or ():
                codes.update(span_range(span))
            self._codes = codes
        return self._codes

    def sorted_codes(self) -> List[int]:
        """Codes in index order (cached; do not mutate)."""
        if self._sorted is None:
            if self._spans is not None:
                check_expand(len(self))
                self._sorted = list(chain.from_iterable(span_range(s) for s in self._spans))
            else:
                self._sorted = sorted(self._codes or ())
        return self._sorted

    # -- properties -------------------------------------------------------------
    def get_autostep(self) -> Optional[int]:
        """The autostep threshold, or None when disabled."""
        return self._autostep

    def set_autostep(self, value: Optional[float]) -> None:
        """Set the autostep threshold (None or ``AUTOSTEP_DISABLED`` disables it)."""
        self._autostep = autostep_value(value)

    autostep = property(get_autostep, set_autostep)

    @property
    def padding(self) -> Optional[int]:
        """Width of the widest zero-padded index, or None if no index is padded."""
        padded = [len(t) for t in self if len(t) > 1 and t[0] == "0"]
        return max(padded) if padded else None

    @padding.setter
    def padding(self, value: Optional[int]) -> None:
        self._set_codes({index_code(str(int(t)).zfill(value or 1)) for t in self})

    def dim(self) -> int:
        """Number of dimensions: 1, or 0 when empty (as ``RangeSetND.dim``)."""
        return int(bool(self))

    # -- sized / iterable / container ----------------------------------------
    def __len__(self) -> int:
        if self._spans is not None:
            return sum((last - first) // step + 1 for first, last, step in self._spans)
        return len(self._codes or ())

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[str]:
        return self.striter()

    def striter(self) -> Iterator[str]:
        """Index strings in order."""
        if self._spans is not None:
            return chain.from_iterable(span_texts(s, "%s") for s in self._spans)
        return map(code_text, self.sorted_codes())

    def intiter(self) -> Iterator[int]:
        """Index values as ints, in order."""
        return (int(code_text(c)) for c in self.sorted_codes())

    def _has_code(self, code: int) -> bool:
        if self._spans is not None:
            pos = bisect_right(self._spans, (code, inf, 0)) - 1
            if pos < 0:
                return False
            first, last, step = self._spans[pos]
            return code <= last and (code - first) % step == 0
        return code in (self._codes or ())

    def __contains__(self, element: object) -> bool:
        """An index (str or int) is in the set; a RangeSet is a subset (ClusterShell)."""
        if isinstance(element, RangeSet):
            return self.issuperset(element)
        text = index_text(element)
        return text is not None and self._has_code(index_code(text))

    def __getitem__(self, index: Union[int, slice]) -> Union[str, RangeSet]:
        if isinstance(index, slice):
            return RangeSet.from_codes(set(self.sorted_codes()[index]), self._autostep)
        if self._spans is not None:
            pos = index + len(self) if index < 0 else index
            if pos >= 0:
                for first, last, step in self._spans:
                    size = (last - first) // step + 1
                    if pos < size:
                        return code_text(first + pos * step)
                    pos -= size
            raise IndexError("RangeSet index out of range")
        return code_text(self.sorted_codes()[index])

    def index(self, elem: Index, start: int = 0, stop: Optional[int] = None) -> int:
        """Position of index ``elem`` (str or int) in iteration order, looked for in
        positions ``start`` to ``stop``; ValueError if it is not there."""
        text = index_text(elem)
        if text is None or not self._has_code(index_code(text)):
            raise ValueError(f"{elem!r} is not in RangeSet")
        code = index_code(text)
        pos = 0
        for first, last, step in self._spans or ():  # spans: count, do not list
            if code <= last:
                pos += (code - first) // step
                break
            pos += (last - first) // step + 1
        else:
            pos = bisect_left(self.sorted_codes(), code)
        size = len(self)
        low = start + size if start < 0 else start
        high = size if stop is None else (stop + size if stop < 0 else stop)
        if not low <= pos < high:
            raise ValueError(f"{elem!r} is not in RangeSet")
        return pos

    # -- folding --------------------------------------------------------------
    def fold_spans(self, autostep: Optional[int] = None) -> List[Span]:
        """Folded ranges as (first code, last code, step) in order."""
        step_min = autostep if autostep is not None else self._autostep
        if step_min is None or step_min <= 0:
            if self._spans is not None and all(s[2] == 1 for s in self._spans):
                return [(a, b, 1) for a, b in merge_spans(self._spans)]
            return [(a, b, 1) for a, b in runs(self.sorted_codes())]
        return fold_stepped(self.sorted_codes(), max(step_min, 1))

    def fold_texts(self, autostep: Optional[int] = None) -> List[str]:
        """Folded ranges as texts (``"1-5"``, ``"7"``, ``"10-20/5"``)."""
        return [span_str(s) for s in self.fold_spans(autostep)]

    def __str__(self) -> str:
        return ",".join(self.fold_texts())

    def format_iter(self, prefix: str = "", suffix: str = "") -> Iterator[str]:
        """``prefix + index + suffix`` for each index, in order (fast for ranges)."""
        if self._spans is not None:
            fmt = prefix.replace("%", "%%") + "%s" + suffix.replace("%", "%%")
            return chain.from_iterable(span_texts(s, fmt) for s in self._spans)
        return (prefix + text + suffix for text in map(code_text, self.sorted_codes()))

    def __repr__(self) -> str:
        return f"RangeSet({str(self)!r})"

    def slices(self) -> Iterator[slice]:
        """Each folded range as ``slice(first, last + 1, step)`` (padding is not kept)."""
        for first, last, step in self.fold_spans():
            yield slice(int(code_text(first)), int(code_text(last)) + 1, step)

    def contiguous(self) -> Iterator[RangeSet]:
        """Each run of consecutive indexes (same padding) as its own RangeSet."""
        if self._spans is not None and all(step == 1 for _, _, step in self._spans):
            found = merge_spans(self._spans)  # (the same runs, without listing indexes)
        else:
            found = runs(self.sorted_codes())
        for first, last in found:
            yield RangeSet.from_spans(split_run(first, last), self._autostep)

    def split(self, nbr: int) -> Iterator[RangeSet]:
        """Up to ``nbr`` RangeSets of nearly equal size (larger ones first), in order."""
        return (
            RangeSet.from_codes(set(chunk), self._autostep)
            for chunk in split_sequence(self.sorted_codes(), nbr)
        )

    # -- set algebra ----------------------------------------------------------
    def _other(self, other: Optional[RangeSetLike]) -> RangeSet:
        return other if isinstance(other, RangeSet) else RangeSet(other)

    def copy(self) -> RangeSet:
        """A shallow copy (independent for mutation)."""
        return RangeSet(self, self._autostep)

    __copy__ = copy

    def _code_runs(self) -> Optional[List[Tuple[int, int]]]:
        """The set as runs of consecutive codes; None if it holds stepped spans."""
        if self._spans is not None:
            if any(step != 1 for _, _, step in self._spans):
                return None
            return [(first, last) for first, last, _ in self._spans]
        return code_runs(self.sorted_codes())

    def _apply(self, other: RangeSetLike, op: str) -> RangeSet:
        """``self <op> other`` (``| & - ^``): on span ends when a set of spans is big,
        else on code sets (which list indexes, see ``indexes.check_expand``)."""
        theirs = self._other(other)
        if not self or not theirs:  # (no listing: -R 1-1000000000/2 alone is counted)
            kept = {"|": self or theirs, "&": None, "-": self, "^": self or theirs}[op]
            return RangeSet(kept, self._autostep) if kept else RangeSet(None, self._autostep)
        if (self._spans is not None or theirs._spans is not None) and max(
            len(self), len(theirs)
        ) > _RUNS_ABOVE:
            mine, their_runs = self._code_runs(), theirs._code_runs()
            if mine is not None and their_runs is not None:
                found = combine_runs(mine, their_runs, op)
                return RangeSet.from_spans([(a, b, 1) for a, b in found], self._autostep)
        return RangeSet.from_codes(_CODE_OPS[op](self.codes(), theirs.codes()), self._autostep)

    def _become(self, result: RangeSet) -> None:
        self._spans, self._codes, self._sorted = result._spans, result._codes, None

    def union(self, other: RangeSetLike) -> RangeSet:
        """Indexes in either set."""
        return self._apply(other, "|")

    def intersection(self, other: RangeSetLike) -> RangeSet:
        """Indexes in both sets."""
        return self._apply(other, "&")

    def difference(self, other: RangeSetLike) -> RangeSet:
        """Indexes of this set not in ``other``."""
        return self._apply(other, "-")

    def symmetric_difference(self, other: RangeSetLike) -> RangeSet:
        """Indexes in exactly one of the sets."""
        return self._apply(other, "^")

    # Each in-place method builds a new set before replacing its own, so
    # ``rs.difference_update(rs)`` and friends are safe.
    def update(self, other: RangeSetLike) -> None:
        """Add every index of ``other``."""
        self._become(self._apply(other, "|"))

    union_update = update

    def updaten(self, rangesets: Iterable[RangeSetLike]) -> None:
        """Add the indexes of each item of ``rangesets``."""
        for other in rangesets:
            self.update(other)

    def intersection_update(self, other: RangeSetLike) -> None:
        """Keep only indexes also in ``other``."""
        self._become(self._apply(other, "&"))

    def difference_update(self, other: RangeSetLike, strict: bool = False) -> None:
        """Remove every index of ``other``; with ``strict``, KeyError if one is absent."""
        theirs = self._other(other)
        if strict:
            missing = theirs._apply(self, "-")
            if missing:
                raise KeyError(str(missing))
        self._become(self._apply(theirs, "-"))

    def symmetric_difference_update(self, other: RangeSetLike) -> None:
        """Keep indexes in exactly one of the sets."""
        self._become(self._apply(other, "^"))

    def __or__(self, other: RangeSet) -> RangeSet:
        return self.union(other) if isinstance(other, RangeSet) else NotImplemented

    def __and__(self, other: RangeSet) -> RangeSet:
        return self.intersection(other) if isinstance(other, RangeSet) else NotImplemented

    def __sub__(self, other: RangeSet) -> RangeSet:
        return self.difference(other) if isinstance(other, RangeSet) else NotImplemented

    def __xor__(self, other: RangeSet) -> RangeSet:
        return self.symmetric_difference(other) if isinstance(other, RangeSet) else NotImplemented

    def __ior__(self, other: RangeSetLike) -> RangeSet:
        self.update(other)
        return self

    def __iand__(self, other: RangeSetLike) -> RangeSet:
        self.intersection_update(other)
        return self

    def __isub__(self, other: RangeSetLike) -> RangeSet:
        self.difference_update(other)
        return self

    def __ixor__(self, other: RangeSetLike) -> RangeSet:
        self.symmetric_difference_update(other)
        return self

    def issubset(self, other: RangeSetLike) -> bool:
        """True if every index is also in ``other``."""
        return not self._apply(other, "-")

    def issuperset(self, other: RangeSetLike) -> bool:
        """True if every index of ``other`` is in this set."""
        return not self._other(other)._apply(self, "-")

    def __le__(self, other: object) -> bool:
        return self.issubset(other) if isinstance(other, RangeSet) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.issuperset(other) if isinstance(other, RangeSet) else NotImplemented

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return len(self) < len(other) and self.issubset(other)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return len(self) > len(other) and self.issuperset(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        if self._spans is not None and other._spans is not None and self._spans == other._spans:
            return True
        return len(self) == len(other) and not self._apply(other, "^")

    # unhashable, like set (object's stub declares __hash__ a method, not Optional)
    __hash__ = None  # type: ignore[assignment]

    def add(self, element: Index, pad: int = 0) -> None:
        """Add one index: a string keeps its padding, an int is written with ``pad``
        digits. Raises RangeSetParseError for anything else (a negative int)."""
        codes = self.codes()
        codes.add(checked_code(element, pad))
        self._set_codes(codes)

    def add_range(self, start: int, stop: int, step: int = 1, pad: int = 0) -> None:
        """Add ``range(start, stop, step)``, each index written with ``pad`` digits."""
        if not 0 <= start < stop or step < 1 or pad < 0:
            raise ValueError(f"bad range: start={start} stop={stop} step={step} pad={pad}")
        self.update(RangeSet(f"{str(start).zfill(pad)}-{str(stop - 1).zfill(pad)}/{step}"))

    def remove(self, element: Index, pad: int = 0) -> None:
        """Remove one index; KeyError if it is absent (or is not an index)."""
        text = index_text(element, pad)
        if text is None or not self._has_code(index_code(text)):
            raise KeyError(element)
        codes = self.codes()
        codes.remove(index_code(text))
        self._set_codes(codes)

    def discard(self, element: Index, pad: int = 0) -> None:
        """Remove one index if present (anything that is not an index is ignored)."""
        text = index_text(element, pad)
        if text is not None and self._has_code(index_code(text)):
            self.remove(text)

    def clear(self) -> None:
        """Remove every index."""
        self._spans, self._codes, self._sorted = [], None, None

    def __reduce__(self) -> Tuple[Type[RangeSet], Tuple[str, Optional[int]]]:
        return (RangeSet, (str(self), self._autostep))
