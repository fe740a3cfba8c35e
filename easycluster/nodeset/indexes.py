"""Index codes and spans: the arithmetic under ``RangeSet`` (pure functions).

An index is a string of digits. ``"9"`` and ``"09"`` are different indexes (the
leading zero is padding); ``"10"`` written in a padded range such as ``08-10`` is
the same index as an unpadded ``10``. Indexes sort by length, then by value, which
is also the order used for folding ranges back into text.

Every index is an integer *code*: ``int("1" + text)``. The code keeps the text
(``str(code)[1:]``), its order is the index order, and indexes of the same length
that follow each other have codes that follow each other. A *span* is
``(first code, last code, step)`` with every code of one length: a parsed range
``1-1000000`` is a few spans, so parsing and counting it costs O(1), and set algebra
on spans without steps is arithmetic on their ends (``combine_runs``).

Listing indexes one by one (a Python set or list of codes) is refused above
``EXPAND_LIMIT`` (1e7) with ``RangeSetTooLarge`` (``check_expand``): a list of 1e7
indexes takes a second or two and about 1 GB, 5e7 more than a minute. ClusterShell
refuses any range of 1e9 indexes or more when it parses it, and lists every range it
keeps (so 1e8 already takes it minutes and gigabytes); we refuse only the listing.
"""

from __future__ import annotations

import re
import sys

from ..errors import RangeSetPaddingError, RangeSetParseError, RangeSetTooLarge

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

    Span = Tuple[int, int, int]  # (first code, last code, step), all codes of one length
    _T = TypeVar("_T")

EXPAND_LIMIT = 10**7
_ITEM = re.compile(r"\s*([0-9]+)(?:\s*-\s*([0-9]+)(?:\s*/\s*([0-9]+))?)?\s*\Z")


def index_code(text: str) -> int:
    """Code of an index string (digits only): ``int("1" + text)``."""
    return int("1" + text)


def index_text(element: object, pad: int = 0) -> Optional[str]:
    """The index string of ``element`` (digits, or an int written with ``pad`` digits),
    or None when it is not an index (negative, not a number, not a str or int)."""
    if isinstance(element, str):
        return element if element.isdigit() and element.isascii() else None
    if isinstance(element, int) and not isinstance(element, bool) and element >= 0:
        return str(element).zfill(pad)
    return None


def checked_code(element: object, pad: int = 0) -> int:
    """Code of an index (see ``index_text``); RangeSetParseError if it is not one."""
    text = index_text(element, pad)
    if text is None:
        # text '-1-0' (what ClusterShell prints for -1, 0) could not be read back
        raise RangeSetParseError(str(element), "not an index (a non-negative integer)")
    return index_code(text)


def code_text(code: int) -> str:
    """Index string of a code (inverse of :func:`index_code`)."""
    return str(code)[1:]


def code_len(code: int) -> int:
    return len(str(code)) - 1


def is_padded(code: int) -> bool:
    text = str(code)
    return len(text) > 2 and text[1] == "0"


def range_spans(first: str, last: str, step: int) -> List[Span]:
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


def normalize_spans(spans: List[Span]) -> Optional[List[Span]]:
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
            raise RangeSetParseError(item.strip() or text, msg)
        first, last, step_text = match.groups()
        if last is None:
            raw.append((index_code(first), index_code(first), 1))
            continue
        step = int(step_text) if step_text else 1
        if step < 1 or int(last) < int(first):
            raise RangeSetParseError(item.strip(), "invalid values in range")
        padded = (len(first) > 1 and first[0] == "0") or (len(last) > 1 and last[0] == "0")
        if padded and len(first) != len(last):
            raise RangeSetPaddingError(item.strip(), "padding length mismatch")
        if (int(last) - int(first)) // step >= sys.maxsize:
            # len() could not report it; ClusterShell says the same (its limit is 1e9)
            raise RangeSetParseError(item.strip(), "range too large")
        raw.extend(range_spans(first, last, step))
    return normalize_spans(list(raw)), raw


def check_expand(count: int) -> None:
    """Raise RangeSetTooLarge if ``count`` indexes are too many to list one by one."""
    if count > EXPAND_LIMIT:
        raise RangeSetTooLarge(count, EXPAND_LIMIT)


