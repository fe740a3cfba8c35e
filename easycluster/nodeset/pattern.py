"""Patterns of node names and the per-pattern set algebra used by ``NodeSet``.

A name's digit runs are its indexes; the texts around them form its pattern key
(``("node", "")`` for ``node12``, ``("r", "n", "")`` for ``r1n2``). A pattern maps to
nothing (a name without digits), a ``RangeSet`` (one index) or a ``RangeSetND``
(several). This module parses plain names in bulk and single bracket operands
such as ``da[10-19]c[1-2]``; ``easycluster.nodeset`` handles operators and groups.
"""

from __future__ import annotations

import re

from ..errors import NodeSetParseError, NodeSetParseRangeError
from .rangeset import RangeSet
from .rangesetnd import RangeSetND

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Set, Tuple, Union

    Key = Tuple[str, ...]  # pattern: the texts around the indexes
    Value = Union[None, RangeSet, RangeSetND]

DIGITS = re.compile(r"([0-9]+)")
SCAN = re.compile(r"[,!&^\[\]]")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_LINE1 = re.compile(r"^([^0-9\n]*)([0-9]+)([^0-9\n]*)$", re.M)
NOT_PLAIN = re.compile(r"[\[\],!&^@*?\s]")


def sort_key(key: Key) -> str:
    return "%s".join(part.replace("%", "%%") for part in key)


def _codes_of(digits: Iterable[str]) -> Set[int]:
    return set(map(int, map("1".__add__, digits)))


def copy_value(value: Value) -> Value:
    return None if value is None else value.copy()


def combine(op: str, left: Value, right: Value) -> Value:
    if left is None:  # names without indexes: presence only
        return None
    # One pattern key has one number of indexes, so left and right are both
    # RangeSet or both RangeSetND; mypy cannot see that pairing, hence the ignores.
    if op == "|":
        return left.union(right)  # type: ignore[arg-type]
    if op == "&":
        return left.intersection(right)  # type: ignore[arg-type]
    if op == "-":
        return left.difference(right)  # type: ignore[arg-type]
    return left.symmetric_difference(right)  # type: ignore[arg-type]


def apply_op(pats: Dict[Key, Value], op: str, other: Dict[Key, Value]) -> None:
    """In place: ``pats = pats <op> other`` with op one of ``| & - ^``.

    ``other`` may be ``pats`` itself (``ns -= ns``): it is then read from a copy,
    since the loop below deletes keys of ``pats`` while it walks ``other``.
    """
    if other is pats:
        other = dict(other)
    if op == "&":
        for key in list(pats):
            if key not in other:
                del pats[key]
                continue
            value = combine("&", pats[key], other[key])
            if value is None or value:
                pats[key] = value
            else:
                del pats[key]
        return
    for key, value in other.items():
        if key not in pats:
            if op in "|^":
                pats[key] = copy_value(value)
            continue
        if op == "-" and value is None:
            del pats[key]
            continue
        if op == "^" and value is None:
            del pats[key]
            continue
        merged = combine(op, pats[key], value)
        if merged is None or merged:
            pats[key] = merged
        else:
            del pats[key]


def names_to_pats(names: List[str]) -> Dict[Key, Value]:
    """Patterns of names, each taken as one name: every character but the digits is
    pattern text (callers pass plain names, or names meant literally)."""
    pats: Dict[Key, Value] = {}
    one: Dict[Key, List[str]] = {}
    joined = "\n".join(names)
    # the fast paths read one name a line: not for names holding a newline
    lined = joined.count("\n") == len(names) - 1
    first = _LINE1.match(names[0]) if names and lined else None
    if first is not None:  # fast path: every name has the first name's prefix and suffix
        pre, _, suf = first.groups()
        same = re.compile(f"^{re.escape(pre)}([0-9]+){re.escape(suf)}$", re.M).findall(joined)
        if len(same) == len(names):
            return {(pre, suf): RangeSet.from_codes(_codes_of(same))}
    found = _LINE1.findall(joined) if lined else []
    if names and len(found) == len(names):
        prefixes, digits, suffixes = zip(*found)
        if len(set(prefixes)) == 1 and len(set(suffixes)) == 1:
            one[(prefixes[0], suffixes[0])] = list(digits)
        else:
            for pre, dig, suf in found:
                one.setdefault((pre, suf), []).append(dig)
    else:
        multi: Dict[Key, List[Tuple[str, ...]]] = {}
        for name in names:
            parts = DIGITS.split(name)
            if len(parts) == 3:
                one.setdefault((parts[0], parts[2]), []).append(parts[1])
            elif len(parts) == 1:
                if name:
                    pats[(name,)] = None
            else:
                multi.setdefault(tuple(parts[0::2]), []).append(tuple(parts[1::2]))
        for key, tuples in multi.items():
            pats[key] = RangeSetND.from_elems(set(tuples))
    for key, digs in one.items():
        pats[key] = RangeSet.from_codes(_codes_of(digs))
    return pats


def is_plain(text: str) -> bool:
    return NOT_PLAIN.search(text) is None


def parse_pattern(text: str) -> Dict[Key, Value]:
    """One operand with brackets, e.g. ``da[10-19]c[1-2]-ib0``."""
    tokens: List[Tuple[str, str]] = []  # ("t", text) | ("n", digits) | ("r", ranges)
    pos = 0
    for match in _BRACKET.finditer(text):
        for i, part in enumerate(DIGITS.split(text[pos : match.start()])):
            if part:
                tokens.append(("n" if i % 2 else "t", part))
        if tokens and tokens[-1][0] == "r":
            raise NodeSetParseError(text, "illegal reopening bracket")
        tokens.append(("r", match.group(1)))
        pos = match.end()
    for i, part in enumerate(DIGITS.split(text[pos:])):
        if part:
            tokens.append(("n" if i % 2 else "t", part))
    if "[" in text[pos:] or "]" in text[pos:]:
        raise NodeSetParseError(text, "missing or illegal bracket")
    pieces: List[str] = [""]
    dims: List[RangeSet] = []
    i = 0
    while i < len(tokens):
        kind, part = tokens[i]
        if kind == "t":
            pieces[-1] += part
            i += 1
            continue
        if kind == "n" and not (i + 1 < len(tokens) and tokens[i + 1][0] == "r"):
            dims.append(RangeSet([part]))
            pieces.append("")
            i += 1
            continue
        head = ""
        if kind == "n":
            head, i = part, i + 1
        if dims and pieces[-1] == "" and len(pieces) > 1:
            raise NodeSetParseError(text, "illegal reopening bracket")
        try:
            ranges = RangeSet(tokens[i][1])
        except NodeSetParseError as exc:
            raise NodeSetParseRangeError(text, f"{exc.msg} {exc.part!r}") from exc
        if not ranges:
            raise NodeSetParseRangeError(text, "empty range")
        tail = ""
        if i + 1 < len(tokens) and tokens[i + 1][0] == "n":
            tail, i = tokens[i + 1][1], i + 1
        if head or tail:
            ranges = RangeSet([head + idx + tail for idx in ranges])
        dims.append(ranges)
        pieces.append("")
        i += 1
    key = tuple(pieces)
    if not dims:
        return {key: None}
    if len(dims) == 1:
        return {key: dims[0]}
    return {key: RangeSetND.from_product(dims)}
