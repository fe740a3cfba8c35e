"""ReusedThreads: every call starts at once, idle threads are reused, then end."""

from __future__ import annotations

import threading
import time

from easycluster.transport.threads import ReusedThreads


def wait_for(check, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.005)
    return check()


def named(name: str) -> list:
    return [t for t in threading.enumerate() if t.name == name]


def test_blocking_calls_never_wait_for_each_other():
    pool = ReusedThreads("t-block")
    release = threading.Event()
    started = []
    for i in range(20):  # all block until released: each needs a thread of its own
        pool.run(lambda i=i: (started.append(i), release.wait(10)))
    try:
        assert wait_for(lambda: len(started) == 20)
        assert len(named("t-block")) == 20
    finally:
        release.set()


def test_idle_threads_are_reused():
    pool = ReusedThreads("t-reuse")
    idents = []
    for _ in range(10):  # one after another: the first thread serves them all
        done = threading.Event()
        pool.run(lambda done=done: (idents.append(threading.get_ident()), done.set()))
        assert done.wait(5)
        assert wait_for(lambda: pool._free == 1)  # back to waiting for the next
    assert len(set(idents)) == 1
    assert len(named("t-reuse")) == 1


def test_idle_threads_end_after_the_idle_time():
    pool = ReusedThreads("t-idle", idle=0.05)
    done = threading.Event()
    pool.run(done.set)
    assert done.wait(5)
    assert wait_for(lambda: not named("t-idle"))
    again = threading.Event()
    pool.run(again.set)  # a new thread once the old one has gone
    assert again.wait(5)


def test_an_escaping_exception_is_reported_and_the_thread_lives_on(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))
    pool = ReusedThreads("t-error")
    pool.run(lambda: 1 / 0)
    assert wait_for(lambda: seen == [ZeroDivisionError])
    done = threading.Event()
    pool.run(done.set)
    assert done.wait(5)
    assert len(named("t-error")) == 1
