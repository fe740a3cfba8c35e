"""Server threads, ThreadedClient, timeouts, keep-alive, asyncio and failure isolation."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
from helpers import ctrl_c

import easycluster
from easycluster import CallTimeout, ConnectionLost, ThreadedClient, define_common
from easycluster.server import spawn_local

define_common("""
import threading, time

def conc_nap(t, v=None):
    time.sleep(t)
    return v

def conc_add(a, b):
    return a + b

def conc_thread_name():
    return threading.current_thread().name

_conc_nap = [0.0]

def conc_set_nap(t):
    _conc_nap[0] = t

def conc_napped(v):
    time.sleep(_conc_nap[0])
    return v
""")


def test_calls_on_different_threads_overlap(rmt):
    t = time.perf_counter()
    rs = [rmt.conc_nap(0.4, i, nonblocking=True, threadid=i + 1) for i in range(3)]
    assert [r.wait() for r in rs] == [0, 1, 2]
    took = time.perf_counter() - t
    assert took < 0.4 * 3 * 0.7, f"{took:.2f} s: the server threads did not overlap"


def test_same_thread_runs_in_order(rmt):
    t = time.perf_counter()
    rs = [rmt.conc_nap(0.15, i, nonblocking=True, threadid=5) for i in range(3)]
    assert [r.wait() for r in rs] == [0, 1, 2]
    assert time.perf_counter() - t >= 0.4


def test_default_thread_is_the_same_thread(rmt):
    names = {rmt.conc_thread_name() for _ in range(5)}
    assert len(names) == 1
    assert rmt.conc_thread_name(threadid=easycluster.SINGLE) not in names


def test_long_call_on_thread_0_does_not_block_other_threads(rmt):
    slow = rmt.conc_nap(1.0, "slow", nonblocking=True)
    t = time.perf_counter()
    assert rmt.conc_add(1, 2, threadid=7) == 3
    assert time.perf_counter() - t < 0.6
    assert slow.wait() == "slow"


def test_call_timeout_outcome_unknown_and_late_reply_dropped(rmt):
    with pytest.raises(CallTimeout, match="outcome is unknown"):
        rmt.conc_nap(0.5, "late", call_timeout=0.1)
    # the late reply must never be delivered to a later call
    assert rmt.conc_add(2, 3) == 5
    time.sleep(0.5)
    assert rmt.conc_add(3, 4) == 7
    with pytest.raises(CallTimeout):
        rmt.raw_call("conc_nap", (0.3,), timeout=0.05)
    # eval and execblock take the call sugar's name too
    with pytest.raises(CallTimeout):
        rmt.eval("conc_nap(0.3)", call_timeout=0.05)
    with pytest.raises(CallTimeout):
        rmt.execblock("conc_nap(0.3)", call_timeout=0.05)
    time.sleep(0.4)
    assert rmt.conc_add(1, 1) == 2


def test_remote_function_still_gets_its_own_timeout_keyword(rmt):
    out = rmt.subprocess.run(["true"], timeout=5)
    assert out.returncode == 0


def test_threaded_client_many_threads():
    tc = spawn_local(ThreadedClient)
    errors = []

    def work(n):
        try:
            for i in range(1000):
                if tc.conc_add(n, i) != n + i:
                    errors.append((n, i))
        except Exception as e:  # pragma: no cover - reported by the assert
            errors.append(e)

    try:
        ts = [threading.Thread(target=work, args=(n,)) for n in range(50)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(50)
        assert not any(t.is_alive() for t in ts), "deadlock: threads still running"
        assert errors == []
        # each client thread had its own server thread
        names = set()
        lock = threading.Lock()

        def name():
            with lock:
                names.add(tc.conc_thread_name())

        ts = [threading.Thread(target=name) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert len(names) == 3
    finally:
        tc.close()


def test_threaded_client_callbacks_run_on_reader_thread():
    tc = spawn_local(ThreadedClient)
    try:
        seen = threading.Event()
        where = []
        tc.conc_add(
            1, 2, oncomplete=lambda v: (where.append((v, threading.current_thread())), seen.set())
        )
        assert seen.wait(10)
        assert where[0][0] == 3 and where[0][1] is not threading.current_thread()
        with pytest.raises(TypeError):
            tc.read_response()
    finally:
        tc.close()


def test_keepalive_keeps_a_busy_connection():
    tc = spawn_local(ThreadedClient, keep_alive_interval=0.1, keep_alive_timeout=0.5)
    try:
        assert tc.conc_nap(1.5, "done") == "done"  # busy for 3x the keep-alive timeout
        assert tc.connected
    finally:
        tc.close()


def test_keepalive_detects_a_stopped_server():
    tc = spawn_local(ThreadedClient, keep_alive_interval=0.1, keep_alive_timeout=0.5)
    pid = tc.process.pid
    try:
        r = tc.conc_nap(10, nonblocking=True)
        os.kill(pid, signal.SIGSTOP)
        t = time.perf_counter()
        with pytest.raises(ConnectionLost, match="keep-alive"):
            r.wait(timeout=10)
        assert time.perf_counter() - t < 3
    finally:
        os.kill(pid, signal.SIGCONT)
        tc.close()


@pytest.mark.parametrize("cls", [easycluster.Client, ThreadedClient])
def test_server_death_fails_pending_calls_promptly(cls):
    c = spawn_local(cls)
    other = spawn_local(cls)
    try:
        r = c.conc_nap(30, nonblocking=True)
        time.sleep(0.1)
        c.process.kill()
        t = time.perf_counter()
        with pytest.raises(ConnectionLost):
            r.wait(timeout=10)
        assert time.perf_counter() - t < 1.5
        assert other.conc_add(1, 1) == 2  # other connections are unaffected
    finally:
        c.close()
        other.close()


def test_asyncio_gather_over_servers():
    clients = [spawn_local() for _ in range(3)]
    tclient = spawn_local(ThreadedClient)
    try:

        async def main():
            t = time.perf_counter()
            got = await asyncio.gather(
                *(c.acall("conc_nap", 0.3, i) for i, c in enumerate(clients + [tclient]))
            )
            return got, time.perf_counter() - t

        got, took = asyncio.run(main())
        assert got == [0, 1, 2, 3]
        assert took < 0.9

        async def failing():
            with pytest.raises(ZeroDivisionError):
                await clients[0].acall("eval", "1/0", origexc="quiet")
            with pytest.raises(CallTimeout):
                await clients[1].acall("conc_nap", 1, call_timeout=0.1)

        asyncio.run(failing())
    finally:
        for c in clients + [tclient]:
            c.close()


def test_one_standby_thread_reads_for_every_plain_client():
    """``concurrent.futures.wait`` over several plain clients: nobody reads, so the
    process's one standby thread reads for all of them (not a thread per client)."""
    import concurrent.futures as cf

    clients = [spawn_local() for _ in range(3)]
    try:
        rs = [c.conc_add(i, 1, nonblocking=True) for i, c in enumerate(clients)]
        done, not_done = cf.wait(rs, timeout=20)
        assert not not_done and sorted(r.result() for r in done) == [1, 2, 3]
        standby = [t for t in threading.enumerate() if t.name == "easycluster-standby-reader"]
        assert len(standby) == 1
        # a second round after the first: the same thread serves it
        rs = [c.conc_nap(0.05, i, nonblocking=True) for i, c in enumerate(clients)]
        assert sorted(f.result() for f in cf.as_completed(rs, timeout=20)) == [0, 1, 2]
        again = [t for t in threading.enumerate() if t.name == "easycluster-standby-reader"]
        assert again == standby
    finally:
        for c in clients:
            c.close()


