"""``spawn_local``'s zygote leaves nothing behind: a master script that exits, or one whose
zygote died and was replaced, closes every socket and reaps every process it started.

Each case runs a master script in a fresh interpreter with every warning an error
(``-X dev -W error``): a socket or a child process left to the garbage collector, or to
the interpreter's exit, prints a ``ResourceWarning`` ("Exception ignored in ...") there.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, pid_alive

MASTER = """\
import sys
from easycluster.launch import local
from easycluster.server import spawn_local

c = spawn_local()
assert c.eval("6 * 7") == 42
zygote = local._zygote.proc
if "replace" in sys.argv:
    zygote.kill()  # a dead zygote: the next spawn_local starts (and keeps) another
    zygote.wait()
    d = spawn_local()
    assert d.eval("1 + 1") == 2 and local._zygote.proc is not zygote
    d.close()
    zygote = local._zygote.proc
c.close()
print(zygote.pid, flush=True)
"""


def run_master(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", MASTER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_master_exit_closes_and_reaps_the_zygote():
    r = run_master()
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert not pid_alive(int(r.stdout))  # ended and reaped before the master exited


def test_a_replaced_zygote_is_closed():
    r = run_master("replace")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert not pid_alive(int(r.stdout))
