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


def test_a_done_callback_finds_the_outcome_already_stored():
    """acall's mirror callback reads wait(0) at once (CI saw None here once: the Future
    part heard of the reply before the reply was stored)."""
    for setup_first in (True, False):
        r = new()
        seen = []
        if setup_first:
            r.add_done_callback(lambda f, seen=seen: seen.append(f.wait(0)))
            r.set_result(42)
        else:
            r.set_result(42)
            r.add_done_callback(lambda f, seen=seen: seen.append(f.wait(0)))
        assert seen == [42]


def test_a_done_callback_may_start_another_response():
    """Callbacks run outside the lock that orders set-up: one that sets up another
    response (an oncomplete that makes a further call) must not deadlock."""
    first, second = new(), new()
    seen = []

    def chain(f):
        second.add_done_callback(lambda g: seen.append(g.result()))
        second.set_result(f.result() + 1)

    first.add_done_callback(chain)
    t = threading.Thread(target=first.set_result, args=(1,), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and seen == [2]
    third = new()
    third.set_result(5)  # replayed by the set-up: the callback runs then
    fourth = new()
    third.add_done_callback(lambda f: fourth.add_done_callback(lambda g: None))
    assert fourth._base_ready


def test_cancel_racing_with_the_reply_settles_once():
    """cancel() on one thread while the reply lands on another: either the call is
    cancelled and the reply refused, or the reply wins and cancel() says False; the
    response never reports both."""
    for i in range(2000):
        r = new()
        r._base()  # a caller holding the Future: cancel and completion both see it
        go = threading.Barrier(2)
        refused = []

        def complete(r=r, go=go, i=i, refused=refused):
            go.wait()
            try:
                r.set_result(i)
            except cf.InvalidStateError:
                refused.append(True)

        t = threading.Thread(target=complete)
        t.start()
        go.wait()
        cancelled = r.cancel()
        t.join()
        if cancelled:
            assert r.cancelled() and refused and not r.finished
            with pytest.raises(cf.CancelledError):
                r.result(0)
        else:
            assert not refused and r.result(0) == i and not r.cancelled()


def test_future_state_read_first_sets_the_future_part_up():
    """Future's own attributes, read before anything set them up (as a subclass or a
    library reaching into a Future might), set the Future part up and replay the
    outcome; other unknown attributes are errors, and Response has no ``__getattr__``
    (it would keep CPython from specializing every attribute read of a call)."""
    assert "__getattr__" not in vars(Response)
    r = new()
    r.set_result(3)
    assert not r._base_ready
    assert r._state == "FINISHED" and r._result == 3 and r._base_ready
    r = new()
    assert r._done_callbacks == [] and r._base_ready and not r.done()
    with pytest.raises(AttributeError):
        r.no_such_attribute  # noqa: B018
    with pytest.raises(AttributeError):
        r.__no_such_dunder__  # noqa: B018
    r = new()
    r._base()
    del r._result  # (as a plain Future's: gone, not a KeyError)
    assert not hasattr(r, "_result")
