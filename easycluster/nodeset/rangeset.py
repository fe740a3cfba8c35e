"""Range sets: ordered sets of numeric indexes, one dimension or several.

An index is a string of digits. ``"9"`` and ``"09"`` are different indexes (the
leading zero is padding); ``"10"`` written in a padded range such as ``08-10`` is
the same index as an unpadded ``10``. Indexes sort by length, then by value, which
is also the order used for folding ranges back into text.

Internally every index is an integer *code*: ``int("1" + text)``. The code keeps
the text (``str(code)[1:]``), its order is the index order, and indexes of the same
length that follow each other have codes that follow each other. A ``RangeSet``
keeps either a list of spans (parsed ranges, so ``1-1000000`` costs O(1) to parse
and count) or a Python ``set`` of codes (for set algebra at C speed), building the
other one only when asked.

``RangeSetND`` holds tuples of index strings, one per dimension, and folds them
back into vectors of ``RangeSet`` the way ClusterShell 1.10 does, so that the same
set prints the same text.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import chain
from typing import Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Type, TypeVar, Union

from ..errors import NodeSetParseError

__all__ = ["RangeSet", "index_code", "code_text", "split_sequence"]

_ITEM = re.compile(r"\s*([0-9]+)(?:\s*-\s*([0-9]+)(?:\s*/\s*([0-9]+))?)?\s*\Z")
_NEVER = 1 << 62  # autostep threshold meaning "never fold with steps"

Span = Tuple[int, int, int]  # (first code, last code, step), all codes of one length
# What the named set methods accept: a RangeSet, range-set text or indexes.
RangeSetLike = Union["RangeSet", str, Iterable[Union[str, int]]]
_T = TypeVar("_T")


def index_code(text: str) -> int:
    """Code of an index string (digits only): ``int("1" + text)``."""
    return int("1" + text)


def code_text(code: int) -> str:
    """Index string of a code (inverse of :func:`index_code`)."""
    return str(code)[1:]


def _code_len(code: int) -> int:
    return len(str(code)) - 1


def _is_padded(code: int) -> bool:
    text = str(code)
    return len(text) > 2 and text[1] == "0"


def _range_spans(first: str, last: str, step: int) -> List[Span]:
    """Spans (one per index length) of ``first-last/step``; texts already validated."""
    lo, hi = int(first), int(last)
    if len(first) > 1 and first[0] == "0":  # padded: every index has len(first) digits
        base = 10 ** len(first)
        hi = lo + (hi - lo) // step * step
        return [(base + lo, base + hi, step)]
    spans = []
    for width in range(len(first), len(last) + 1):
        base = 10**width
        wlo = max(lo, 10 ** (width - 1) if width > 1 else 0)
        whi = min(hi, base - 1)
        start = lo + -(-(wlo - lo) // step) * step
        if start <= whi:
            spans.append((base + start, base + start + (whi - start) // step * step, step))
    return spans


def _normalize_spans(spans: List[Span]) -> Optional[List[Span]]:
    """Sort spans and merge touching step-1 spans; None if stepped spans overlap."""
    spans.sort()
    out: List[Span] = []
    for span in spans:
        if out:
            first, last, step = out[-1]
            if span[0] <= last + 1 and step == 1 and span[2] == 1:
                out[-1] = (first, max(last, span[1]), 1)
                continue
            if span[0] <= last:
                return None
        out.append(span)
    return out


def parse_rangeset(text: str) -> Tuple[Optional[List[Span]], List[Span]]:
    """Parse ``"1-5,7,10-20/5"``; return (normalized spans or None, raw spans)."""
    raw: List[Span] = []
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            msg = "empty range" if not item.strip() else "invalid range"
            raise NodeSetParseError(item.strip() or text, msg)
        first, last, step_text = match.groups()
        if last is None:
            raw.append((index_code(first), index_code(first), 1))
            continue
        step = int(step_text) if step_text else 1
        if step < 1 or int(last) < int(first):
            raise NodeSetParseError(item.strip(), "invalid values in range")
        padded = (len(first) > 1 and first[0] == "0") or (len(last) > 1 and last[0] == "0")
        if padded and len(first) != len(last):
            raise NodeSetParseError(item.strip(), "padding length mismatch")
        raw.extend(_range_spans(first, last, step))
    return _normalize_spans(list(raw)), raw


def _runs(codes: Sequence[int]) -> List[Tuple[int, int]]:
    """(first, last) of each run of consecutive indexes in sorted codes (no steps)."""
    runs: List[Tuple[int, int]] = []
    if not codes:
        return runs
    start = prev = codes[0]
    for code in codes[1:]:
        if code == prev + 1:
            prev = code
            continue
        # an unpadded run goes on from 9..9 to 10..0 (one more digit)
        if code * 2 == (prev + 1) * 11 and not _is_padded(start):
            prev = code
            continue
        runs.append((start, prev))
        start = prev = code
    runs.append((start, prev))
    return runs


class RangeSet:
    """An ordered set of indexes (strings of digits), e.g. ``RangeSet("1-5,08-10/2")``.

    Iteration yields index strings sorted by length then value. ``str()`` folds to
    the compact text; ``autostep`` (an int, or None to disable) is the minimum
    number of evenly spaced indexes printed as ``a-b/step``. Set operators take
    another RangeSet; the named methods also take a string or iterable of indexes.
    """

    __slots__ = ("_spans", "_codes", "_sorted", "autostep")

    def __init__(
        self,
        indexes: Union[str, Iterable[Union[str, int]], RangeSet, None] = None,
        autostep: Optional[int] = None,
    ) -> None:
        self._spans: Optional[List[Span]] = []
        self._codes: Optional[Set[int]] = None
        self._sorted: Optional[List[int]] = None
        self.autostep = autostep
        if indexes is None:
            return
        if isinstance(indexes, RangeSet):
            self._spans = indexes._spans
            self._codes = None if indexes._codes is None else set(indexes._codes)
            self._sorted = indexes._sorted
            return
        if isinstance(indexes, str):
            if not indexes.strip():
                return
            spans, raw = parse_rangeset(indexes)
            if spans is None:
                self._set_codes(set(chain.from_iterable(_span_range(s) for s in raw)))
            else:
                self._spans = spans
            return
        self._set_codes(
            {index_code(str(i)) if isinstance(i, int) else index_code(i) for i in indexes}
        )

    # -- construction helpers -------------------------------------------------
    @classmethod
    def from_codes(cls, codes: Set[int], autostep: Optional[int] = None) -> RangeSet:
        inst = cls.__new__(cls)
        inst._spans = None
        inst._codes = codes
        inst._sorted = None
        inst.autostep = autostep
        return inst

    @classmethod
    def _from_spans(cls, spans: List[Span], autostep: Optional[int] = None) -> RangeSet:
        inst = cls.__new__(cls)
        inst._spans = spans
        inst._codes = None
        inst._sorted = None
        inst.autostep = autostep
        return inst

    @classmethod
    def fromlist(cls, items: Iterable[str], autostep: Optional[int] = None) -> RangeSet:
        """Union of range-set strings such as ``["1-3", "5"]``."""
        result = cls(autostep=autostep)
        for item in items:
            result.update(cls(item))
        return result

    def _set_codes(self, codes: Set[int]) -> None:
        self._codes = codes
        self._spans = None
        self._sorted = None

    def codes(self) -> Set[int]:
        """The set of codes (see :func:`index_code`); do not mutate it."""
        if self._codes is None:
            codes: Set[int] = set()
            for span in self._spans or ():
                codes.update(_span_range(span))
            self._codes = codes
        return self._codes

    def sorted_codes(self) -> List[int]:
        """Codes in index order (cached; do not mutate)."""
        if self._sorted is None:
            if self._spans is not None:
                self._sorted = list(chain.from_iterable(_span_range(s) for s in self._spans))
            else:
                self._sorted = sorted(self._codes or ())
        return self._sorted

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
            return chain.from_iterable(_span_texts(s, "%s") for s in self._spans)
        return map(code_text, self.sorted_codes())

    def intiter(self) -> Iterator[int]:
        """Index values as ints, in order."""
        return (int(code_text(c)) for c in self.sorted_codes())

    def __contains__(self, index: object) -> bool:
        if isinstance(index, int):
            index = str(index)
        if not isinstance(index, str) or not index.isdigit():
            return False
        code = index_code(index)
        if self._spans is not None:
            pos = bisect_right(self._spans, (code, _NEVER, 0)) - 1
            if pos < 0:
                return False
            first, last, step = self._spans[pos]
            return code <= last and (code - first) % step == 0
        return code in (self._codes or ())

    def __getitem__(self, index: Union[int, slice]) -> Union[str, RangeSet]:
        if isinstance(index, slice):
            return RangeSet.from_codes(set(self.sorted_codes()[index]), self.autostep)
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

    def index(self, item: str) -> int:
        """Position of ``item`` in iteration order; ValueError if absent."""
        if item not in self:
            raise ValueError(f"{item!r} is not in RangeSet")
        return bisect_right(self.sorted_codes(), index_code(item)) - 1

    # -- folding --------------------------------------------------------------
    def fold_spans(self, autostep: Optional[int] = None) -> List[Span]:
        """Folded ranges as (first code, last code, step) in order."""
        step_min = autostep if autostep is not None else self.autostep
        if step_min is None or step_min <= 0:
            if self._spans is not None and all(s[2] == 1 for s in self._spans):
                return [(a, b, 1) for a, b in _merge_spans(self._spans)]
            return [(a, b, 1) for a, b in _runs(self.sorted_codes())]
        return _fold_stepped(self.sorted_codes(), max(step_min, 1))

    def fold_texts(self, autostep: Optional[int] = None) -> List[str]:
        """Folded ranges as texts (``"1-5"``, ``"7"``, ``"10-20/5"``)."""
        return [_span_str(s) for s in self.fold_spans(autostep)]

    def __str__(self) -> str:
        return ",".join(self.fold_texts())

    def format_iter(self, prefix: str = "", suffix: str = "") -> Iterator[str]:
        """``prefix + index + suffix`` for each index, in order (fast for ranges)."""
        if self._spans is not None:
            fmt = prefix.replace("%", "%%") + "%s" + suffix.replace("%", "%%")
            return chain.from_iterable(_span_texts(s, fmt) for s in self._spans)
        return (prefix + text + suffix for text in map(code_text, self.sorted_codes()))

    def __repr__(self) -> str:
        return f"RangeSet({str(self)!r})"

    def contiguous(self) -> Iterator[RangeSet]:
        """Each run of consecutive indexes (same padding) as its own RangeSet."""
        for first, last in _runs(self.sorted_codes()):
            yield RangeSet._from_spans(_split_run(first, last), self.autostep)

    def split(self, parts: int) -> Iterator[RangeSet]:
        """Up to ``parts`` RangeSets of nearly equal size (larger ones first), in order."""
        return (
            RangeSet.from_codes(set(chunk), self.autostep)
            for chunk in split_sequence(self.sorted_codes(), parts)
        )

    # -- set algebra ----------------------------------------------------------
    def _other(self, other: RangeSetLike) -> RangeSet:
        return other if isinstance(other, RangeSet) else RangeSet(other)

    def copy(self) -> RangeSet:
        """A shallow copy (independent for mutation)."""
        return RangeSet(self, self.autostep)

    __copy__ = copy

    def union(self, other: RangeSetLike) -> RangeSet:
        """Indexes in either set."""
        return RangeSet.from_codes(self.codes() | self._other(other).codes(), self.autostep)

    def intersection(self, other: RangeSetLike) -> RangeSet:
        """Indexes in both sets."""
        return RangeSet.from_codes(self.codes() & self._other(other).codes(), self.autostep)

    def difference(self, other: RangeSetLike) -> RangeSet:
        """Indexes of this set not in ``other``."""
        return RangeSet.from_codes(self.codes() - self._other(other).codes(), self.autostep)

    def symmetric_difference(self, other: RangeSetLike) -> RangeSet:
        """Indexes in exactly one of the sets."""
        return RangeSet.from_codes(self.codes() ^ self._other(other).codes(), self.autostep)

    def update(self, other: RangeSetLike) -> None:
        """Add every index of ``other``."""
        self._set_codes(self.codes() | self._other(other).codes())

    def intersection_update(self, other: RangeSetLike) -> None:
        """Keep only indexes also in ``other``."""
        self._set_codes(self.codes() & self._other(other).codes())

    def difference_update(self, other: RangeSetLike) -> None:
        """Remove every index of ``other``."""
        self._set_codes(self.codes() - self._other(other).codes())

    def symmetric_difference_update(self, other: RangeSetLike) -> None:
        """Keep indexes in exactly one of the sets."""
        self._set_codes(self.codes() ^ self._other(other).codes())

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
        return self.codes() <= self._other(other).codes()

    def issuperset(self, other: RangeSetLike) -> bool:
        """True if every index of ``other`` is in this set."""
        return self.codes() >= self._other(other).codes()

    def __le__(self, other: object) -> bool:
        return self.issubset(other) if isinstance(other, RangeSet) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.issuperset(other) if isinstance(other, RangeSet) else NotImplemented

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self.codes() < other.codes()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self.codes() > other.codes()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        if self._spans is not None and other._spans is not None and self._spans == other._spans:
            return True
        return len(self) == len(other) and self.codes() == other.codes()

    # unhashable, like set (object's stub declares __hash__ a method, not Optional)
    __hash__ = None  # type: ignore[assignment]

    def add(self, index: Union[str, int]) -> None:
        """Add one index (a string keeps its padding)."""
        codes = self.codes()
        codes.add(index_code(str(index)))
        self._set_codes(codes)

    def remove(self, index: Union[str, int]) -> None:
        """Remove one index; KeyError if absent."""
        codes = self.codes()
        codes.remove(index_code(str(index)))
        self._set_codes(codes)

    def discard(self, index: Union[str, int]) -> None:
        """Remove one index if present."""
        codes = self.codes()
        codes.discard(index_code(str(index)))
        self._set_codes(codes)

    def clear(self) -> None:
        """Remove every index."""
        self._spans, self._codes, self._sorted = [], None, None

    def __reduce__(self) -> Tuple[Type[RangeSet], Tuple[str, Optional[int]]]:
        return (RangeSet, (str(self), self.autostep))


def _span_range(span: Span) -> range:
    return range(span[0], span[1] + 1, span[2])


def _span_texts(span: Span, fmt: str) -> Iterator[str]:
    """Strings ``fmt % index`` for each index of a span (fmt has one %s, no other %)."""
    first, last, step = span
    width = len(str(first)) - 1
    base = 10**width
    num = fmt.replace("%s", "%0" + str(width) + "d") if width > 1 else fmt.replace("%s", "%d")
    return map(num.__mod__, range(first - base, last - base + 1, step))


def _merge_spans(spans: List[Span]) -> List[Tuple[int, int]]:
    """Step-1 spans to folded runs (joining unpadded runs across digit counts)."""
    runs: List[Tuple[int, int]] = []
    for first, last, _ in spans:
        if runs:
            start, prev = runs[-1]
            if first == prev + 1 or (first * 2 == (prev + 1) * 11 and not _is_padded(start)):
                runs[-1] = (start, last)
                continue
        runs.append((first, last))
    return runs


def _split_run(first: int, last: int) -> List[Span]:
    """Spans of one folded run (which may cross digit counts)."""
    if _code_len(first) == _code_len(last):
        return [(first, last, 1)]
    return _range_spans(code_text(first), code_text(last), 1)


def _span_str(span: Span) -> str:
    first, last, step = span
    if first == last:
        return code_text(first)
    if step == 1:
        return f"{code_text(first)}-{code_text(last)}"
    return f"{code_text(first)}-{code_text(last)}/{step}"


def _fold_stepped(codes: Sequence[int], autostep: int) -> List[Span]:
    """Fold sorted codes with a-b/step ranges (ClusterShell's greedy autostep rule).

    A run of evenly spaced indexes with the same padding is printed as one range
    when its step is 1 or it has at least ``autostep`` indexes. When the spacing
    changes, a run that qualifies is printed and the next run starts at the new
    index, expecting the spacing just seen; a run that does not qualify has all
    its indexes but the last printed alone and goes on from its last index.
    """
    out: List[Span] = []
    run: List[int] = []  # codes of the current run
    step: Optional[int] = None  # expected difference of values; None: any
    padded = False

    def value(code: int) -> int:
        base: int = 10 ** _code_len(code)  # int ** int is Any to mypy (may be a float)
        return code - base

    def qualifies() -> bool:
        return step == 1 or len(run) >= autostep

    for code in codes:
        if not run:
            run, step, padded = [code], None, _is_padded(code)
            continue
        prev = run[-1]
        if (_code_len(code) != _code_len(run[0])) if padded else _is_padded(code):
            if step is None or qualifies():
                out.append((run[0], prev, step or 1))
            else:
                out.extend((c, c, 1) for c in run)
            run, step, padded = [code], None, _is_padded(code)
            continue
        diff = value(code) - value(prev)
        if step is None or diff == step:
            step = diff
            run.append(code)
        elif qualifies():
            out.append((run[0], prev, step))
            run, step = [code], diff
        else:
            out.extend((c, c, 1) for c in run[:-1])
            run, step = [prev, code], diff
    if run:
        if step is None or qualifies():
            out.append((run[0], run[-1], step or 1))
        else:
            out.extend((c, c, 1) for c in run)
    return out


def split_sequence(items: Sequence[_T], parts: int) -> List[Sequence[_T]]:
    """Cut ``items`` into ``min(parts, len)`` consecutive chunks, larger chunks first."""
    if parts < 1:
        raise ValueError("split needs a positive number of parts")
    size, extra = divmod(len(items), parts)
    chunks: List[Sequence[_T]] = []
    pos = 0
    for i in range(min(parts, len(items))):
        end = pos + size + (1 if i < extra else 0)
        chunks.append(items[pos:end])
        pos = end
    return chunks
