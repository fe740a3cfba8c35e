"""A connection process notices that its listener died (``kill -9``) by either way
``watch_listener`` has: the kernel's parent-death signal (Linux) or a pipe's end of file
(elsewhere; tried here too). Real processes: a parent that forks a watching child, then
is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import ROOT, pid_alive, wait_until

from easycluster.service.tcpserver import parent_death_signal

# The parent forks a child that watches it, prints the child's pid, then waits to be
# killed. The child ends on SIGUSR1 (its handler, as a connection's drain would) or,
# never told, after 30 s (too late for the test).
SCRIPT = """
import os, signal, sys, time
from easycluster.service.tcpserver import parent_death_signal, watch_listener
way = sys.argv[1]
r, w = os.pipe()
parent = os.getpid()
pid = os.fork()
if pid == 0:
    os.close(w)
    told = []
    signal.signal(signal.SIGUSR1, lambda *a: told.append(1))
    watch_listener(r, parent, parent_death_signal() if way == "kernel" else None)
    print(os.getpid(), flush=True)
    deadline = time.monotonic() + 30
    while not told and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(0)
time.sleep(60)
"""


@pytest.mark.parametrize("way", ["kernel", "pipe"])
def test_a_watching_child_ends_when_its_parent_is_killed(way):
    if way == "kernel" and parent_death_signal() is None:
        pytest.skip("no PR_SET_PDEATHSIG on this system")
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, way], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert pid_alive(child)
        parent.kill()
        parent.wait(10)
        assert wait_until(lambda: not pid_alive(child), 10), f"the {way} never told it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child and pid_alive(child):
            os.kill(child, signal.SIGKILL)
