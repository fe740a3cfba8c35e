"""A fan-out's request pickled once and posted (``client/posting.py``), and the ways
around it: subclasses that change the call path, requests that are not plain data,
ThreadedClients among the targets; timeouts and errors as ``send_request``'s."""

from __future__ import annotations

import pytest
from helpers import in_threads

import easycluster
from easycluster import (
    CallTimeout,
    Client,
    ConnectionLost,
    call_multi,
    define_common,
    eval_multi,
)
from easycluster.client.parallel import call_each
from easycluster.client.posting import Posted, prepare
from easycluster.server import spawn_local

define_common("""
import os, threading, time

def posted_apply(f, x):
    return f(x)

def posted_nap(t, v):
    time.sleep(t)
    return v

def posted_thread_name():
    return threading.current_thread().name

def posted_fail(i):
    raise KeyError(i)
""")


class CountingClient(Client):
    """A user's subclass that sees every call (its raw_call must keep being called)."""

    seen = 0  # (a class default: an unknown attribute of a client is a remote global)

    def raw_call(self, func, args=(), kwargs=None, **opts):  # type: ignore[no-untyped-def]
        self.seen += 1
        return super().raw_call(func, args, kwargs, **opts)


@pytest.fixture(scope="module")
def servers():
    cs = [spawn_local() for _ in range(3)]
    yield cs
    for c in cs:
        c.close()


def test_a_plain_request_is_posted_to_plain_clients(servers, monkeypatch):
    posted = []
    real = Client.post_prepared

    def spy(self, *a, **kw):  # type: ignore[no-untyped-def]
        r = real(self, *a, **kw)
        posted.append(r)
        return r

    monkeypatch.setattr(Client, "post_prepared", spy)
    monkeypatch.setattr(Client, "send_request", None)  # (the general way is not taken)
    assert call_multi(servers, "posted_nap", 0, "v") == ["v"] * 3
    assert eval_multi(servers, "6 * 7") == [42] * 3
    twice = [servers[0], servers[1], servers[0]]  # (one client twice: a reply each)
    assert call_multi(twice, "posted_nap", 0, "w") == ["w"] * 3
    assert len(posted) == 9 and all(type(p) is Posted for p in posted)
    assert all(not s._reader.pending for s in servers)


def test_a_subclass_that_changes_the_call_path_is_called():
    plain, counting = spawn_local(), spawn_local(CountingClient)
    try:
        assert call_multi([plain, counting, plain], "posted_nap", 0, 5) == [5, 5, 5]
        assert counting.seen == 1
    finally:
        plain.close()
        counting.close()


def test_a_request_that_is_not_plain_data_goes_the_general_way(servers):
    assert prepare(0, "call", ("posted_apply", (lambda x: x + 1, 1), {})) is None
    assert call_multi(servers, "posted_apply", lambda x: x * 2, 21) == [42] * 3


def test_threaded_and_plain_clients_in_one_fan_out(servers):
    threaded = spawn_local(easycluster.ThreadedClient)
    try:
        got = call_multi([servers[0], threaded, servers[1]], "posted_nap", 0, "t")
        assert got == ["t"] * 3
    finally:
        threaded.close()


def test_a_late_reply_is_forgotten_and_the_client_goes_on():
    slow = spawn_local()
    try:
        out = call_multi(
            [slow], "posted_nap", 1.0, "late", call_timeout=0.2, return_exceptions=True
        )
        assert isinstance(out[0], CallTimeout)
        assert not slow._reader.pending  # nobody will wait for it: not kept
        # the late reply arrives while the next call waits: dropped, not taken for it
        assert slow.call("posted_nap", 0, "next") == "next"
    finally:
        slow.close()


def test_a_closed_or_dead_client_is_an_error_in_its_place(servers):
    closed, dead = spawn_local(), spawn_local()
    closed.close()
    dead.process.kill()
    dead.process.wait()
    try:
        targets = [servers[0], closed, dead, servers[1]]
        out = call_multi(targets, "posted_nap", 0, "ok", return_exceptions=True)
        assert out[0] == out[3] == "ok"
        assert isinstance(out[1], ConnectionLost) and "not connected" in str(out[1])
        assert isinstance(out[2], ConnectionLost)
        assert not closed._reader.pending and not dead._reader.pending
        with pytest.raises(ConnectionLost):  # (the first error, raised by default)
            call_multi(targets, "posted_nap", 0, "ok")
    finally:
        dead.close()


def test_remote_errors_raise_as_origexc_says(servers, capfd):
    with pytest.raises(KeyError):
        call_multi(servers, "posted_fail", 7)
    assert "Remote traceback" not in capfd.readouterr().err  # quiet by default
    out = call_multi(servers, "posted_fail", 7, origexc=False, return_exceptions=True)
    assert all(isinstance(e, easycluster.RemoteException) for e in out)
    assert all(isinstance(e.orig, KeyError) for e in out)
    out = call_multi(servers, "posted_fail", 7, origexc=True, return_exceptions=True)
    assert all(type(e) is KeyError for e in out)
    assert capfd.readouterr().err.count("Remote traceback") == 3  # once per host


def test_call_each_posts_to_the_thread_asked_for(servers):
    got = call_each(servers, "posted_thread_name", (), {}, threadid=7)
    names = [value for ok, value in got]
    assert all(ok for ok, _ in got)
    default = call_each(servers, "posted_thread_name", (), {})
    assert names != [value for _, value in default]


def test_posting_from_many_threads_keeps_each_reply_with_its_call(servers):
    def fan(i: int) -> None:
        for j in range(50):
            assert call_multi(servers, "posted_nap", 0, (i, j)) == [(i, j)] * 3

    in_threads(fan, 4)
