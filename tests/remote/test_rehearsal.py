"""The rehearsal (remote/rehearsal.py): a fresh server's call path is already in its
specialized form at its first call, and rehearsing leaves nothing behind.

"Specialized" is read from the bytecode itself: ``dis`` shows a function's adaptive
instructions (CPython 3.11 rewrites a function at its eighth call) next to its plain
ones; they differ once it was rewritten."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import threading

import pytest
from helpers import connect

# What a function looks like before and after CPython rewrites it is 3.11's (3.12 on
# quickens code as it is made, and specializes sooner): the suite's Python (CI's too).
pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="reads CPython 3.11's quickened bytecode"
)

# Functions every call passes through on the server, by module and qualified name.
CALL_PATH = [
    ("easycluster.remote.connection", "ServerConnection._read_some"),
    ("easycluster.remote.connection", "ServerConnection._run_request"),
    ("easycluster.remote.verbs", "RootObject.verb_call"),
    ("easycluster.transport.channel", "Channel.recv_frames"),
    ("easycluster.protocol.frames", "FrameReader.advance"),
    ("easycluster.protocol.mac", "Mac.frame"),
]


def generic(path=CALL_PATH):
    """The functions of ``path`` still in their generic form in this process."""
    import dis
    import importlib

    left = []
    for module, qualname in path:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        plain = [i.opname for i in dis.get_instructions(obj)]
        adaptive = [i.opname for i in dis.get_instructions(obj, adaptive=True)]
        if plain == adaptive:
            left.append(qualname)
    return left


def fd_count():
    return len(os.listdir("/proc/self/fd"))


REHEARSE_IN_A_FRESH_PROCESS = """
import os, sys, threading, _thread
sys.path.insert(0, {tests!r})
from remote.test_rehearsal import generic, fd_count
from easycluster.remote.rehearsal import rehearse
before = generic()
fds, threads = fd_count(), _thread._count()
assert rehearse()
print(before == [q for _, q in __import__("remote.test_rehearsal", fromlist=["x"]).CALL_PATH])
print(generic())
print(fd_count() - fds, _thread._count() - threads, threading.active_count())
"""


def test_a_rehearsal_specializes_the_call_path_and_leaves_no_thread_or_socket():
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", REHEARSE_IN_A_FRESH_PROCESS.format(tests=tests)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    fresh, after, left = out.stdout.splitlines()
    assert fresh == "True"  # every function generic in a fresh process...
    assert after == "[]"  # ...and none after the rehearsal
    assert left == "0 0 1"  # no descriptor, no thread (bare or not) left; main alone


@pytest.mark.parametrize("transport", ["tcp", "local"])
def test_a_fresh_server_starts_with_its_call_path_specialized(transport, request):
    # A new connection's process (forked from the rehearsed listener or zygote) has
    # served the hello and this call when it answers: far fewer than eight.
    if transport == "local":  # (the zygote's first server is forked before it rehearses,
        connect(transport, request).close()  # so as not to wait for that: not this one)
    c = connect(transport, request)
    try:
        c.execblock(f"CALL_PATH = {CALL_PATH!r}\n" + inspect.getsource(generic))
        assert c.eval("generic()") == []
    finally:
        c.close()


def test_rehearsing_twice_in_a_row_works_and_threads_are_joined():
    from easycluster.remote.rehearsal import rehearse

    before = threading.active_count()
    assert rehearse() is True
    assert rehearse(calls=2) is True
    assert threading.active_count() == before


def test_a_failed_rehearsal_says_so_at_once_and_leaves_no_thread(monkeypatch):
    from easycluster.remote import rehearsal

    def broken(self):
        raise RuntimeError("the serving loop broke")

    # A feeder left waiting for its reply would wait this long: the test's timeout
    # (pytest-timeout) fails it first, so returning at all shows the feeder was freed.
    monkeypatch.setattr(rehearsal, "_TIMEOUT", 3600.0)
    monkeypatch.setattr(rehearsal.ServerConnection, "serve", broken)
    before = threading.active_count()
    assert rehearsal.rehearse() is False
    assert threading.active_count() == before
