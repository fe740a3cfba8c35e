"""Reading the transition tables drawn in a state object's docstring, for tests that
check every cell (tests/transport/test_outbox.py, tests/remote/test_handoff.py)."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

import pytest


def drawn_tables(doc: str) -> List[Tuple[List[str], List[Tuple[str, List[str]]]]]:
    """The tables in a docstring: the literal block after each ``::``, a header of states,
    then rows of an event and one cell per state, cells apart by two spaces or more."""
    tables = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        block: List[str] = []
        for row in lines[i + 1 :]:
            if row.strip():
                block.append(row.strip())
            elif block:
                break
        header = block[0].split()
        rows = []
        for row in block[1:]:
            cells = re.split(r"\s{2,}", row)
            if len(cells) != len(header) + 1:
                raise ValueError(f"a drawn row without one cell per state: {row!r}")
            rows.append((cells[0], cells[1:]))
        tables.append((header, rows))
    return tables


def cells(table) -> list:
    header, rows = table
    return [
        pytest.param(state, event, cell, id=f"{state}-{event}")
        for event, row in rows
        for state, cell in zip(header, row)
    ]


def split_cell(cell: str, states: List[str]) -> Tuple[Optional[str], str]:
    """A cell is ``[next state] answer``."""
    first, _, rest = cell.partition(" ")
    if first in states and rest:
        return first, rest
    return None, cell
