"""A blocking call polls its socket for its reply before it sleeps (``REPLY_SPIN`` in
``client/reader.py``), while replies come that fast, and only when nothing else in the
process could want the CPU or the GIL.

Each case runs in a fresh interpreter (the test process has threads of its own, and
the spin is off while any other thread lives), over ``spawn_local`` and over TCP to a
real ``easycluster -S``; the script counts the calls to ``Channel.poll_frames``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import ServerProcess

import easycluster

PRELUDE = """
import json, sys, threading, time
import easycluster
from easycluster.client import reader
from easycluster.server import spawn_local

reader.REPLY_SPIN = float(sys.argv[1])  # (read as each connection starts)

easycluster.define_common(
    "import time\\n"
    "def add(a, b):\\n    return a + b\\n"
    "def slow(t):\\n    time.sleep(t)\\n    return t\\n"
)
if sys.argv[2] == "local":
    c = spawn_local()
else:
    c = easycluster.Client(easycluster.read_key_file(sys.argv[3]), "127.0.0.1", int(sys.argv[4]))
polls = []
channel = c._channel
real_poll = channel.poll_frames

def counted(spin):
    got = real_poll(spin)
    polls.append(bool(got))
    return got

channel.poll_frames = counted
out = {"polls": polls}
"""


def run(spin: float, body: str, transport: str, srv=None) -> dict:
    """Run ``body`` after PRELUDE with ``REPLY_SPIN = spin``; return its ``out``."""
    script = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\nc.close()\n"
    args = [str(spin), transport]
    if srv is not None:
        args += [srv.keyfile, str(srv.port)]
    cp = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=50
    )
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["local", "tcp"])
def where(request, tmp_path):
    if request.param == "local":
        yield "local", None
        return
    keyfile = str(tmp_path / "key")
    easycluster.write_key_file(keyfile, easycluster.generate_key())
    with ServerProcess("-k", keyfile, "-b", "127.0.0.1") as srv:
        srv.keyfile = keyfile
        yield "tcp", srv


def test_fast_replies_are_polled_for(where):
    out = run(
        5.0,  # (any reply comes within it, however loaded the machine)
        """
        out["first"] = c.add(0, 1)
        out["first_polls"] = list(polls)
        out["values"] = [c.add(i, 1) for i in range(20)]
        """,
        *where,
    )
    assert out["first"] == 1 and out["values"] == [i + 1 for i in range(20)]
    # A new connection's first blocking call blocks, timed (a server still starting is
    # slow to answer: 1,000 fresh connections would each spin in vain); it was fast, so
    # every call after it polled, and its reply came in the poll.
    assert out["first_polls"] == []
    assert out["polls"] == [True] * 20


def test_a_slow_reply_turns_the_spin_off_until_a_fast_one_comes(where):
    out = run(
        0.3,
        """
        c.add(0, 0)
        before = len(polls)
        out["slow"] = c.slow(0.6)       # missed: polled once, then a blocking read
        out["after_slow"] = polls[before:]
        before = len(polls)
        c.slow(0.6)                     # blocks, timed (too slow: stays off)
        out["second_slow"] = polls[before:]
        before = len(polls)
        out["fast"] = c.add(1, 2)       # blocks, timed: fast, so the spin is back on
        out["fast_polls"] = polls[before:]
        before = len(polls)
        c.add(1, 2)
        out["next_polls"] = polls[before:]
        """,
        *where,
    )
    assert out["slow"] == 0.6 and out["fast"] == 3
    assert out["after_slow"] == [False]
    assert out["second_slow"] == []
    assert out["fast_polls"] == []
    assert out["next_polls"] == [True]


def test_no_spin_while_another_thread_lives_nor_for_a_response(where):
    # (a non-blocking call starts the standby thread, so a Response's wait is kept from
    # spinning by both rules)
    out = run(
        5.0,
        """
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        out["with_thread"] = [c.add(i, 1) for i in range(5)]
        out["polls_with_thread"] = len(polls)
        stop.set()
        t.join()
        responses = [c.add(i, 2, nonblocking=True) for i in range(5)]
        out["responses"] = [r.wait() for r in responses]
        out["polls_for_responses"] = len(polls)
        """,
        *where,
    )
    assert out["with_thread"] == [1, 2, 3, 4, 5]
    assert out["polls_with_thread"] == 0
    assert out["responses"] == [2, 3, 4, 5, 6]
    assert out["polls_for_responses"] == 0


def test_no_spin_when_turned_off(where):
    out = run(
        0,
        """
        out["values"] = [c.add(i, 1) for i in range(5)]
        """,
        *where,
    )
    assert out["values"] == [1, 2, 3, 4, 5]
    assert out["polls"] == []
