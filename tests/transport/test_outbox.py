"""The Channel's outbox as a pure object: every cell of the two tables drawn in
``Outbox``'s docstring, read from the docstring itself (so the drawing cannot drift from
the code), plus the cutting into batches. No sockets, threads or clocks."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import pytest
from drawn import cells, drawn_tables, split_cell

from easycluster.errors import ConnectionLost, FrameTooLarge
from easycluster.protocol.frames import BATCH_ITEM_OVERHEAD
from easycluster.transport.outbox import (
    ALONE,
    BATCH_BYTES,
    BATCH_MAX,
    BURST_GAP,
    EXIT,
    NO_WRITER,
    NOTHING,
    NOTIFY,
    START,
    WAIT,
    WRITE,
    WRITER_BUSY,
    WRITER_IDLE,
    Outbox,
)

LIMIT = 1000  # the peer's limit in these tests; the batch cap is the same
SMALL = b"s" * 10
FILLER = b"f" * LIMIT  # brings any outbox to the byte cap
TOO_LARGE = b"x" * (LIMIT + 1)


BOX_TABLE, WRITER_TABLE = drawn_tables(Outbox.__doc__ or "")


def lone(box: Outbox) -> float:
    return box.last_post + 1.0


def burst(box: Outbox) -> float:
    return box.last_post + BURST_GAP / 2


def box_in(state: str) -> Outbox:
    """An outbox in a state of the first table, reached by its own events (no writer)."""
    box = Outbox(LIMIT)
    if state != "EMPTY":  # (a closed outbox keeps what it held: nobody will send it)
        assert box.hold(1, SMALL) == NOTHING
    if state == "FULL":
        assert box.hold(1, FILLER) == WRITE
    if state == "CLOSED":
        assert box.close("gone")
    assert box.state == state
    return box


# The body each event queues, if it queues one.
BOX_EVENTS: Dict[str, Tuple[Callable[[Outbox], object], Optional[bytes]]] = {
    "post flush": (lambda b: b.post(2, SMALL, True, burst(b)), SMALL),  # (flush beats burst)
    "post lone": (lambda b: b.post(2, SMALL, False, lone(b)), SMALL),
    "post burst": (lambda b: b.post(2, SMALL, False, burst(b)), SMALL),
    "post burst fills": (lambda b: b.post(2, FILLER, False, burst(b)), FILLER),
    "post too large": (lambda b: b.post(2, TOO_LARGE, False, burst(b)), None),
    "post behind": (lambda b: b.post_behind(2, SMALL), SMALL),
    "hold": (lambda b: b.hold(2, SMALL), SMALL),
    "hold fills": (lambda b: b.hold(2, FILLER), FILLER),
    "hold too large": (lambda b: b.hold(2, TOO_LARGE), None),
    "later": (lambda b: b.later(2, SMALL), SMALL),
    "later too large": (lambda b: b.later(2, TOO_LARGE), None),
    "flush": (lambda b: b.flush(), None),
    "flush later": (lambda b: b.flush_later(), None),
    "take": (lambda b: b.take(), None),
    "close": (lambda b: b.close("closed again"), None),
}

CODES = {
    "ALONE": ALONE,
    "WRITE": WRITE,
    "-": NOTHING,
    "START": START,
    "NOTIFY": NOTIFY,
    "WAIT": WAIT,
    "EXIT": EXIT,
    "wake": START,
}  # (wake, with no writer yet: START)


def test_the_tables_draw_every_event_and_only_those():
    assert [event for event, _ in BOX_TABLE[1]] == list(BOX_EVENTS)
    assert BOX_TABLE[0] == ["EMPTY", "QUEUED", "FULL", "CLOSED"]
    assert WRITER_TABLE[0] == ["NO_WRITER", "WRITER_BUSY", "WRITER_IDLE"]
    assert [event for event, _ in WRITER_TABLE[1]] == list(WRITER_EVENTS)


@pytest.mark.parametrize("state, event, cell", cells(BOX_TABLE))
def test_outbox_transition(state, event, cell):
    box = box_in(state)
    before = list(box.items)
    nbytes = box.nbytes
    do, body = BOX_EVENTS[event]
    next_state, answer = split_cell(cell, BOX_TABLE[0])
    if answer == "lost":
        with pytest.raises(ConnectionLost, match="gone"):
            do(box)
    elif answer == "too large":
        with pytest.raises(FrameTooLarge, match=f"{LIMIT + 1} bytes exceeds .* {LIMIT} bytes"):
            do(box)
    else:
        got = do(box)
        if answer in ("bodies", "none"):
            assert got == ((before, nbytes) if before else ((), 0))
        elif answer in ("True", "False"):
            assert got is (answer == "True")
        else:
            assert got == CODES[answer]
    assert box.state == (next_state or state)
    if answer == "wake":
        assert box.writer == WRITER_BUSY
    if answer in ("bodies", "none"):
        assert (box.items, box.nbytes) == ([], 0)
    elif body is not None and answer not in ("ALONE", "lost", "too large"):
        assert box.items == before + [(2, body)]  # queued, after what was there
        assert box.nbytes == nbytes + len(body) + BATCH_ITEM_OVERHEAD
    else:
        assert box.items == before  # nothing queued
    if state == "CLOSED":
        assert box.reason == "gone"  # (the first reason stays)
    elif event == "close":
        assert box.reason == "closed again"


WRITER_STATES = {"NO_WRITER": NO_WRITER, "WRITER_BUSY": WRITER_BUSY, "WRITER_IDLE": WRITER_IDLE}


def writer_in(state: str) -> Outbox:
    """An empty outbox whose writer thread is in ``state``, reached by the outbox's events."""
    box = Outbox(LIMIT)
    if state != "NO_WRITER":
        assert box.later(1, SMALL) == START
        box.take()
    if state == "WRITER_IDLE":
        assert box.writer_next() == WAIT
    assert box.writer == WRITER_STATES[state]
    return box


