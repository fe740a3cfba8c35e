"""Pipelined calls against the batching server and the two-lock Channel, with real processes.

What is checked here is what the batching must not change: every reply of a burst arrives,
in order and exact, however full both socket buffers get; a reply is never kept back
behind a call that runs long; the server's reader keeps reading while a write is blocked;
draining answers every call that ran; the ``concurrent.futures`` protocol and the proxy
counts keep working on responses made in bursts; large bytes survive the plain-pickle
shortcut around its 64 KiB bail-out.

``define_common`` blocks go to every server of the test session, so the names here carry
a ``pl`` prefix. The server-side event (``pl_event``) is per server process, i.e. per
connection, so tests never see each other's.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import gc
import hashlib
import mmap
import os
import random
import signal
import socket
import struct
import termios
import threading

import pytest
from helpers import connect, pid_alive, wait_until

from easycluster import (
    SINGLE,
    ConnectionLost,
    RemoteException,
    RemoteProxy,
    ThreadedClient,
    define_common,
)
from easycluster.protocol import frames
from easycluster.server import spawn_local

define_common(r'''
import hashlib as _pl_hashlib
import mmap as _pl_mmap
import random as _pl_random
import socket as _pl_socket
import threading as _pl_threading
import time as _pl_time

pl_event = _pl_threading.Event()
pl_marks = None


def pl_id(x):
    return x


def pl_nap(t, v=None):
    _pl_time.sleep(t)
    return v


def pl_pad(i, n):
    """``(i, the decimal digits of i, repeated to n bytes)``: checkable per call."""
    return i, (b"%08d" % i) * (n // 8)


def pl_blob(n):
    return b"x" * n


def pl_len(b):
    return len(b)


def pl_wait_event(timeout):
    """True if ``pl_event`` was set within ``timeout`` seconds (the bound of a failure)."""
    return pl_event.wait(timeout)


def pl_set_event():
    pl_event.set()


def pl_clear_event():
    pl_event.clear()


def pl_touch(path):
    open(path, "w").close()


def pl_blob_after_touch(path, n):
    open(path, "w").close()
    return b"z" * n


def pl_maybe_fail(i):
    if i % 7 == 3:
        raise ValueError(i)
    return i * i


def pl_open_marks(path, n):
    """Map ``path`` (n zero bytes): ``pl_mark(i)`` sets byte i, visible after we exit."""
    global pl_marks
    with open(path, "r+b") as f:
        pl_marks = _pl_mmap.mmap(f.fileno(), n)


def pl_mark(i):
    pl_marks[i] = 1
    return i


def pl_sndbuf(n):
    """Shrink the send buffer of this connection's socket (the kernel doubles ``n``)."""
    s = running_server.channel.sock
    s.setsockopt(_pl_socket.SOL_SOCKET, _pl_socket.SO_SNDBUF, n)
    return s.getsockopt(_pl_socket.SOL_SOCKET, _pl_socket.SO_SNDBUF)


def pl_echo(x):
    return x


def pl_digest(*args, **kwargs):
    """SHA-256 over the bytes-like and str leaves of the arguments, in order."""
    h = _pl_hashlib.sha256()

    def walk(o):
        if isinstance(o, (bytes, bytearray)):
            h.update(bytes(o))
        elif isinstance(o, str):
            h.update(o.encode("utf-8", "surrogatepass"))
        elif isinstance(o, dict):
            for k in sorted(o):
                walk(k)
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            for x in o:
                walk(x)

    walk(args)
    walk(kwargs)
    return h.hexdigest()


def pl_random_bytes(n, seed):
    return _pl_random.Random(seed).randbytes(n)


class PlObj(ServerObject):
    def __init__(self, v):
        self.v = v

    def getv(self):
        return self.v


def pl_make(v):
    return PlObj(v)


def pl_vals(objs):
    return [o.v for o in objs]
