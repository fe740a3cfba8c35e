"""The per-node state machine as a pure object: every cell of the table drawn in
``NodeState``'s docstring, read from the docstring itself (so the drawing cannot drift
from the code). No processes."""

from __future__ import annotations

from typing import Callable, Dict

import pytest
from drawn import cells, drawn_tables, split_cell

from easycluster.cluster import nodestate
from easycluster.cluster.nodestate import (
    ABORTED,
    FAILED,
    FINAL_STATES,
    HOSTKEY,
    HUP,
    PENDING,
    RC_NOT_STARTED,
    READING,
    STARTED,
    STATES,
    TIMEOUT,
    UNREACHABLE,
    NodeState,
)

(TABLE,) = drawn_tables(NodeState.__doc__ or "")

# How a state of the table is reached, by the machine's own events.
REACH: Dict[str, Callable[[NodeState], object]] = {
    PENDING: lambda s: None,
    STARTED: lambda s: s.start(),
    READING: lambda s: (s.start(), s.read()),
    HUP: lambda s: (s.start(), s.exit(3)),
    TIMEOUT: lambda s: (s.start(), s.timeout()),
    UNREACHABLE: lambda s: (s.start(), s.unreachable(255)),
    HOSTKEY: lambda s: (s.start(), s.hostkey(255)),
    FAILED: lambda s: s.spawn_error(),
    ABORTED: lambda s: s.abort(),
}

EVENTS: Dict[str, Callable[[NodeState], str]] = {
    "start": lambda s: s.start(),
    "spawn_error": lambda s: s.spawn_error(),
    "read": lambda s: s.read(),
    "exit": lambda s: s.exit(7),
    "unreachable": lambda s: s.unreachable(255),
    "hostkey": lambda s: s.hostkey(255),
    "timeout": lambda s: s.timeout(),
    "abort": lambda s: s.abort(),
}

ANSWERS = {
    "pickup": nodestate.PICKUP,
    "read": nodestate.READ,
    "close": nodestate.CLOSE,
    "pickup+close": nodestate.PICKUP_CLOSE,
    "kill": nodestate.KILL,
    "-": nodestate.NOTHING,
}

EXPECTED_RC = {HUP: 7, UNREACHABLE: 255, HOSTKEY: 255, FAILED: RC_NOT_STARTED}

# The drawn FINAL column stands for every final state: test each.
CASES = [
    pytest.param(state, event, cell, id=f"{state}-{event}")
    for p in cells(TABLE)
    for (column, event, cell) in [p.values]
    for state in (sorted(FINAL_STATES) if column == "FINAL" else [column.lower()])
]


def node_in(state: str) -> NodeState:
    node = NodeState()
    REACH[state](node)
    assert node.state == state
    return node


def test_the_table_draws_every_event_and_state():
    assert TABLE[0] == ["PENDING", "STARTED", "READING", "FINAL"]
    assert [event for event, _ in TABLE[1]] == list(EVENTS)
    assert set(REACH) == set(STATES)
    assert {c.lower() for c in TABLE[0][:3]} | FINAL_STATES == set(STATES)


@pytest.mark.parametrize("state, event, cell", CASES)
def test_node_transition(state, event, cell):
    node = node_in(state)
    rc_before = node.rc
    if cell == "illegal":
        with pytest.raises(RuntimeError, match=f"{event!r} cannot happen in state {state!r}"):
            EVENTS[event](node)
        assert node.state == state and node.rc == rc_before  # nothing changed
        return
    next_state, answer = split_cell(cell, TABLE[0] + [s.upper() for s in STATES])
    assert EVENTS[event](node) == ANSWERS[answer]
    expected = (next_state or state.upper()).lower()
    assert node.state == expected
    assert node.final == (expected in FINAL_STATES)
    if expected in EXPECTED_RC and state not in FINAL_STATES:
        assert node.rc == EXPECTED_RC[expected]
    if expected in (TIMEOUT, ABORTED, STARTED, READING):
        assert node.rc is None


def test_a_slot_gets_exactly_one_final_state_on_every_path():
    for path in (
        ["start", "read", "read", "exit"],
        ["start", "exit"],
        ["start", "read", "timeout"],
        ["start", "unreachable"],
        ["start", "read", "hostkey"],
        ["spawn_error"],
        ["abort"],
        ["start", "abort"],
    ):
        node = NodeState()
        for event in path:
            EVENTS[event](node)
        assert node.final
        for event in EVENTS:  # and nothing moves it afterwards
            with pytest.raises(RuntimeError):
                EVENTS[event](node)
