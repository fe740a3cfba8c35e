"""Many servers at once: call_multi & co. and ClientGroup, over real local servers."""

from __future__ import annotations

import os
import select
import signal
import time

import pytest

import easycluster
from easycluster import (
    CallTimeout,
    ClientGroup,
    ConnectionLost,
    call_multi,
    define_common,
    eval_multi,
    execblock_multi,
)
from easycluster.server import spawn_local

define_common("""
import os, time

def nap(t, v):
    time.sleep(t)
    return v

def maybe_fail(i):
    if i % 2:
        raise KeyError(i)
    return i
""")


@pytest.fixture(scope="module")
def servers():
    cs = [spawn_local() for _ in range(4)]
    yield cs
    for c in cs:
        c.close()


def test_call_multi_results_in_order(servers):
    assert call_multi(servers, "nap", 0, "x") == ["x"] * 4
    pids = call_multi(servers, "os.getpid")
    assert len(set(pids)) == 4


def test_call_multi_takes_the_slowest_not_the_sum(servers):
    t = time.perf_counter()
    assert call_multi(servers, "nap", 0.3, 1) == [1, 1, 1, 1]
    took = time.perf_counter() - t
    assert took < 0.3 * 4 * 0.6, f"took {took:.2f} s: calls did not overlap"


def test_first_error_raised_after_all_finished(servers):
    t = time.perf_counter()
    rs = [s.nap(0.3, None, nonblocking=True) for s in servers]  # keep them busy
    with pytest.raises(KeyError):
        call_multi(servers, "maybe_fail", 1)
    for r in rs:
        assert r.done()  # call_multi waited for every call before raising
    assert time.perf_counter() - t >= 0.3


def test_return_exceptions_keeps_each_result(servers):
    out = [
        call_multi([s], "maybe_fail", i, return_exceptions=True)[0] for i, s in enumerate(servers)
    ]
    assert out[0] == 0 and out[2] == 2
    assert isinstance(out[1], KeyError) and isinstance(out[3], KeyError)
    mixed = call_multi(servers, "maybe_fail", 1, return_exceptions=True)
    assert all(isinstance(e, KeyError) for e in mixed)


def test_dead_server_does_not_hide_the_others(servers):
    dead = spawn_local()
    dead.process.kill()
    dead.process.wait()
    out = call_multi([servers[0], dead, servers[1]], "nap", 0, "ok", return_exceptions=True)
    assert out[0] == "ok" and out[2] == "ok"
    assert isinstance(out[1], ConnectionLost)
    dead.close()


def test_eval_and_execblock_multi(servers):
    assert eval_multi(servers, "6 * 7") == [42] * 4
    assert execblock_multi(servers, "exec_return(os.getpid() > 0)") == [True] * 4
    out = eval_multi(servers, "1 / 0", return_exceptions=True)
    assert all(isinstance(e, ZeroDivisionError) for e in out)


def test_client_group_runs_callbacks(servers):
    group = ClientGroup(servers)
    got = []
    for i, s in enumerate(servers):
        s.nap(0.05 * i, i, oncomplete=got.append)
    deadline = time.monotonic() + 10
    while len(got) < 4 and time.monotonic() < deadline:
        group.read_responses(timeout=1)
    assert sorted(got) == [0, 1, 2, 3]
    group.remove_client(servers[0])
    assert servers[0] not in group.clients


def test_client_group_refuses_threaded_clients(servers):
    tc = spawn_local(easycluster.ThreadedClient)
    try:
        with pytest.raises(TypeError, match="plain Clients"):
            ClientGroup([tc])
    finally:
        tc.close()


@pytest.mark.parametrize("cls", [easycluster.Client, easycluster.ThreadedClient])
def test_call_timeout_bounds_a_frozen_server(cls):
    """A stopped server becomes a CallTimeout in its slot; the others' replies, which
    came while the fan-out waited on the frozen one (first in input order), are kept;
    on_result sees every host once, in input order."""
    cs = [spawn_local(cls) for _ in range(3)]
    frozen = cs[0].process.pid
    os.kill(frozen, signal.SIGSTOP)
    try:
        seen = []
        out = call_multi(
            cs,
            "nap",
            0.05,
            "v",
            call_timeout=1.0,
            return_exceptions=True,
            on_result=lambda host, v: seen.append((host, v)),
        )
        assert isinstance(out[0], CallTimeout) and "call_timeout=1 s" in str(out[0])
        assert out[1:] == ["v", "v"]
        assert [host for host, _ in seen] == [c.peername for c in cs]
        assert seen[0][1] is out[0] and [v for _, v in seen[1:]] == ["v", "v"]
        with pytest.raises(CallTimeout, match=cs[0].peername):
            call_multi(cs, "nap", 0, 1, call_timeout=0.2)
    finally:
        os.kill(frozen, signal.SIGCONT)
        for c in cs:
            c.close()


def test_fan_out_keywords_are_not_passed_to_the_remote_function(servers):
    assert call_multi(servers, "nap", 0, "v", call_timeout=30) == ["v"] * len(servers)
    assert eval_multi(servers, "6 * 7", call_timeout=30) == [42] * len(servers)
    with pytest.raises(ValueError, match="call_timeout"):
        call_multi(servers, "nap", 0, "v", call_timeout=-1)
    with pytest.raises(TypeError, match="on_result"):
        call_multi(servers, "nap", 0, "v", on_result=3)


def test_wait_with_no_time_left_still_reads_a_reply_that_came(servers):
    """``wait(timeout=0)`` looks once at what has arrived (call_multi relies on it)."""
    c = servers[0]
    r = c.nap(0, 5, nonblocking=True)
    ready, _, _ = select.select([c.fileno()], [], [], 30)
    assert ready, "the reply never arrived"
    assert r.wait(timeout=0) == 5


def test_a_lost_hosts_transport_ends_beside_the_fan_out():
    # An ssh client whose peer went quiet takes a grace period to end; a fan-out that
    # notices the loss must not wait for it (one grace per lost host, in turn), and
    # close() must: each closer here waits until released, as a lingering ssh would.
    import threading

    release = threading.Event()
    ended = []
    cs = [spawn_local() for _ in range(3)]
    try:
        for c in cs[:2]:
            real = c._closer

            def slow(real=real):
                release.wait(30)
                real()
                ended.append(True)

            c._closer = slow
            os.kill(c.server_pid, signal.SIGKILL)
        got = call_multi(cs, "os.getpid", return_exceptions=True)
        assert [type(g) for g in got[:2]] == [ConnectionLost, ConnectionLost]
        assert got[2] == cs[2].server_pid
        assert ended == []  # the fan-out returned while both transports were still ending
        release.set()
        for c in cs[:2]:
            c.close()  # waits for its transport to end
        assert ended == [True, True]
        assert all(c.process.poll() is not None for c in cs[:2])  # ended
    finally:
        release.set()
        for c in cs:
            c.close()


def test_ctrl_c_while_waiting_is_raised_not_taken_for_a_hosts_result(servers):
    import _thread
    import threading

    threading.Timer(0.2, _thread.interrupt_main).start()  # (Ctrl-C, as the signal does)
    t = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        call_multi(servers, "nap", 1.5, "x", return_exceptions=True)
    assert time.perf_counter() - t < 1.2  # raised at once, not after every host
    time.sleep(1.5)  # (the naps end; the servers are the module's)
    # a KeyboardInterrupt raised remotely is still that host's result
    got = call_multi(servers[:1], "eval", "exec('raise KeyboardInterrupt')", return_exceptions=True)
    assert isinstance(got[0], BaseException)
