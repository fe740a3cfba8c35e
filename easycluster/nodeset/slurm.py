"""Node sets to and from SLURM's hostlist notation.

Reading: SLURM's hostlist syntax (``n[1-3,7],gpu[01-04]``, as in ``SLURM_JOB_NODELIST``
and everything ``sinfo``/``squeue`` print) is a subset of ours, so ``NodeSet`` reads it
as is; ``parse_slurm_nodelist`` does so without group lookups and refuses what SLURM
itself would not print (our operators and ``@groups``), ``parse_hostnames`` reads
``scontrol show hostnames`` output (one name a line), and ``allocation_nodes`` the
nodes of the allocation this process runs in.

Writing: ``slurm_hostlist(nodes)`` folds names into text SLURM 22.05 reads
(``srun -w``, ``--nodelist``, ``sbatch -w``), which is narrower than what we read:

* only the last number of a name is folded (``r1n1,r1n2,r2n1`` gives
  ``r1n[1-2],r2n1``), never several at once (no n-D folds);
* nothing after a bracket: a name whose last number is followed by more text
  (``x8-ib``) is written whole;
* one range holds at most 65,536 hosts (``n[1-65537]`` is "Too many hosts in range"),
  so longer runs are cut into several ranges;
* zero padding as SLURM reads it: a range's width is its low end's width, so ``n08``,
  ``n09`` and ``n10`` fold to ``n[08-10]``; ``n8`` and ``n08`` are different names and
  stay apart;
* a name SLURM cannot hold in a list (empty, or with ``,``, ``[``, ``]`` or white space)
  is refused with ``NodeSetError`` rather than written wrong.

The built-in group sources (``@sp:``, ``@sj:``, ``@st:``...) are in ``slurmgroups``.
"""

from __future__ import annotations

import os
import re

from ..errors import NodeSetError, NodeSetParseError
from .nodeset import NodeSet
from .slurmgroups import (
    SLURM_CACHE_TIME,
    SLURM_SOURCES,
    slurm_available,
    slurm_group_sources,
    with_slurm_sources,
)
from .std import RESOLVER_NOGROUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

__all__ = [
    "MAX_RANGE",
    "SLURM_CACHE_TIME",
    "SLURM_SOURCES",
    "allocation_nodes",
    "parse_hostnames",
    "parse_slurm_nodelist",
    "slurm_available",
    "slurm_group_sources",
    "slurm_hostlist",
    "with_slurm_sources",
]

MAX_RANGE = 65536  # hosts in one SLURM range (hostlist.c's limit, measured on 22.05)
_NOT_SLURM = re.compile(r"[!&^@*]")  # our operators, groups and wildcards
_BAD_NAME = re.compile(r"[,\[\]\s]")
_LAST_NUMBER = re.compile(r"(.*\D)?(\d+)")


def parse_slurm_nodelist(text: str) -> NodeSet:
    """The nodes of a SLURM hostlist expression (``n[1-3],m5``).

    Commas and white space both separate parts. Raises NodeSetParseError for text that
    is not a hostlist (our operators or ``@groups`` are refused: SLURM never prints them,
    and a NodeSet reading them would ask a group source).
    """
    bad = _NOT_SLURM.search(text)
    if bad:
        raise NodeSetParseError(
            text, f"{bad.group()!r} is not SLURM hostlist syntax (names and [ranges] only)"
        )
    return NodeSet(",".join(text.split()), resolver=RESOLVER_NOGROUP)


def parse_hostnames(output: str) -> NodeSet:
    """The nodes of ``scontrol show hostnames`` output: one name a line, blank lines
    skipped. Raises NodeSetParseError for a line that is not a single name."""
    names = []
    for lineno, line in enumerate(output.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if _BAD_NAME.search(name) or _NOT_SLURM.search(name):
            raise NodeSetParseError(line, f"line {lineno} is not one host name")
        names.append(name)
    return NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP)


def allocation_nodes(environ: Optional[Mapping[str, str]] = None) -> NodeSet:
    """The nodes of the SLURM allocation this process runs in (``SLURM_JOB_NODELIST``,
    else the older ``SLURM_NODELIST``).

    Raises NodeSetError when neither is set: not inside ``salloc``/``sbatch``/``srun``.
    """
    env = os.environ if environ is None else environ
    text = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not text:
        raise NodeSetError(
            "not inside a SLURM allocation: SLURM_JOB_NODELIST is not set (run inside "
            "salloc or sbatch, or name the job's nodes with @sj:JOBID)"
        )
    return parse_slurm_nodelist(text)


def slurm_hostlist(nodes: Union[str, Iterable[str]], max_range: int = MAX_RANGE) -> str:
    """``nodes`` (a NodeSet, names, or node set text) as a hostlist SLURM can read.

    See the module docstring for the rules. Text is read as a ``NodeSet`` (groups
    resolved); the result lists each name once, in a stable order.
    """
    if max_range < 1:
        raise ValueError(f"max_range must be at least 1, not {max_range}")
    names = NodeSet(nodes) if isinstance(nodes, str) else nodes
    plain: List[str] = []
    # (prefix, width) -> numbers; width 0 = not padded
    numbered: Dict[Tuple[str, int], Set[int]] = {}
    padded: Dict[str, Set[int]] = {}  # prefix -> widths written with a leading zero
    unpadded: List[Tuple[str, str]] = []
    seen = set()
    for name in names:
        name = str(name)
        if not name or _BAD_NAME.search(name):
            raise NodeSetError(
                f"node name {name!r} cannot be written in a SLURM hostlist "
                "(empty, or holds ',', '[', ']' or white space)"
            )
        if name in seen:
            continue
        seen.add(name)
        m = _LAST_NUMBER.fullmatch(name)
        if m is None or not m.group(1):  # no trailing number (or a bare number): whole
            plain.append(name)
            continue
        prefix, digits = m.group(1), m.group(2)
        if len(digits) > 1 and digits[0] == "0":
            padded.setdefault(prefix, set()).add(len(digits))
            numbered.setdefault((prefix, len(digits)), set()).add(int(digits))
        else:
            unpadded.append((prefix, digits))
    for prefix, digits in unpadded:
        # "10" joins a width-2 range begun by "08": SLURM pads to the low end's width
        width = len(digits) if len(digits) in padded.get(prefix, ()) else 0
        numbered.setdefault((prefix, width), set()).add(int(digits))
    parts = sorted(plain)
    for (prefix, width), numbers in sorted(numbered.items()):
        ranges = _ranges(sorted(numbers), max_range)
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            parts.append(f"{prefix}{ranges[0][0]:0{width}d}")
            continue
        text = ",".join(
            f"{lo:0{width}d}" if lo == hi else f"{lo:0{width}d}-{hi:0{width}d}" for lo, hi in ranges
        )
        parts.append(f"{prefix}[{text}]")
    return ",".join(parts)


def _ranges(numbers: List[int], max_range: int) -> List[Tuple[int, int]]:
    """Sorted distinct ``numbers`` as ``(low, high)`` runs of at most ``max_range``."""
    out: List[Tuple[int, int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1 and n - out[-1][0] < max_range:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out
