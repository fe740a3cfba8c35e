"""The server's reader hand-off as a pure object: every cell of the two tables drawn in
``ReaderHandoff``'s docstring, read from the docstring itself (so the drawing cannot drift
from the code), and the walks the server takes through them. No processes, sockets or
threads."""

from __future__ import annotations

from typing import Any, Callable, Dict

import pytest
from drawn import cells, drawn_tables, split_cell

from easycluster.remote.handoff import (
    DRAINED,
    END,
    EXIT,
    MAIN,
    POLL,
    READ,
    READING,
    RETURNING,
    RUN_BACKLOG,
    SLEEP,
    STANDBY,
    TAKEN,
    WAIT,
    WATCH,
    ReaderHandoff,
)

IDLE_AFTER = 1.0
T0 = 100.0  # the standby's clock in the set-ups


READER_TABLE, DRAIN_TABLE = drawn_tables(ReaderHandoff.__doc__ or "")


def handoff_in(state: str) -> ReaderHandoff:
    """A hand-off in ``state``, reached the way the server gets there: one request read
    by the main thread, its call running long, the batch done. (The count of requests:
    one in RUNNING and TAKEN, none in READING and RETURNING.)"""
    h = ReaderHandoff(IDLE_AFTER)
    if state == "READING":
        return h
    assert h.main_next() == READ
    assert h.begin(["r1"]) == ["r1"]
    assert h.requests == 1  # (``begin`` counts what the main thread read)
    assert h.call(False) is False
    if state != "RUNNING":
        assert h.standby_poll(T0 + 0.02) == WATCH
        assert h.standby_check() is True
    if state == "RETURNING":
        assert h.main_done(1) == WAIT
    assert h.state_name == state
    return h


def with_backlog(h: ReaderHandoff) -> ReaderHandoff:
    h.backlog.append("b0")  # (the backlog is data, not a state: set directly)
    return h


def ended(h: ReaderHandoff) -> ReaderHandoff:
    assert h.end("gone")
    return h


def same_call(h: ReaderHandoff) -> ReaderHandoff:
    h.watched = h.calls  # (what a WATCH poll records)
    return h


def next_call(h: ReaderHandoff) -> ReaderHandoff:
    h.watched = h.calls - 1  # (a call began since the WATCH poll)
    return h


READER_EVENTS: Dict[str, Callable[[ReaderHandoff], Any]] = {
    "main_next": lambda h: h.main_next(),
    "main_next, backlog": lambda h: with_backlog(h).main_next(),
    "main_next, ended": lambda h: ended(h).main_next(),
    "begin(read)": lambda h: h.begin(["r2"]),
    "begin(read), backlog": lambda h: with_backlog(h).begin(["r2"]),
    "begin(backlog)": lambda h: with_backlog(h).begin(),
    "call": lambda h: h.call(True),
    "main_done": lambda h: h.main_done(1),
    "standby_poll": lambda h: h.standby_poll(h.last_call + IDLE_AFTER / 2),
    "standby_poll, quiet": lambda h: h.standby_poll(h.last_call + IDLE_AFTER * 2),
    "standby_poll, ended": lambda h: ended(h).standby_poll(h.last_call),
    "standby_check, same call": lambda h: same_call(h).standby_check(),
    "standby_check, next call": lambda h: next_call(h).standby_check(),
    "standby_check, ended": lambda h: same_call(ended(h)).standby_check(),
    "standby_read": lambda h: h.standby_read(["s1"]),
    "end": lambda h: h.end("gone"),
    "end, ended": lambda h: ended(h).end("again"),
}

CODES = {
    "READ": READ,
    "RUN_BACKLOG": RUN_BACKLOG,
    "WAIT": WAIT,
    "END": END,
    "POLL": POLL,
    "WATCH": WATCH,
    "SLEEP": SLEEP,
    "EXIT": EXIT,
    "MAIN": MAIN,
    "True": True,
    "False": False,
    "None": None,
    "more": True,
}  # (call(True))


def test_the_tables_draw_every_event_and_only_those():
    assert READER_TABLE[0] == ["READING", "RUNNING", "TAKEN", "RETURNING"]
    assert [event for event, _ in READER_TABLE[1]] == list(READER_EVENTS)
    assert DRAIN_TABLE[0] == ["OPEN", "DRAINING", "FINISHING"]
    assert [event for event, _ in DRAIN_TABLE[1]] == list(DRAIN_EVENTS)