def _with_body(box: Outbox) -> Outbox:
    box.hold(1, SMALL)  # (hold wakes nobody)
    return box


def _closed(box: Outbox) -> Outbox:
    box.close("gone")
    return box


WRITER_EVENTS: Dict[str, Callable[[Outbox], int]] = {
    "wake": lambda b: _with_body(b).flush_later(),
    "writer_next, empty": lambda b: b.writer_next(),
    "writer_next, bodies": lambda b: _with_body(b).writer_next(),
    "writer_next, closed": lambda b: _closed(b).writer_next(),
}


@pytest.mark.parametrize("state, event, cell", cells(WRITER_TABLE))
def test_writer_transition(state, event, cell):
    box = writer_in(state)
    if cell == "illegal":
        with pytest.raises(RuntimeError, match="no writer thread was started"):
            WRITER_EVENTS[event](box)
        assert box.writer == NO_WRITER
        return
    next_state, answer = split_cell(cell, WRITER_TABLE[0])
    assert WRITER_EVENTS[event](box) == CODES[answer]
    assert box.writer == WRITER_STATES[next_state or state]


def test_a_burst_gathers_and_the_writer_thread_sends_it():
    box = Outbox(1 << 20)
    assert box.post(1, b"a", False, 10.0) == ALONE  # a lone post goes straight out
    assert box.post(1, b"b", False, 10.0 + BURST_GAP / 2) == START  # a burst: the writer
    assert box.post(1, b"c", False, 10.0 + BURST_GAP) == NOTHING  # (it is busy: it will see)
    assert box.writer_next() == WRITE
    assert box.take() == ([(1, b"b"), (1, b"c")], 2 + 2 * BATCH_ITEM_OVERHEAD)
    assert box.writer_next() == WAIT
    assert box.later(1, b"d") == NOTIFY
    assert box.post(1, b"e", True, 20.0) == WRITE  # a flush behind a queued body writes both
    assert [body for _, body in box.take()[0]] == [b"d", b"e"]


def test_the_channels_shortcut_answers_as_post_and_counts_for_the_next_burst():
    box = Outbox(LIMIT)
    assert box.lone(10.0)  # (nothing posted before)
    assert box.last_post == 10.0
    assert not box.lone(10.0 + BURST_GAP / 2)  # a burst, as post would answer
    assert box.post(1, SMALL, False, 10.0 + BURST_GAP) == START  # and post sees it too
    assert box.lone(20.0)  # apart from the last post again


def test_every_post_counts_for_the_next_burst_even_one_that_raises():
    box = Outbox(LIMIT)
    box.post(1, SMALL, True, 5.0)
    assert box.last_post == 5.0
    with pytest.raises(FrameTooLarge):
        box.post(1, TOO_LARGE, False, 6.0)
    assert box.last_post == 6.0
    box.hold(1, SMALL)
    box.later(1, SMALL)  # (neither is a post: the burst clock is untouched)
    assert box.last_post == 6.0


def test_the_count_limit_fills_the_outbox_too():
    box = Outbox(1 << 30)
    for _ in range(BATCH_MAX - 1):
        assert box.hold(1, b"") == NOTHING
    assert box.hold(1, b"") == WRITE
    assert box.state == "FULL"


def test_the_batch_cap_is_the_peers_limit_when_that_is_lower():
    assert Outbox(LIMIT).cap == LIMIT
    assert Outbox(1 << 30).cap == BATCH_BYTES


def test_a_closed_outbox_says_connection_closed_without_a_reason():
    box = Outbox(LIMIT)
    assert box.close("")
    with pytest.raises(ConnectionLost, match="connection closed"):
        box.post(1, SMALL, True, 1.0)


def sizes(batch) -> int:
    return sum(len(body) + BATCH_ITEM_OVERHEAD for _, body in batch)


def test_batches_within_the_limits_are_one():
    box = Outbox(LIMIT)
    items = [(1, SMALL)] * 3
    assert box.batches(items, sizes(items)) == (items,)


@pytest.mark.parametrize(
    "bodies",
    [
        [SMALL] * 200,  # the byte cap
        [b""] * (2 * BATCH_MAX + 3),  # the count limit
        [SMALL, FILLER, SMALL, FILLER, FILLER],  # a body alone above the cap: a batch of one
    ],
)
def test_batches_are_cut_within_the_limits_in_order(bodies):
    box = Outbox(LIMIT)
    items = [(i, body) for i, body in enumerate(bodies)]
    got = box.batches(items, sizes(items))
    assert len(got) > 1
    assert [item for batch in got for item in batch] == items
    for batch in got:
        assert batch and len(batch) <= BATCH_MAX
        assert len(batch) == 1 or sizes(batch) <= LIMIT
