"""Closing a local client does not wait for its server's exit, yet every server ends and
is collected: by the process reaper (``launch/reaper.py``) while the master runs, by its
``finish`` at the master's exit, and killed if it does not exit within its grace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from helpers import ROOT

from easycluster.launch.reaper import Reaper
from easycluster.server import spawn_local


def unreaped_child(pid: int) -> bool:
    """True while ``pid`` is a child of this process that nobody has waited for yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False  # gone: reaped (a pid reused since belongs to another parent)


def test_closing_many_clients_ends_every_server():
    clients = [spawn_local() for _ in range(40)]
    try:
        pids = [c.os.getpid() for c in clients]
        assert pids == [c.process.pid for c in clients]
    finally:
        for c in clients:
            c.close()
    # each exits on its own when its socket closes (0: no signal was needed)
    assert [c.process.wait(timeout=30) for c in clients] == [0] * len(clients)


def test_a_fresh_interpreter_is_reaped_without_anyone_waiting():
    clients = [spawn_local(fresh_interpreter=True) for _ in range(3)]
    try:
        pids = [c.os.getpid() for c in clients]
        assert pids == [c.process.pid for c in clients]
    finally:
        for c in clients:
            c.close()
    for _ in range(3000):  # bounded: 30 s at most
        if not any(unreaped_child(pid) for pid in pids):
            break
        time.sleep(0.01)
    assert not any(unreaped_child(pid) for pid in pids)  # the reaper waited for each
    assert [c.process.returncode for c in clients] == [0] * len(clients)


def test_a_process_that_does_not_exit_is_killed_after_its_grace():
    reaper = Reaper(grace=0.2)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    c = spawn_local()
    try:
        assert c.os.getpid() == c.process.pid
        os.kill(c.process.pid, signal.SIGSTOP)  # a server that cannot exit on its own
        reaper.add(proc)
        reaper.add(c.process)
        c.close()
        reaper.finish()  # returns once both are collected
        assert proc.returncode == -signal.SIGKILL
        assert c.process.returncode == -signal.SIGKILL
        assert not unreaped_child(proc.pid)
    finally:
        reaper.finish()
        proc.kill()
        proc.wait()
        c.process.kill()
        c.close()


def test_a_process_that_ended_before_the_hand_over_is_collected_at_once():
    reaper = Reaper(grace=30)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped
        reaper.add(proc)
        assert proc.returncode == 0 and not unreaped_child(proc.pid)
    finally:
        reaper.finish()
        proc.kill()
        proc.wait()


MASTER = """\
import atexit
clients = []

def report():  # registered first, so it runs after the reaper's own exit handler
    print(*[c.process.returncode for c in clients], flush=True)

atexit.register(report)
from easycluster.server import spawn_local

clients += [spawn_local() for _ in range(5)]
clients += [spawn_local(fresh_interpreter=True) for _ in range(2)]
assert [c.os.getpid() for c in clients] == [c.process.pid for c in clients]
for c in clients:
    c.close()  # returns without waiting for the exit: the interpreter's exit does
"""


def test_the_master_exit_collects_every_server_it_closed():
    r = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", MASTER],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.split() == ["0"] * 7