def test_a_fan_out_reads_its_replies_itself_not_the_standby(monkeypatch):
    """``call_multi`` waits for each reply in turn: replies that came while it waited for
    a slower server are its to read, not the standby thread's (which, reading beside
    it, took half of the master's CPU with 1,000 servers)."""
    from easycluster.client import reader

    read_by_standby = []
    plain = reader.InlineReader.standby_read
    # (a claim lasts while the fan-out makes progress: a loaded machine must not make
    # the 0.5 s wait below look like no progress)
    monkeypatch.setattr(reader, "CLAIM_HOLD", 60.0)

    def counted(self):
        # (a read, not a call: the standby may look at a reader whose reply this thread
        # read a moment before, or that is claimed, and find nothing to do; CI saw such
        # a call counted once)
        reads = self._reads
        plain(self)
        if self._reads != reads:
            read_by_standby.append(self)

    monkeypatch.setattr(reader.InlineReader, "standby_read", counted)
    clients = [spawn_local() for _ in range(4)]
    try:
        for c in clients:
            c.conc_set_nap(0.0)
        # the first is slow: the others' replies wait, unread, for 0.5 s (the standby
        # looks every STANDBY_DELAY: 0.02 s)
        clients[0].conc_set_nap(0.5)
        # (what the standby read before is not the fan-out's business: a spawn_local
        # client's hello answer, unread while the next ones started on a loaded machine)
        read_by_standby.clear()
        got = easycluster.call_multi(clients, "conc_napped", 7)
        assert got == [7, 7, 7, 7]
        assert read_by_standby == []
    finally:
        for c in clients:
            c.close()