''')


def digest(*args, **kwargs):
    """The client-side twin of ``pl_digest``."""
    from easycluster.remote_code import pl_digest

    return pl_digest(*args, **kwargs)


def count_is(rmt, n, timeout=10.0):
    """True once the server keeps ``n`` objects for our proxies (releases are delayed)."""
    return wait_until(lambda: rmt.get_root().object_count() == n, timeout=timeout)


def collect():
    """Collect cycles (a proxy's cached forwarders refer back to it)."""
    gc.collect()
    gc.collect()


def pending_bytes(client):
    """Bytes received on the client's connection and not read yet (FIONREAD)."""
    buf = fcntl.ioctl(client.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


def run_bounded(fn, limit):
    """Run ``fn`` in a thread for up to ``limit`` seconds; return ``(finished, out, thread)``
    with ``out["value"]`` or ``out["error"]``. A hang shows up as ``finished`` False
    instead of a stuck test (the caller then kills the server to free the thread)."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    return (not t.is_alive()), out, t


# --- bursts larger than the socket buffers -------------------------------------------


@pytest.mark.timeout(120)
def test_burst_larger_than_both_socket_buffers(rmt):
    """30,000 calls sent before any reply is read; ~19 MB of replies fill the server's
    send buffer and our receive buffer while the requests still arrive."""
    n = 30000
    rs = [rmt.pl_pad(i, 600, nonblocking=True) for i in range(n)]
    assert rmt.pl_id("blocking call after the burst") == "blocking call after the burst"
    for i, r in enumerate(rs):
        assert r.wait(timeout=60) == (i, (b"%08d" % i) * 75)
    assert rmt.pl_id(1) == 1


def test_replies_come_in_call_order_across_threads_and_sizes(rmt):
    """Held small replies, large replies sent as their own frames, and replies from
    other server threads, in one burst: each thread's replies keep their call order."""
    rs = []
    for i in range(600):
        if i % 100 == 50:
            rs.append((i, rmt.pl_blob(200000, nonblocking=True), b"x" * 200000))
        elif i % 3 == 1:
            rs.append((i, rmt.pl_id(i, nonblocking=True, threadid=1 + i % 4), i))
        else:
            rs.append((i, rmt.pl_id(i, nonblocking=True), i))
    assert [r.wait(timeout=30) for _, r, _ in rs] == [want for _, _, want in rs]


# --- held replies and long calls -------------------------------------------------------


def test_fast_replies_are_not_held_behind_a_long_call(rmt):
    """Fast calls, then (same thread, same burst) one that waits for an event we set only
    once all the fast replies are here: the standby must flush the held replies."""
    fast = [rmt.pl_id(i, nonblocking=True) for i in range(50)]
    slow = rmt.pl_wait_event(20, nonblocking=True)
    assert [r.wait(timeout=15) for r in fast] == list(range(50))
    assert not slow.done()
    rmt.pl_set_event(threadid=SINGLE)
    assert slow.wait(timeout=20) is True


def test_replies_not_held_behind_a_second_long_call(rmt):
    """Long call, fast call, then a call waiting for an event we set only after the fast
    reply arrived. The standby takes over the reads during the first long call; the
    fast call's reply must still leave while the third call runs."""
    first = rmt.pl_nap(0.2, "first", nonblocking=True)
    fast = rmt.pl_id("fast", nonblocking=True)
    waiting = rmt.pl_wait_event(3, nonblocking=True)
    assert fast.wait(timeout=20) == "fast"
    rmt.pl_set_event(threadid=SINGLE)
    assert first.wait(timeout=20) == "first"
    assert waiting.wait(timeout=20) is True, "the fast reply came only after the third call"


def test_reply_of_a_long_call_is_not_held_behind_the_next_one(rmt):
    """The reply of a call during which the standby took over the reads (it was to be
    held when the call started) must leave before the next long call ends."""
    for trial in range(3):
        pre = rmt.pl_nap(0.01, "pre", nonblocking=True)  # so the next two share a batch
        first = rmt.pl_nap(0.1, "first", nonblocking=True)
        waiting = rmt.pl_wait_event(20, nonblocking=True)
        assert first.wait(timeout=10) == "first", f"trial {trial}: held behind the wait"
        rmt.pl_set_event(threadid=SINGLE)
        assert waiting.wait(timeout=20) is True and pre.wait(timeout=5) == "pre"
        rmt.pl_clear_event()


def test_pipelined_large_requests_while_replies_are_held_behind_a_long_call():
    """Local transport only: its socketpair has fixed buffers, so the sizes below surely
    exceed them (TCP grows its buffers as it likes). Replies of ~200 KB are held when
    the standby takes over during a long call; the server's send buffer is ~128 KB; then
    large requests (sent whole, blocking) follow before any reply is read."""
    c = spawn_local()
    try:
        assert c.pl_sndbuf(65536) <= 1 << 17

        def burst():
            rs = [c.pl_blob(20000, nonblocking=True) for _ in range(10)]
            rs.append(c.pl_nap(0.1, "slow", nonblocking=True))
            big = b"y" * 40000
            rs += [c.pl_len(big, nonblocking=True) for _ in range(200)]
            return [r.wait() for r in rs]

        finished, out, t = run_bounded(burst, 10)
        if not finished:
            c.process.kill()  # unblocks our sender and reader
            t.join(10)
        assert finished, "deadlock: nobody reads on either side"
        assert out.get("value") == [b"x" * 20000] * 10 + ["slow"] + [40000] * 200
    finally:
        c.close()


def test_reader_keeps_reading_while_a_reply_write_is_blocked(rmt, tmp_path):
    """A 32 MiB reply (server thread 1) to a client that reads nothing: that thread is
    blocked writing. A ping (as a ThreadedClient's keep-alive sends it) must not leave the
    server's reader waiting for that write: a request sent after it still runs."""
    started, after = str(tmp_path / "started"), str(tmp_path / "after")
    sock = rmt._channel.sock
    if isinstance(sock, socket.socket):  # TCP could otherwise take in the whole reply
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
    size = 32 << 20
    big = rmt.pl_blob_after_touch(started, size, nonblocking=True, threadid=1)
    assert wait_until(lambda: os.path.exists(started), timeout=20, interval=0.005)
    # the reply is on its way (its first bytes wait for us): thread 1 is writing it
    assert wait_until(lambda: pending_bytes(rmt) > 0, timeout=20, interval=0.005)
    rmt._channel.post(frames.FT_PING, b"", flush=True)  # what ThreadedClient._reader posts
    rmt.pl_touch(after, nonblocking=True, threadid=2)
    assert wait_until(lambda: os.path.exists(after), timeout=20, interval=0.01), (
        "the server stopped reading while a reply was being written"
    )
    got = big.wait(timeout=60)
    assert len(got) == size and got == b"z" * size
    assert rmt.pl_id(5) == 5


# --- draining --------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport, tid", [("local", 0), ("tcp", 0), ("tcp", 1)])
def test_drain_mid_burst_answers_every_call_that_ran(transport, tid, request, tmp_path):
    """SIGUSR1 (drain) to the server process while it works through a pipelined burst
    that we read as it comes: the calls that ran are exactly those answered, a prefix of
    the burst; then the connection ends and the process exits 0.

    Over TCP too: a drained server reads out what the client still sends before it
    exits, since closing with unread input would reset the connection and throw away
    replies still in flight. With the burst on server thread 1 (not the reading
    thread) and pings arriving all along, the read-out is left to the reader."""
    n = 30000
    for trial in range(4):
        path = tmp_path / f"marks{trial}"
        path.write_bytes(b"\0" * n)
        c = connect(transport, request)
        try:
            c.pl_open_marks(str(path), n)
            with open(path, "rb") as f:
                marks = mmap.mmap(f.fileno(), n, prot=mmap.PROT_READ)
            rs = [c.pl_mark(i, nonblocking=True, threadid=tid) for i in range(n)]

            def read_all(rs=rs):
                got = []
                for r in rs:
                    try:
                        got.append(r.wait(timeout=30))
                    except ConnectionLost:
                        break
                return got

            reader = cf.ThreadPoolExecutor(1)
            got_f = reader.submit(read_all)
            target = 500 + 3000 * trial
            assert wait_until(lambda m=marks, t=target: m[t] == 1, timeout=30, interval=0.0002)
            stop = threading.Event()

            def pinger(ch=c._channel, stop=stop):
                while not stop.wait(0.0005):
                    try:
                        ch.post(frames.FT_PING, b"q" * 200, flush=True)
                    except ConnectionLost:
                        return

            pings = threading.Thread(target=pinger, daemon=True)
            if tid:
                pings.start()
            os.kill(c.server_pid, signal.SIGUSR1)
            got = got_f.result(timeout=60)
            reader.shutdown()
            stop.set()
            if transport == "local":
                assert c.process.wait(timeout=20) == 0
            else:  # a child of the listener: gone is all we can see
                assert wait_until(lambda pid=c.server_pid: not pid_alive(pid), timeout=20)
            ran = [i for i in range(n) if marks[i]]
            marks.close()
            assert got == list(range(len(got)))
            assert ran == got, f"{len(ran)} calls ran, {len(got)} answered"
            with pytest.raises(ConnectionLost):
                c.pl_id(1)
        finally:
            c.close()


# --- concurrent.futures on burst responses ---------------------------------------------


def test_futures_protocol_on_a_burst(rmt):
    n = 140
    rs = [rmt.pl_maybe_fail(i, nonblocking=True, origexc="quiet") for i in range(n)]
    done, not_done = cf.wait(rs, timeout=30)
    assert len(done) == n and not not_done
    for i, r in enumerate(rs):
        if i % 7 == 3:
            exc = r.exception()
            assert isinstance(exc, RemoteException) and exc.orig.args == (i,)
            with pytest.raises(ValueError):
                r.result()
        else:
            assert r.exception() is None and r.result() == i * i

    rs = [rmt.pl_maybe_fail(i, nonblocking=True, origexc="quiet") for i in range(n)]
    seen = list(cf.as_completed(rs, timeout=30))
    assert sorted(map(id, seen)) == sorted(map(id, rs))

    # FIRST_COMPLETED: a call blocked on another server thread, a fast one on thread 0
    slow = rmt.pl_wait_event(20, nonblocking=True, threadid=1)
    fast = rmt.pl_id("fast", nonblocking=True)
    done, not_done = cf.wait([slow, fast], timeout=15, return_when=cf.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    rmt.pl_set_event(threadid=SINGLE)
    assert slow.result(timeout=20) is True


def test_callbacks_on_burst_responses_run_once(rmt):
    calls = []
    lock = threading.Lock()

    def record(kind):
        def cb(*args):
            with lock:
                calls.append((kind, args))

        return cb

    rs = [rmt.pl_maybe_fail(i, nonblocking=True, origexc="quiet") for i in range(30)]
    for r in rs:
        r.add_done_callback(record("future"))
    rids = [rmt.pl_maybe_fail(i, oncomplete=record("ok"), onerror=record("err")) for i in range(30)]
    assert len(set(rids)) == 30
    assert wait_until(lambda: len(calls) == 60, timeout=20), calls
    futs = [a[0] for k, a in calls if k == "future"]
    assert sorted(map(id, futs)) == sorted(map(id, rs))
    assert sorted(a[0] for k, a in calls if k == "ok") == sorted(
        i * i for i in range(30) if i % 7 != 3
    )
    errs = [a[0] for k, a in calls if k == "err"]
    assert sorted(e.orig.args[0] for e in errs) == [i for i in range(30) if i % 7 == 3]
    # a callback added to a finished response runs at once, on this thread
    here = []
    rs[0].add_done_callback(lambda f: here.append(threading.current_thread()))
    assert here == [threading.current_thread()]
    assert len(calls) == 60  # nothing ran twice


def test_cancel_a_pending_response(rmt):
    blocked = rmt.pl_wait_event(20, nonblocking=True, threadid=2)
    others = [rmt.pl_id(i, nonblocking=True) for i in range(20)]
    assert blocked.cancel() is True
    assert blocked.cancelled() and blocked.done()
    with pytest.raises(cf.CancelledError):
        blocked.result()
    assert [r.wait(timeout=20) for r in others] == list(range(20))
    assert others[0].cancel() is False  # finished: cannot be cancelled
    rmt.pl_set_event(threadid=SINGLE)
    # thread 2 runs in order: its late reply to the cancelled call came first, dropped
    assert rmt.pl_id("after", threadid=2) == "after"
    assert blocked.cancelled()


def test_cancelled_response_is_done_for_waiters_and_callbacks(rmt):
    """``concurrent.futures.wait``/``as_completed`` count a cancelled response as done
    (without a timeout they would hang otherwise), and ``onerror`` hears of it."""
    errors = []
    blocked = rmt.pl_wait_event(20, nonblocking=True, threadid=3)
    rid = rmt.pl_wait_event(
        20,
        threadid=4,
        oncomplete=lambda v: errors.append(("ok", v)),
        onerror=lambda e: errors.append(("error", e)),
    )
    waiter = threading.Thread(target=lambda: errors.append(cf.wait([blocked])))
    waiter.start()
    assert blocked.cancel()
    waiter.join(10)
    assert not waiter.is_alive(), "wait() did not see the cancellation"
    done, not_done = errors.pop()
    assert done == {blocked} and not not_done
    assert list(cf.as_completed([blocked], timeout=5)) == [blocked]
    assert isinstance(rid, int)
    pending = rmt._reader.pending[rid]
    assert pending.cancel()
    assert len(errors) == 1 and errors[0][0] == "error"
    assert isinstance(errors[0][1].orig, cf.CancelledError)
    rmt.pl_set_event(threadid=SINGLE)
    assert rmt.pl_id("after", threadid=3) == "after"


def test_repeated_burst_and_wait_always_has_a_reader(rmt):
    """A plain client reads only while someone waits; ``cf.wait`` starts a short-lived
    reader. Bursts one after the other must each find one (no waiter left alone)."""
    for k in range(300):
        rs = [rmt.pl_id(k * 3 + j, nonblocking=True) for j in range(3)]
        done, not_done = cf.wait(rs, timeout=10)
        assert not not_done, f"burst {k}: nobody read the replies"
        assert [r.result() for r in rs] == [k * 3, k * 3 + 1, k * 3 + 2]


def test_futures_on_threaded_client_bursts():
    tc = spawn_local(ThreadedClient)
    try:
        rs = [tc.pl_maybe_fail(i, nonblocking=True, origexc="quiet") for i in range(500)]
        assert len(list(cf.as_completed(rs, timeout=30))) == 500
        assert [r.exception() is None for r in rs] == [i % 7 != 3 for i in range(500)]
        blocked = tc.pl_wait_event(20, nonblocking=True, threadid=SINGLE)
        assert blocked.cancel() and blocked.cancelled()
        tc.pl_set_event(threadid=SINGLE)
        assert tc.pl_id(3) == 3
    finally:
        tc.close()


# --- proxies in bursts (the full pickler) mixed with plain calls ------------------------


def test_proxies_in_a_burst_keep_identity_and_counts(rmt):
    p = rmt.PlObj(-1)
    assert rmt.get_root().object_count() == 1
    sent = []
    for i in range(300):
        k = i % 3
        if i % 50 == 25:  # a blocking call in the middle of the burst
            assert rmt.pl_echo([p, {"k": p}]) == [p, {"k": p}]
            assert rmt.pl_echo(p) is p
        if k == 0:
            sent.append(("same", i, rmt.pl_echo(p, nonblocking=True)))
        elif k == 1:
            sent.append(("plain", i, rmt.pl_id(i, nonblocking=True)))
        else:
            sent.append(("new", i, rmt.pl_make(i, nonblocking=True)))
    made = []
    for kind, i, r in sent:
        v = r.wait(timeout=30)
        if kind == "same":
            assert v is p
        elif kind == "plain":
            assert v == i
        else:
            assert isinstance(v, RemoteProxy)
            made.append((i, v))
    assert len({id(v) for _, v in made}) == 100
    assert rmt.pl_vals([v for _, v in made]) == [i for i, _ in made]
    assert all(v.getv() == i for i, v in made[:10])
    assert rmt.get_root().object_count() == 101
    del made, sent, v, r
    collect()
    assert count_is(rmt, 1), rmt.get_root().object_count()
    assert p.getv() == -1
    del p
    collect()
    assert count_is(rmt, 0), rmt.get_root().object_count()


# --- large bytes around the plain pickler's bail-out ------------------------------------


@pytest.mark.parametrize("size", [65535, 65536, 65537, 3 * (1 << 20) + 7])
def test_large_bytes_nested_in_arguments_and_results(rmt, size):
    payload = random.Random(size).randbytes(size)
    text = "é" * (size // 2) + "x"
    calls = [
        (rmt.pl_echo(payload, nonblocking=True), payload),
        (rmt.pl_id(1, nonblocking=True), 1),
        (rmt.pl_echo({"k": [payload, "s"]}, nonblocking=True), {"k": [payload, "s"]}),
        (rmt.pl_echo((1, [[[[payload]]]]), nonblocking=True), (1, [[[[payload]]]])),
        (rmt.pl_echo(bytearray(payload), nonblocking=True), bytearray(payload)),
        (rmt.pl_echo(text, nonblocking=True), text),
        (rmt.pl_id(2, nonblocking=True), 2),
        (
            rmt.pl_digest(payload, [payload[: size // 2]], k={"v": (payload,)}, nonblocking=True),
            digest(payload, [payload[: size // 2]], k={"v": (payload,)}),
        ),
        (rmt.pl_random_bytes(size, size, nonblocking=True), payload),
        (rmt.pl_echo([payload, payload], nonblocking=True), [payload, payload]),
    ]
    for r, want in calls:
        got = r.wait(timeout=30)
        assert type(got) is type(want) and got == want
    # the same, blocking, one at a time
    assert rmt.pl_echo(payload) == payload
    assert rmt.pl_digest(payload) == hashlib.sha256(payload).hexdigest()
