"""``Suspension`` (``task.suspend()``'s state): every cell of the table drawn in its
docstring, read from the docstring itself, with threads of the test standing for the
Task's loop and for the threads that call ``suspend()``. Every wait is bounded; every
thread is released and joined."""

from __future__ import annotations

import signal
import threading

import pytest
from drawn import cells, drawn_tables, split_cell

from easycluster.cluster.suspension import OFF, RUNNING, SUSPENDED, WANTED, Suspension

pytestmark = pytest.mark.timeout(30)

TABLE = drawn_tables(Suspension.__doc__ or "")[0]
STATES = TABLE[0]
WAIT = 10  # s: the bound on every wait that should end at once


class Bench:
    """A Suspension in a state of the table, reached by its own events, and the threads
    standing around it (the loop parked in a checkpoint, askers waiting)."""

    def __init__(self, state):
        self.s = Suspension()
        self.threads = []
        self.poked = threading.Event()
        self.answers = {}
        if state != OFF:
            self.s.begin()
        if state in (WANTED, SUSPENDED):
            assert self.s.request(True, self.poke) is True  # (ask own)
        if state == SUSPENDED:
            self.loop = self.spawn("loop", self.s.checkpoint)
            assert wait_for(lambda: self.s.state == SUSPENDED)
        assert self.s.state == state

    def poke(self):
        self.poked.set()

    def spawn(self, name, call):
        def run():
            self.answers[name] = call()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def ask(self):
        """``suspend()`` from another thread, on a thread of its own: it waits or not."""
        return self.spawn("ask", lambda: self.s.request(False, self.poke))

    def close(self):
        self.s.end()  # (releases any thread still waiting)
        for thread in self.threads:
            thread.join(WAIT)
        assert not any(t.is_alive() for t in self.threads)


def wait_for(cond):
    """Bounded: a condition variable of the test's own would hide the one under test."""
    done = threading.Event()
    for _ in range(WAIT * 100):
        if cond():
            return True
        done.wait(0.01)
    return bool(cond())


def ended(thread):
    thread.join(WAIT)
    return not thread.is_alive()


@pytest.mark.parametrize("state, event, cell", cells(TABLE))
def test_every_cell(state, event, cell):
    bench = Bench(state)
    try:
        check(bench, event, cell)
    finally:
        bench.close()


def check(bench, event, cell):
    s = bench.s
    before = s.state
    after, answer = split_cell(cell, STATES)
    after = after or before
    if event == "begin":
        if answer == "illegal":
            with pytest.raises(RuntimeError):
                s.begin()
        else:
            s.begin()
        assert s.state == after
    elif event == "ask":
        asker = bench.ask()
        if answer == "waits":
            assert bench.poked.wait(WAIT)  # (the loop is woken)
            assert s.state == after and asker.is_alive()
            bench.spawn("loop", s.checkpoint)  # the loop parks: the ask is answered
            assert ended(asker) and bench.answers["ask"] is True
            assert s.state == SUSPENDED
        else:
            assert ended(asker) and bench.answers["ask"] is (answer == "True")
            assert not bench.poked.is_set() and s.state == after
    elif event == "ask own":
        assert s.request(True, bench.poke) is (answer == "True")
        assert not bench.poked.is_set() and s.state == after
    elif event == "checkpoint":
        if answer == "parks":
            loop = bench.spawn("loop", s.checkpoint)
            assert wait_for(lambda: s.state == after) and loop.is_alive()
            assert s.withdraw() is True  # (then it goes on)
            assert ended(loop)
        else:
            s.checkpoint()  # returns at once (SUSPENDED: cannot happen, the loop is parked)
            assert s.state == after
    elif event == "withdraw":
        assert s.withdraw() is (answer == "True")
        assert s.state == after
        if before == SUSPENDED:
            assert ended(bench.loop)  # the loop goes on
    elif event == "end":
        s.end()
        assert s.state == after
        if before == SUSPENDED:
            assert ended(bench.loop)
    else:
        raise AssertionError(f"an event the test does not know: {event}")


def test_a_waiting_ask_gets_false_when_withdrawn_or_ended_before_the_loop_parks():
    for release in (Suspension.withdraw, Suspension.end):
        bench = Bench(RUNNING)
        try:
            asker = bench.ask()
            assert bench.poked.wait(WAIT)
            release(bench.s)
            assert ended(asker) and bench.answers["ask"] is False
        finally:
            bench.close()


def test_two_askers_are_answered_by_one_park_and_freed_by_one_withdraw():
    bench = Bench(RUNNING)
    try:
        first = bench.spawn("first", lambda: bench.s.request(False, bench.poke))
        second = bench.spawn("second", lambda: bench.s.request(False, bench.poke))
        assert bench.poked.wait(WAIT)
        loop = bench.spawn("loop", bench.s.checkpoint)
        assert ended(first) and ended(second)
        assert bench.answers["first"] is True and bench.answers["second"] is True
        assert bench.s.withdraw() is True and ended(loop)
        assert bench.s.state == RUNNING
    finally:
        bench.close()


class Interrupted(Exception):
    pass


def test_an_exception_while_parked_leaves_it_off_and_goes_on_up():
    """A signal's handler raising on the parked thread (Ctrl-C's way): the run ends."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")

    def handler(signum, frame):
        raise Interrupted()

    s = Suspension()
    s.begin()
    s.request(True, lambda: None)
    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(
        0.1, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1)
    )
    try:
        timer.start()
        with pytest.raises(Interrupted):
            s.checkpoint()  # parks on this (main) thread until the signal
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
        s.end()
    assert s.state == OFF
    assert s.request(False, lambda: None) is False