def test_a_fan_out_held_up_by_one_server_lets_the_standby_read_the_others_again():
    """A fan-out's claim on the readers further down its list lapses after CLAIM_HOLD
    without progress: a reply nobody waits for on one of them (a done-callback) is still
    read meanwhile."""
    from easycluster.client.reader import CLAIM_HOLD

    slow, other = spawn_local(), spawn_local()
    try:
        fired = threading.Event()
        fanout = threading.Thread(
            target=easycluster.call_multi, args=([slow, other], "conc_nap", CLAIM_HOLD * 4)
        )
        fanout.start()
        time.sleep(0.2)  # (the fan-out has claimed both)
        r = other.conc_add(2, 3, nonblocking=True, threadid=5)
        r.add_done_callback(lambda _: fired.set())
        # read by the standby once the claim ran out, long before the fan-out reaches it
        assert fired.wait(CLAIM_HOLD * 3)
        assert fanout.is_alive() and r.result() == 5
        fanout.join()
    finally:
        slow.close()
        other.close()


CTRL_C_SCRIPT = """
import sys, easycluster
from easycluster.server import spawn_local
easycluster.define_common("import time\\ndef nap(t):\\n    time.sleep(t)\\n    return t\\n")
c = spawn_local(fresh_interpreter=FRESH)
assert c.nap(0) == 0
print("calling", flush=True)
try:
    c.nap(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
# nap(60) still runs on the server's thread 0; another server thread answers
print("after", c.nap(0.01, threadid=1), flush=True)
c.close()
"""


@pytest.mark.parametrize("fresh", [False, True])
def test_ctrl_c_interrupts_the_call_not_the_local_server(fresh, tmp_path):
    """SIGINT to the master's process group (a terminal's Ctrl-C) during a call: the
    call raises KeyboardInterrupt, the local server lives on (its own session) and the
    client stays usable (the interrupted call still runs there: another thread answers)."""
    import subprocess
    import sys

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT.replace("FRESH", str(fresh)))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def ready():
        assert proc.stdout.readline() == b"calling\n"
        time.sleep(0.2)  # (into the call; an earlier signal would only be caught earlier)

    out, err = ctrl_c(proc, ready)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["interrupted", "after 0.01"]


def test_client_call_timeout_bounds_every_untimed_call(make_client):
    """``Client(call_timeout=...)``: a call or wait without its own timeout is bounded;
    the error says which server thread is still busy and what to do; another thread
    answers at once; a per-call timeout wins over the client's."""
    c = make_client(call_timeout=0.3)
    with pytest.raises(CallTimeout, match="server thread 0") as info:
        c.conc_nap(5)
    assert "threadid=" in str(info.value) and "connect again" in str(info.value)
    assert c.conc_add(1, 2, threadid=1) == 3
    r = c.conc_nap(5, nonblocking=True, threadid=2)
    with pytest.raises(CallTimeout, match="server thread 2"):
        r.wait()
    assert c.conc_nap(0.5, "x", call_timeout=10, threadid=3) == "x"


@pytest.mark.parametrize("cls", [easycluster.Client, ThreadedClient])
def test_client_call_timeout_bounds_a_stopped_server(cls):
    c = spawn_local(cls, call_timeout=0.5)
    pid = c.process.pid
    try:
        assert c.conc_add(1, 1) == 2
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(CallTimeout):
            c.conc_add(2, 2)
    finally:
        os.kill(pid, signal.SIGCONT)
        c.close()


def test_closed_threaded_clients_leave_no_reader_threads(tcp_server, key):
    """close() ends the reader thread at once (it used to linger until its keep-alive
    interval when the socket's number was reused by the next connection)."""
    before = {t for t in threading.enumerate() if t.name.startswith("easycluster-reader")}
    for _ in range(200):
        c = ThreadedClient(key, "127.0.0.1", tcp_server.port)
        assert c.eval("1") == 1
        c.close()
    after = {t for t in threading.enumerate() if t.name.startswith("easycluster-reader")}
    assert after - before == set()


def test_threaded_oncomplete_may_make_another_call_with_oncomplete():
    """0.22's chaining pattern: an oncomplete callback (on the reader thread) starts the
    next call with its own oncomplete. It deadlocked once on the lock that orders a
    response's lazy Future set-up, held while callbacks ran."""
    tclient = spawn_local(ThreadedClient)
    done, got = threading.Event(), []
    try:

        def second(v):
            got.append(v)
            done.set()

        def first(v):
            got.append(v)
            tclient.call("conc_add", v, 1, nonblocking=True, oncomplete=second)

        tclient.call("conc_add", 1, 0, nonblocking=True, oncomplete=first)
        assert done.wait(20), f"the chained call never completed (got {got})"
        assert got == [1, 2]
    finally:
        tclient.close()