@pytest.mark.parametrize("state, event, cell", cells(READER_TABLE))
def test_reader_transition(state, event, cell):
    h = handoff_in(state)
    requests, calls = h.requests, h.calls
    do = READER_EVENTS[event]
    if cell == "illegal":
        with pytest.raises(RuntimeError, match=f"not allowed in state {state}"):
            do(h)
        assert h.state_name == state
        return
    next_state, answer = split_cell(cell, READER_TABLE[0])
    backlog = list(h.backlog) + (["b0"] if "backlog" in event else [])
    got = do(h)
    if answer == "batch":
        assert got == backlog + (["r2"] if "read" in event else [])  # backlog first
        assert not h.backlog
        assert h.calls == calls + (len(got) == 1)  # a lone call is counted by ``begin``
        assert h.requests == requests + ("read" in event)  # (read: counted here)
    else:
        assert (type(got), got) == (type(CODES[answer]), CODES[answer])
    assert h.state_name == (next_state or state)
    if event == "call":
        assert h.calls == calls + 1
    if event == "main_done":
        assert h.requests == requests - 1
    if event == "standby_read":
        assert list(h.backlog) == ["s1"]  # queued, whether it gives back or not
        assert h.requests == requests + 1  # and counted
    if event == "standby_poll":
        assert h.standby_idle is False
    if event == "standby_poll, quiet":
        assert h.standby_idle is (answer == "SLEEP")
    if event == "standby_poll" and state == "RUNNING":
        assert h.watched == h.calls
    if event.startswith("end"):
        assert h.ended == "gone"  # (the first reason stays)


def drain_in(state: str) -> ReaderHandoff:
    """A hand-off in a state of the drain table, reached by its events (READING)."""
    h = ReaderHandoff(IDLE_AFTER)
    if state in ("OPEN", "DRAINING"):
        assert h.receive()
    if state == "DRAINING":
        assert h.drain() is False
    if state == "FINISHING":
        assert h.drain() is True
        assert h.finish() == MAIN
    assert drain_state(h) == state
    return h


def drain_state(h: ReaderHandoff) -> str:
    return "FINISHING" if h.finishing else "DRAINING" if h.draining else "OPEN"


DRAIN_EVENTS: Dict[str, Callable[[ReaderHandoff], Any]] = {
    "receive": lambda h: h.receive(),
    "answered": lambda h: h.answered(1),
    "drain": lambda h: h.drain(),
    "finish": lambda h: h.finish(),
}


@pytest.mark.parametrize("state, event, cell", cells(DRAIN_TABLE))
def test_drain_transition(state, event, cell):
    h = drain_in(state)
    requests = h.requests
    do = DRAIN_EVENTS[event]
    if cell == "illegal":
        with pytest.raises(RuntimeError, match="reader hand-off: "):
            do(h)
        assert (drain_state(h), h.requests) == (state, requests)
        return
    next_state, answer = split_cell(cell, DRAIN_TABLE[0])
    assert do(h) is CODES[answer]
    assert drain_state(h) == (next_state or state)
    change = {"receive": int(answer == "True"), "answered": -1}.get(event, 0)
    assert h.requests == requests + change


def test_illegal_events_name_the_event_and_the_state():
    h = handoff_in("RETURNING")
    with pytest.raises(
        RuntimeError,
        match=r"^reader hand-off: main_done is not allowed in "
        r"state RETURNING$",
    ):
        h.main_done(1)
    with pytest.raises(RuntimeError, match="begin.read. is not allowed in state RETURNING"):
        h.begin(["r"])
    with pytest.raises(RuntimeError, match="finish before drain"):
        h.finish()


def test_more_answers_than_requests_is_an_error_and_changes_nothing():
    h = ReaderHandoff(IDLE_AFTER)
    h.receive()
    with pytest.raises(RuntimeError, match="2 answered, but only 1 requests were counted"):
        h.answered(2)
    assert h.requests == 1


def test_call_holds_only_when_more_calls_follow():
    h = handoff_in("RUNNING")
    assert h.call(True) is True
    assert h.call(False) is False


@pytest.mark.parametrize("state", ["TAKEN", "RETURNING"])
def test_finish_names_the_standby_while_it_reads(state):
    h = handoff_in(state)
    h.drain()
    assert h.finish() == STANDBY
    assert h.finish() is None  # (someone is at it)


