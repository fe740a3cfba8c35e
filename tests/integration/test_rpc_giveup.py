"""The RPC backend giving up on nodes, with real processes: a timeout, an abort or Ctrl-C
ends nodes still connecting and nodes whose server is stopped without waiting for one
after another, and leaves no local ``ssh`` behind (``cluster/rpc.py``,
``cluster/rpcsessions.py``, ``launch/killswitch.py``).

A node "still connecting" is an ssh alias of a local listener that accepts the
connection and never speaks (ssh hangs in its banner exchange, as with a wedged host);
a stopped server is one of ours over the loopback sshd (the ``sshd`` fixture) whose
command sent it SIGSTOP. The bounds on time only tell "together" from "one after
another" (8 nodes at ``KILL_GRACE``, 2 s, each: 16 s); every test kills and reaps what it
started, and continues what it stopped, whether it passes or not.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import Iterator, List

import pytest
from helpers import SHELL, cmdline, ctrl_c, live_children, pid_alive, wait_until

from easycluster.cluster import EventHandler, Task
from easycluster.errors import ConnectError
from easycluster.launch.ssh import open_channel

pytestmark = pytest.mark.timeout(120)

NODES = 8
TOGETHER = 8.0  # s: well under NODES grace periods one after another (16 s)


class Blackhole:
    """A loopback listener that accepts connections and never speaks; ``config`` is an
    ssh_config where ``hole*`` is this listener and ``refused*`` a port nobody listens
    on."""

    def __init__(self, workdir: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: List[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        with socket.socket() as s:  # (a port free now, never listened on)
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        self.config = os.path.join(workdir, "ssh_config")
        common = "  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        with open(self.config, "w") as f:
            f.write(f"Host hole*\n  HostName 127.0.0.1\n  Port {self.port}\n{common}")
            f.write(f"Host refused*\n  HostName 127.0.0.1\n  Port {closed}\n{common}")
            f.write("  LogLevel ERROR\n")

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                continue

    def processes(self) -> List[int]:
        """Live processes started with this config (the ssh connecting to it)."""
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if self.config.encode() in cmd and pid_alive(int(name)):
                out.append(int(name))
        return out

    def close(self) -> None:
        """Kill what still connects to us (a test that failed), then close."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop.set()
        self.thread.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def hole(tmp_path) -> Iterator[Blackhole]:
    bh = Blackhole(str(tmp_path))
    try:
        yield bh
    finally:
        bh.close()


def rpc_task(options: str, connect_timeout: float = 60) -> Task:
    t = Task()
    t.set_info("ssh_options", options)
    t.set_info("connect_timeout", connect_timeout)  # (long: giving up must not wait for it)
    t.set_default("backend", "rpc")
    return t


def test_a_switch_gives_up_a_connect_at_once_and_reaps_its_ssh(hole):
    """``open_channel`` with a ``KillSwitch``: thrown while ssh hangs in its connect, the
    call raises at once and its ssh is gone; thrown before, ssh never outlives it."""
    from easycluster.launch.killswitch import KillSwitch

    switch = KillSwitch()
    failed: List[BaseException] = []

    def connect() -> None:
        try:
            open_channel("hole1", extra_args=["-F", hole.config], timeout=60, switch=switch)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(hole.accepted) == 1, timeout=30), "ssh never connected"
        switch.abandon()
        thread.join(10)
        assert not thread.is_alive(), "open_channel went on after abandon()"
        assert isinstance(failed[0], ConnectError) and "given up" in str(failed[0])
        assert hole.processes() == []
    finally:
        switch.kill()  # (what a failed test left: ended here)
        thread.join(10)
    early = KillSwitch()
    early.abandon()
    with pytest.raises(ConnectError, match="given up"):
        open_channel("hole2", extra_args=["-F", hole.config], timeout=60, switch=early)
    assert hole.processes() == []


def test_a_timeout_gives_up_nodes_still_connecting_together_and_leaves_no_ssh(hole):
    task = rpc_task(f"-F {hole.config}")
    try:
        task.shell("true", nodes=f"hole[1-{NODES}]", timeout=1)
        started = time.monotonic()
        task.resume()
        took = time.monotonic() - started
        assert {task.node_status(f"hole{i}") for i in range(1, NODES + 1)} == {"timeout"}
        assert took < TOGETHER, f"{took:.1f} s: the nodes were waited for one after another"
        assert wait_until(lambda: not hole.processes(), timeout=5), "ssh left running"
    finally:
        task.close_sessions()


