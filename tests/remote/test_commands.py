"""``remote/commands.py`` run in a fresh interpreter of its own (it starts processes and a
watchdog, and makes the descriptors it inherited close-on-exec: not the test runner's
business): what a command gets of its server, and ``start_quick``'s outcomes.

The Task-level behaviour (events, timeouts, kills, stdin) is proved through real
servers in ``tests/integration/test_rpc_backend.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from easycluster.remote import commands

    # an inherited descriptor (as a server started by some parent may have): no
    # command may get it, as with Popen's close_fds
    r, w = os.pipe()
    os.set_inheritable(w, True)
    out = {}

    def text(chunks):
        return {str(sid): b"".join(d for s, d in chunks if s == sid).decode()
                for sid in (1, 2)}

    def run(token, command, stderr=True):
        chunks, rc = commands.start_quick(token, command, stderr)
        while rc is None:
            more, rc = commands.read(token)
            chunks += more
        return text(chunks), rc

    out["fds"] = run(1, "ls /proc/$$/fd")
    out["fds_start"] = text(commands.start(2, "ls /proc/$$/fd", True, False)[0])
    out["sigign"] = run(3, "grep SigIgn /proc/$$/status")
    out["session"] = run(4, 'echo $$ $(cut -d" " -f6 /proc/$$/stat)')
    out["streams"] = run(5, "echo out; echo err >&2; exit 3")
    out["merged"] = run(6, "echo out; echo err >&2", stderr=False)
    out["big"] = run(7, "head -c 300000 /dev/zero | tr '\\\\0' x; echo end >&2")
    out["closed"] = run(8, "exec >&- 2>&-; sleep 0.2; exit 5")
    out["child"] = run(9, "(sleep 0.2; echo bg) & echo fg")
    out["killed"] = run(10, "kill -9 $$")
    # still running after QUICK: None, and read goes on from there
    chunks, rc = commands.start_quick(11, "echo a; sleep 0.3; echo b", True)
    out["slow_first"] = rc
    while rc is None:
        more, rc = commands.read(11)
        chunks += more
    out["slow"] = [text(chunks), rc]
    out["left"] = sorted(commands.RUNNING)
    commands.kill_all()
    try:  # a start racing the connection's end (another thread's) is refused
        commands.start_quick(12, "sleep 30", True)
        out["after_end"] = "started"
    except OSError as e:
        out["after_end"] = str(e)
    json.dump(out, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def out() -> dict:
    """What the script saw (run once for the module's tests)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        timeout=60,
        close_fds=True,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_a_command_gets_its_three_streams_default_signals_and_a_session(out):
    # (no descriptor of its server: not the inherited pipe, the watchdog's or others)
    assert out["fds"] == [{"1": "0\n1\n2\n", "2": ""}, 0]
    assert out["fds_start"] == {"1": "0\n1\n2\n", "2": ""}
    mask = int(out["sigign"][0]["1"].split()[1], 16)
    assert mask & (1 << 12) == 0  # SIGPIPE not ignored (Python ignores it: not inherited)
    assert mask & (1 << 24) == 0  # SIGXFSZ neither
    pid, sid = out["session"][0]["1"].split()
    assert pid == sid  # it leads a session of its own (a kill reaches what it started)


def test_start_quick_outcomes(out):
    assert out["streams"] == [{"1": "out\n", "2": "err\n"}, 3]
    assert out["merged"] == [{"1": "out\nerr\n", "2": ""}, 0]
    # more than a pipe holds before it exits: the rest comes with read
    assert out["big"] == [{"1": "x" * 300000, "2": "end\n"}, 0]
    # its streams closed while it runs on: its exit is still waited for
    assert out["closed"] == [{"1": "", "2": ""}, 5]
    # it exited while its child still holds its stdout: read goes on until that ends
    assert out["child"] == [{"1": "fg\nbg\n", "2": ""}, 0]
    assert out["killed"] == [{"1": "", "2": ""}, 137]
    assert out["slow_first"] is None
    assert out["slow"] == [{"1": "a\nb\n", "2": ""}, 0]
    assert out["left"] == []  # every token forgotten once its end was read


def test_nothing_starts_once_the_connection_ends(out):
    assert out["after_end"] == "the connection is ending: the command was not started"
