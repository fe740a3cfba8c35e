"""The fan-out window as a pure object: at most ``limit`` slots run, the next starts
when one closes, in the order they came."""

from __future__ import annotations

import pytest

from easycluster.cluster.window import FanoutWindow


def test_at_most_limit_start_and_the_next_starts_when_one_closes():
    w = FanoutWindow(2)
    for k in "abcde":
        w.add(k)
    assert w.take() == ["a", "b"]
    assert w.take() == []  # full: nothing more until one closes
    w.done("b")
    assert w.take() == ["c"]
    w.done("a")
    w.done("c")
    assert w.take() == ["d", "e"]
    assert len(w) == 2
    w.done("d")
    w.done("e")
    assert len(w) == 0 and w.take() == []


def test_a_smaller_limit_stops_new_starts_never_running_ones():
    w = FanoutWindow(3)
    for k in "abcdef":
        w.add(k)
    assert w.take() == ["a", "b", "c"]
    w.limit = 1
    w.done("a")
    assert w.take() == []  # still two running, above the new limit
    w.done("b")
    assert w.take() == []
    w.done("c")
    assert w.take() == ["d"]
    w.limit = 10
    assert w.take() == ["e", "f"]


def test_done_of_a_slot_not_running_is_an_error():
    w = FanoutWindow(1)
    w.add("a")
    w.add("b")
    with pytest.raises(RuntimeError, match="'b' is not running"):
        w.done("b")  # waiting, not taken
    assert w.take() == ["a"]
    w.done("a")
    with pytest.raises(RuntimeError, match="'a' is not running"):
        w.done("a")  # twice


def test_drop_returns_what_waited_and_keeps_the_running():
    w = FanoutWindow(1)
    for k in "abc":
        w.add(k)
    assert w.take() == ["a"]
    assert w.drop() == ["b", "c"]
    assert w.take() == [] and len(w) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True, None])
def test_a_limit_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="fanout must be a positive integer"):
        FanoutWindow(bad)


def test_forget_takes_slots_out_waiting_or_running_and_ignores_the_others():
    w = FanoutWindow(2)
    for k in "abcde":
        w.add(k)
    assert w.take() == ["a", "b"]
    w.forget(["b", "d", "zz"])  # one running, one waiting, one unknown
    assert len(w) == 3
    assert w.take() == ["c"]  # b's place is free again
    w.done("a")
    assert w.take() == ["e"]
    with pytest.raises(RuntimeError):
        w.done("b")  # forgotten: no longer running
