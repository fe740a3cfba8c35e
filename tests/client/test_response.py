"""``Response`` as a ``concurrent.futures.Future`` whose Future part is made on first
use: every order of "completed" and "Future machinery touched", in memory (a stand-in
reader and client: no sockets needed to drive a Response)."""

from __future__ import annotations

import concurrent.futures as cf
import threading

import pytest

from easycluster.client.response import Response


class Reader:
    """Stands in for a connection's reader: waiting means waiting for the test."""

    def __init__(self) -> None:
        self.watched = 0
        self.forgotten = []

    def wait_for(self, fut, timeout):
        cf.Future.exception(fut, timeout) if fut._base_ready else None

    def watch(self):
        self.watched += 1

    def forget(self, rid):
        self.forgotten.append(rid)


class Client:
    call_timeout = None
    peername = "stand-in"

    def report_exception(self, exc):
        pass


def new():
    return Response(Client(), Reader(), 7)


def test_completed_before_any_future_use():
    r = new()
    r.set_result(5)
    assert r.done() and r.wait() == 5 and r.result() == 5 and r.exception() is None
    assert not r._base_ready  # nothing needed Future's machinery
    done, not_done = cf.wait([r], timeout=0)
    assert done == {r} and not not_done and r._base_ready
    assert list(cf.as_completed([r], timeout=0)) == [r]
    seen = []
    r.add_done_callback(seen.append)
    assert seen == [r] and not r.running() and not r.cancelled()


def test_future_machinery_first_then_completion():
    r = new()
    seen = []
    r.add_done_callback(seen.append)
    assert r._base_ready and r.reader.watched == 1 and not r.done()
    waiter = threading.Thread(target=lambda: seen.append(cf.wait([r], timeout=30)))
    waiter.start()
    r.set_exception(ValueError("no"))
    waiter.join(30)
    assert seen[0] is r and seen[1].done == {r}
    assert isinstance(r.exception(), ValueError)
    with pytest.raises(ValueError):
        r.wait(origexc=True)


def test_cancel_before_and_after_the_reply():
    r = new()
    assert r.cancel() and r.cancelled() and r.done() and r.reader.forgotten == [7]
    with pytest.raises(cf.InvalidStateError):
        r.set_result(1)  # a late reply is refused
    with pytest.raises(cf.CancelledError):
        r.wait(0)
    r = new()
    r.set_result(1)
    assert not r.cancel() and r.result() == 1


def test_a_second_outcome_is_refused():
    r = new()
    r.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        r.set_exception(ValueError())
    r = new()
    r.add_done_callback(lambda f: None)
    r.set_result(2)
    with pytest.raises(cf.InvalidStateError):
        r.set_result(3)
    assert r.wait() == 2


def test_completion_racing_with_the_first_future_use_never_loses_the_outcome():
    """One thread completes while another sets up the Future part (cf.wait): whichever
    order they interleave in, the waiter sees the result, and it is set once."""
    for i in range(2000):
        r = new()
        go = threading.Barrier(2)
        out = []

        def complete(r=r, go=go, i=i):
            go.wait()
            r.set_result(i)

        t = threading.Thread(target=complete)
        t.start()
        go.wait()
        out.append(cf.wait([r], timeout=30))
        t.join()
        assert out[0].done == {r} and r.result() == i
