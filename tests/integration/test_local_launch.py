"""``spawn_local``'s zygote leaves nothing behind: a master script that exits, or one whose
zygote died and was replaced, closes every socket and reaps every process it started.

Each case runs a master script in a fresh interpreter with every warning an error
(``-X dev -W error``): a socket or a child process left to the garbage collector, or to
the interpreter's exit, prints a ``ResourceWarning`` ("Exception ignored in ...") there.
"""

from __future__ import annotations

import subprocess
import sys
import time

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


SPARE = """\
import os, signal, sys, time
from easycluster.launch import local
from easycluster.server import spawn_local


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def spare_of(zygote, servers):
    for _ in range(2000):  # the zygote forks its next spare right after it answers
        left = {p for p in children(zygote) - servers if not dead(p)}
        if left:
            return left.pop()
        time.sleep(0.005)
    raise SystemExit("the zygote keeps no spare")


c = spawn_local()
zygote = local._zygote.proc.pid
spare = spare_of(zygote, {c.process.pid})
if "kill" in sys.argv:
    os.kill(spare, signal.SIGKILL)  # a spare gone: the next request forks on the spot
    while not dead(spare):
        time.sleep(0.005)
    d = spawn_local()
    assert d.process.pid != spare and d.eval("6 * 7") == 42
    e = spawn_local()  # and the zygote keeps a spare again
    assert e.eval("1 + 1") == 2
    spare = spare_of(zygote, {c.process.pid, d.process.pid, e.process.pid})
    d.close()
    e.close()
assert c.eval("__import__('os').getppid()") == zygote  # the clean zygote's child, not ours
c.close()
print(spare, flush=True)
"""


def run_spare_master(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", SPARE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def wait_dead(pid: int) -> bool:
    """True once ``pid`` has ended (an orphan's end is not awaited by anyone here)."""
    for _ in range(2000):
        if not pid_alive(pid):
            return True
        time.sleep(0.005)
    return False


def test_the_waiting_spare_ends_with_the_zygote():
    r = run_spare_master()
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert wait_dead(int(r.stdout))


def test_a_killed_spare_is_replaced():
    r = run_spare_master("kill")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert wait_dead(int(r.stdout))