def code_runs(codes: Sequence[int]) -> List[Tuple[int, int]]:
    """(first, last) of each run of consecutive codes in sorted ``codes``.

    Unlike ``runs``, a run never crosses index lengths (nor does any run of codes:
    the codes of one length are ``10**w`` to ``2 * 10**w - 1``), so the runs are
    spans as they are."""
    found: List[Tuple[int, int]] = []
    for code in codes:
        if found and code == found[-1][1] + 1:
            found[-1] = (found[-1][0], code)
        else:
            found.append((code, code))
    return found


# combine_runs: which segments to keep, by (in left, in right)
_KEEP: Dict[str, Callable[[bool, bool], bool]] = {
    "|": lambda a, b: a or b,
    "&": lambda a, b: a and b,
    "-": lambda a, b: a and not b,
    "^": lambda a, b: a != b,
}


def combine_runs(
    left: Sequence[Tuple[int, int]], right: Sequence[Tuple[int, int]], op: str
) -> List[Tuple[int, int]]:
    """``left <op> right`` (op one of ``| & - ^``) on sorted, disjoint, inclusive runs
    of codes; the result is sorted, disjoint and merged. Costs O(runs), whatever the
    number of codes."""
    keep = _KEEP[op]
    bounds = sorted({p for first, last in (*left, *right) for p in (first, last + 1)})
    out: List[Tuple[int, int]] = []
    i = j = 0
    for low, high in zip(bounds, bounds[1:]):  # segment [low, high): wholly in or out
        while i < len(left) and left[i][1] < low:
            i += 1
        while j < len(right) and right[j][1] < low:
            j += 1
        inside_left = i < len(left) and left[i][0] <= low
        inside_right = j < len(right) and right[j][0] <= low
        if keep(inside_left, inside_right):
            if out and out[-1][1] == low - 1:
                out[-1] = (out[-1][0], high - 1)
            else:
                out.append((low, high - 1))
    return out


def runs(codes: Sequence[int]) -> List[Tuple[int, int]]:
    """(first, last) of each run of consecutive indexes in sorted codes (no steps)."""
    found: List[Tuple[int, int]] = []
    if not codes:
        return found
    start = prev = codes[0]
    for code in codes[1:]:
        if code == prev + 1:
            prev = code
            continue
        # an unpadded run goes on from 9..9 to 10..0 (one more digit)
        if code * 2 == (prev + 1) * 11 and not is_padded(start):
            prev = code
            continue
        found.append((start, prev))
        start = prev = code
    found.append((start, prev))
    return found


def span_range(span: Span) -> range:
    return range(span[0], span[1] + 1, span[2])


def span_texts(span: Span, fmt: str) -> Iterator[str]:
    """Strings ``fmt % index`` for each index of a span (fmt has one %s, no other %)."""
    first, last, step = span
    width = len(str(first)) - 1
    base = 10**width
    num = fmt.replace("%s", "%0" + str(width) + "d") if width > 1 else fmt.replace("%s", "%d")
    return map(num.__mod__, range(first - base, last - base + 1, step))


def merge_spans(spans: List[Span]) -> List[Tuple[int, int]]:
    """Step-1 spans to folded runs (joining unpadded runs across digit counts)."""
    runs: List[Tuple[int, int]] = []
    for first, last, _ in spans:
        if runs:
            start, prev = runs[-1]
            if first == prev + 1 or (first * 2 == (prev + 1) * 11 and not is_padded(start)):
                runs[-1] = (start, last)
                continue
        runs.append((first, last))
    return runs


def split_run(first: int, last: int) -> List[Span]:
    """Spans of one folded run (which may cross digit counts)."""
    if code_len(first) == code_len(last):
        return [(first, last, 1)]
    return range_spans(code_text(first), code_text(last), 1)


def span_str(span: Span) -> str:
    first, last, step = span
    if first == last:
        return code_text(first)
    if step == 1:
        return f"{code_text(first)}-{code_text(last)}"
    return f"{code_text(first)}-{code_text(last)}/{step}"


def fold_stepped(codes: Sequence[int], autostep: int) -> List[Span]:
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
        base: int = 10 ** code_len(code)  # int ** int is Any to mypy (may be a float)
        return code - base

    def qualifies() -> bool:
        return step == 1 or len(run) >= autostep

    for code in codes:
        if not run:
            run, step, padded = [code], None, is_padded(code)
            continue
        prev = run[-1]
        if (code_len(code) != code_len(run[0])) if padded else is_padded(code):
            if step is None or qualifies():
                out.append((run[0], prev, step or 1))
            else:
                out.extend((c, c, 1) for c in run)
            run, step, padded = [code], None, is_padded(code)
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