def test_ctrl_c_while_nodes_connect_exits_at_once_and_leaves_no_ssh(hole):
    """The command line: Ctrl-C while every node still connects (their ssh run in
    sessions of their own, so the terminal's SIGINT does not reach them)."""
    proc = subprocess.Popen(
        [*SHELL, "-R", "rpc", "-o", f"-F {hole.config}", "-t", "60", "-w", f"hole[1-{NODES}]"]
        + ["true"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    interrupted = [0.0]

    def all_connecting() -> None:
        assert wait_until(lambda: len(hole.accepted) == NODES, timeout=60), "never connecting"
        interrupted[0] = time.monotonic()

    _, err = ctrl_c(proc, all_connecting)
    took = time.monotonic() - interrupted[0]
    assert proc.returncode == 130, err
    assert took < TOGETHER, f"{took:.1f} s from Ctrl-C to exit"
    assert wait_until(lambda: not hole.processes(), timeout=5), "ssh left running"


def test_an_unreachable_node_is_named_once_on_its_error_line(hole):
    proc = subprocess.run(
        [*SHELL, "-R", "rpc", "-o", f"-F {hole.config}", "-w", "refused1", "true"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 252
    line = next(x for x in proc.stderr.decode().splitlines() if "cannot connect" in x)
    assert line.startswith("refused1: easycluster rpc: cannot connect: ssh cannot connect: ")
    assert line.count("refused1") == 1


def test_stopped_servers_are_given_up_together_and_their_ssh_killed(sshd, tmp_path):
    """Eight nodes whose server is stopped (SIGSTOP) under a running command: an abort
    waits one grace period for all of them, not one each, and kills their ssh. On the
    nodes the commands run on while the servers are stopped; continued, each server finds
    its session gone and kills its command."""
    task = rpc_task(f"-F {sshd.config}", connect_timeout=30)
    pids = tmp_path / "pids"
    pids.mkdir()
    nodes = [f"sshtest{i}" for i in range(1, NODES + 1)]
    # (the command waits a moment before it stops its server: the server has listed it
    # by then, so it can kill it once continued)
    command = f"echo $PPID $$ > {pids}/%h; sleep 0.3; kill -STOP $PPID; exec sleep 60"
    aborted = [0.0]

    class AbortWhenAllStopped(EventHandler):
        def ev_timer(self, timer):
            if len(os.listdir(pids)) == NODES and all(stopped(p) for p in servers()):
                timer.invalidate()
                aborted[0] = time.monotonic()
                task.abort()

    def servers() -> List[int]:
        return [int((pids / n).read_text().split()[0]) for n in os.listdir(pids)]

    def commands() -> List[int]:
        return [int((pids / n).read_text().split()[1]) for n in os.listdir(pids)]

    try:
        task.shell(command, nodes=",".join(nodes))
        task.timer(0.1, AbortWhenAllStopped(), interval=0.1)
        task.resume(timeout=90)
        took = time.monotonic() - aborted[0]
        assert aborted[0], "the servers were never all stopped"
        assert took < TOGETHER, f"{took:.1f} s: the nodes were waited for one after another"
        assert {task.node_status(n) for n in nodes} == {"aborted"}
        assert task.rpc_backend().sessions() == {}  # every stopped server's session ended
        ours = [p for p in ssh_children() if sshd.config.encode() in cmdline(p)]
        assert ours == [], "ssh left running"
        assert all(pid_alive(p) for p in commands())  # (its server cannot kill it yet)
        for server in servers():
            os.kill(server, signal.SIGCONT)
        for pid in commands():
            assert wait_until(lambda p=pid: not pid_alive(p), timeout=10), f"{pid} left running"
    finally:
        for name in os.listdir(pids):  # (whatever happened: nothing stopped or running)
            server, cmd = (int(x) for x in (pids / name).read_text().split())
            for pid, sig in ((server, signal.SIGCONT), (-cmd, signal.SIGKILL)):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        task.close_sessions()


def stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def ssh_children() -> List[int]:
    """Live children of this process (any thread's) that run ssh."""
    return [p for p in live_children() if cmdline(p).split(b"\0")[0].endswith(b"ssh")]


def test_a_connect_that_closing_the_sessions_overlapped_is_closed_not_kept():
    """``close`` while a node connects: that session was nobody's once made (the next
    ``session`` would not find it either), and its server ran until the master exited.
    Now it is closed as it arrives and the connect raises ConnectError."""
    from easycluster.cluster.rpcsessions import SessionKeeper
    from easycluster.server import spawn_local

    started, go = threading.Event(), threading.Event()
    made = []

    def connect(node):
        started.set()
        assert go.wait(30)
        made.append(spawn_local())
        return made[-1]

    keeper = SessionKeeper(connect, {})
    got = []
    worker = threading.Thread(target=lambda: got.append(_outcome(keeper.session, "n1")))
    worker.start()
    try:
        assert started.wait(30)
        keeper.close()
        go.set()
        worker.join(30)
        assert not worker.is_alive()
        [outcome] = got
        assert isinstance(outcome, ConnectError), outcome
        assert "sessions were closed" in str(outcome)
        [client] = made
        assert not client.connected
        client.process.wait(timeout=10)  # its server ended with it
        assert keeper.sessions() == {}
        again = keeper.session("n1")  # the keeper still connects afterwards
        assert again.connected and again is not client
    finally:
        go.set()
        worker.join(30)
        keeper.close()
        for c in made:
            c.close()


def _outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        return e