def test_a_batch_counts_its_requests_and_the_last_one_drains():
    h = ReaderHandoff(IDLE_AFTER)
    batch = h.begin(["a", "b", "c"])
    assert h.requests == 3
    assert h.drain() is False
    assert h.receive() is False  # dropped: not run, not counted
    assert h.main_done(len(batch)) == DRAINED
    assert h.requests == 0


def test_thread_0s_requests_read_while_draining_are_dropped_not_counted():
    h = ReaderHandoff(IDLE_AFTER)
    assert h.receive()  # (another thread's call still runs: the drain waits for it)
    assert h.drain() is False
    assert h.begin(["late"]) == []  # read by the main thread: dropped
    assert h.state == READING and h.requests == 1
    assert h.main_next() == READ
    h2 = handoff_in("TAKEN")
    h2.drain()
    assert h2.standby_read(["late"]) is False  # read by the standby: dropped
    assert not h2.backlog and h2.requests == 1
    assert h2.main_done(1) == DRAINED  # the call that ran is the last one
    h3 = with_backlog(ReaderHandoff(IDLE_AFTER))  # (queued before the drain: counted)
    h3.requests = 1
    h3.drain()
    assert h3.begin(["late"]) == ["b0"]  # the backlog still runs, the late one not
    assert h3.main_done(1) == DRAINED


def test_a_quiet_standby_sleeps_and_the_next_batch_must_wake_it():
    h = ReaderHandoff(IDLE_AFTER)
    assert h.standby_idle  # (it may be asleep before the first batch: the first wakes it)
    assert h.standby_poll(T0) == SLEEP
    assert h.standby_idle
    h.begin(["r"])
    assert h.standby_poll(T0 + 1.01) == WATCH  # woken: polls again, and sees the call
    assert not h.standby_idle
    assert h.main_done(1) == READ
    assert h.standby_poll(T0 + 1.5) == POLL  # a call began less than idle_after ago
    assert h.standby_poll(T0 + 1.01 + IDLE_AFTER * 0.9) == POLL
    h.begin(["r2"])  # (a lone call: begun and answered between two polls)
    assert h.main_done(1) == READ
    assert h.standby_poll(T0 + 1.01 + IDLE_AFTER * 1.5) == POLL  # seen now: quiet from here
    assert h.standby_poll(T0 + 1.01 + IDLE_AFTER * 2.4) == POLL
    assert h.standby_poll(T0 + 1.01 + IDLE_AFTER * 2.6) == SLEEP


def test_a_long_call_hands_the_reads_over_and_back_in_order():
    h = ReaderHandoff(IDLE_AFTER)
    batch = h.begin(["a", "b"])
    assert h.call(True) is True  # "a": quick, its reply held
    assert h.standby_poll(T0 + 0.001) == WATCH
    assert h.call(False) is False  # "b" begins during the watch
    assert h.standby_check() is False  # a new call: watch again
    assert h.standby_poll(T0 + 0.03) == WATCH
    assert h.standby_check() is True  # "b" ran all along: the standby reads
    assert h.state == TAKEN
    assert h.standby_read(["c"]) is False  # the batch still runs: keep reading
    assert h.main_done(len(batch)) == RUN_BACKLOG  # it runs what the standby read
    assert h.state == RETURNING
    assert h.main_next() == RUN_BACKLOG  # (the same question, asked again)
    assert h.begin() == ["c"]
    assert h.state == TAKEN
    assert h.standby_read(["d"]) is False
    assert h.main_done(1) == RUN_BACKLOG
    assert h.begin() == ["d"]
    assert h.main_done(1) == WAIT  # nothing to run: wait for the standby's next read
    assert h.standby_read([]) is True  # (a ping): the reads go back
    assert h.state == READING
    assert h.main_next() == READ
    assert h.requests == 0


def test_the_end_lets_a_running_batch_finish_then_stops_both_threads():
    h = handoff_in("TAKEN")
    assert h.end("client went away")
    assert h.standby_read(["late"]) is False  # read before the end was seen: queued
    assert h.main_done(1) == END
    assert h.main_next() == END
    assert h.ended == "client went away"
    h2 = handoff_in("RUNNING")
    h2.end("gone")
    assert h2.standby_poll(T0) == EXIT
    h2.call(False)  # (the batch goes on)
    assert h2.main_done(1) == END
    assert h2.state == READING
