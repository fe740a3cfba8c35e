"""Result keys: one per slot, in natural order, folded into node-set text for display.

A *key* names one slot of a run. It is the node's name, and when the same node is listed
more than once (``-w n1,n1`` after group expansion, a host file with repeats) the later
slots get ``#2``, ``#3``... (``node1``, ``node1#2``), so that no slot's output or outcome
is ever merged into another's (``slot_keys``). ``node_of_key`` gives the node back.

*Natural order* (``natural_key``): digit runs compare as numbers, so ``n2`` comes before
``n10``; names equal as numbers (``n1`` and ``n01``) are then ordered by their text. It
is a total order on strings, so every listing built on it is deterministic.

*Folding* (``fold_keys``): keys that are plain node names (no brackets, operators,
``@``, wildcards or spaces) are folded by ``NodeSet`` (``node[1-3]``; slot keys fold
too: ``node[1-2]#2``); any other key, one that ``NodeSet`` would read as notation or
refuse, is kept verbatim after them, in natural order, so it is printed rather than
misread or lost. Nothing here raises on an odd key.

*Listing* (``node_list``): what ``Task.shell(nodes=...)`` takes (node-set text, a
``NodeSet``, names) as the names of its slots, in order, duplicates kept.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from ..errors import NodeSetError
from ..nodeset.nodeset import NodeSet
from ..nodeset.pattern import is_plain

__all__ = [
    "SLOT_MARK",
    "NaturalKey",
    "natural_key",
    "natural_sorted",
    "slot_keys",
    "node_of_key",
    "fold_keys",
    "Nodes",
    "node_list",
    "top_level_items",
]


class Regroup(NamedTuple):
    """How ``fold_keys`` writes node sets beyond plain folding: with the groups of
    ``source`` (None: the default one) that they fill when ``groups`` (clush's -r),
    without the ``@source:`` prefix when ``noprefix`` (-G), and folded only along the
    0-based ``axis`` of multi-dimensional names (--axis; None: every axis)."""

    source: Optional[str]
    noprefix: bool
    groups: bool = True
    axis: Optional[List[int]] = None


SLOT_MARK = "#"
_DIGITS = re.compile(r"([0-9]+)")

# Even positions hold text, odd positions (number, digits) pairs: DIGITS.split always
# alternates that way, so two keys never compare a str with a tuple.
NaturalKey = Tuple[Union[str, Tuple[int, str]], ...]


def natural_key(name: str) -> NaturalKey:
    """The sort key of ``name`` in natural order (see the module docstring)."""
    parts = _DIGITS.split(name)
    return tuple((int(p), p) if i % 2 else p for i, p in enumerate(parts))


def natural_sorted(names: Iterable[str]) -> List[str]:
    """``names`` in natural order."""
    return sorted(names, key=natural_key)


def slot_keys(nodes: Sequence[str]) -> List[str]:
    """One key per listed node, in the same order: the first time a node appears its
    key is its name, its n-th appearance gets ``name#n`` (n >= 2)."""
    seen: Dict[str, int] = {}
    keys: List[str] = []
    for node in nodes:
        count = seen.get(node, 0) + 1
        seen[node] = count
        keys.append(node if count == 1 else f"{node}{SLOT_MARK}{count}")
    return keys


def node_of_key(key: str) -> str:
    """The node a slot key belongs to (``node1#2`` -> ``node1``)."""
    name, mark, number = key.rpartition(SLOT_MARK)
    if mark and name and number.isdigit():
        return name
    return key


def fold_keys(keys: Iterable[str], regroup: Optional[Regroup] = None) -> str:
    """Node-set text for ``keys`` (see the module docstring); ``""`` for no keys.

    ``regroup`` (clush's ``-r``, ``--axis``): a ``Regroup``; with ``groups``, the plain
    names are written with the groups of its source that they fill, as
    ``NodeSet.regroup`` does (``@rack1,n9``), the prefix ``@source:`` left out with
    ``noprefix``; with ``axis``, folded along those axes only."""
    plain: List[str] = []
    verbatim: List[str] = []
    for key in keys:
        (plain if key and is_plain(key) else verbatim).append(key)
    parts: List[str] = []
    if plain:
        try:
            nodes = NodeSet.fromlist(plain)
            if regroup is not None and regroup.axis is not None:
                nodes.fold_axis = regroup.axis
            if regroup is None or not regroup.groups:
                parts.append(str(nodes))
            else:
                parts.append(nodes.regroup(regroup.source, noprefix=regroup.noprefix))
        except NodeSetError:  # a name NodeSet cannot hold: list every key as it is
            verbatim.extend(plain)
    parts.extend(dict.fromkeys(natural_sorted(verbatim)))
    return ",".join(parts)


Nodes = Union[str, NodeSet, Iterable[str], None]  # what Task.shell() takes as nodes


def node_list(nodes: Nodes) -> List[str]:
    """Node names in the order given, duplicates kept (each listing is a slot).

    A string is read as node-set notation; top-level commas separate items that are
    expanded one by one (so ``"n[1-2],n1"`` is n1, n2, n1), unless it uses the
    operators ``!&^`` (then it is one set). An iterable gives names or patterns.
    A slot key given back as a node (``n1#2``, from a handler's ``node`` argument)
    names its node: the command runs on ``n1``.
    """
    if nodes is None:
        return []
    if isinstance(nodes, NodeSet):
        return list(nodes)
    if isinstance(nodes, str):
        if SLOT_MARK in nodes:
            return [node_of_key(n) for n in _listed(nodes)]
        return _listed(nodes)
    return [n for item in nodes for n in node_list(str(item))]


def _listed(nodes: str) -> List[str]:
    if any(op in nodes for op in "!&^"):
        return list(NodeSet(nodes))
    return [n for item in top_level_items(nodes) for n in NodeSet(item)]


def top_level_items(text: str) -> List[str]:
    """``text`` split at its commas outside brackets (``n[1,3],m`` is ``n[1,3]`` and
    ``m``), each item stripped, empty ones left out."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]
