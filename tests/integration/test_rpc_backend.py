"""The Task's RPC backend with real servers: local ones (``spawn_local``) and, for the
zero-install path, ssh through the loopback sshd (the ``sshd`` fixture; under
``CI=true`` it never skips).

Commands run under our server on each node and their output comes back as the same
events and results the exec backends give; the sessions stay open between runs and
serve ``task.call`` too; a timeout, an abort and a lost server are each reported under
their class; nothing is left running on the servers.
"""

from __future__ import annotations

import hashlib
import os
import signal
from typing import Any, Dict, List

import pytest
from helpers import cmdline, pid_alive, wait_until

from easycluster.cluster import EventHandler, Task
from easycluster.server import spawn_local


@pytest.fixture
def task():
    t = Task()
    made: Dict[str, Any] = {}

    def connect(node: str):
        if node.startswith("down"):
            raise ConnectionRefusedError(f"{node} refuses connections")
        made[node] = spawn_local()
        return made[node]

    t.set_info("rpc_connect", connect)
    t.set_default("backend", "rpc")
    t.made = made  # type: ignore[attr-defined]
    yield t
    t.close_sessions()


class Recorder(EventHandler):
    def __init__(self) -> None:
        self.events: List[tuple] = []

    def ev_read(self, worker, node, sname, msg):
        self.events.append(("read", node, sname, msg))

    def ev_hup(self, worker, node, rc):
        self.events.append(("hup", node, rc))


def test_output_return_codes_and_streams_come_back_per_node(task):
    h = Recorder()
    task.shell("echo out; echo err >&2", nodes="n[1-2]", handler=h)
    task.shell("echo bad; exit 3", nodes="n3", handler=h)
    task.resume()
    assert sorted(e for e in h.events if e[0] == "hup") == [
        ("hup", "n1", 0),
        ("hup", "n2", 0),
        ("hup", "n3", 3),
    ]
    assert ("read", "n1", "stdout", b"out") in h.events
    assert ("read", "n2", "stderr", b"err") in h.events
    assert task.node_error("n1") == b"err" and task.node_buffer("n3") == b"bad"
    assert task.max_retcode() == 3


def test_sessions_stay_open_between_runs_and_serve_calls(task):
    task.run("echo first", nodes="n[1-2]")
    pids = {n: c.server_pid for n, c in task.made.items()}
    task.run("echo second", nodes="n[1-2]")
    assert task.node_buffer("n1") == b"second"
    assert {n: c.server_pid for n, c in task.made.items()} == pids  # the same servers
    got = task.call(os.getpid, nodes="n[1-2]")
    assert got == {"n1": pids["n1"], "n2": pids["n2"]}
    assert task.call("os.getcwd", nodes="n1") == {
        "n1": task.made["n1"].eval("__import__('os').getcwd()")
    }


def test_output_streams_before_the_command_ends(task):
    seen: List[bytes] = []

    class FirstLine(EventHandler):
        def ev_read(self, worker, node, sname, msg):
            seen.append(msg)
            if msg == b"ready":  # the command still runs: only then is it killed
                worker.task.abort(kill=True)

    task.shell("echo ready; exec sleep 60", nodes="n1", handler=FirstLine())
    task.resume()
    assert seen == [b"ready"]
    assert task.node_status("n1") == "aborted"


def test_a_timeout_kills_the_remote_command_and_its_children(task, tmp_path):
    pidfile = tmp_path / "pid"
    task.shell(f"sleep 60 & echo $! > {pidfile}; wait", nodes="n1", timeout=0.5)
    task.resume()
    assert task.node_status("n1") == "timeout"
    child = int(pidfile.read_text())
    assert wait_until(lambda: not pid_alive(child), timeout=10)
    task.run("echo after", nodes="n1")  # the session is still usable
    assert task.node_buffer("n1") == b"after"


def test_warm_sessions_relay_ended_streaming_slow_and_killed_commands_alike(task, tmp_path):
    """On open sessions the starts go out from the engine's thread and one thread takes
    the replies (rpc.py): a command over by its first reply, one still running then
    (streamed on by a relay), one slower to answer than HANDOFF, and one killed by its
    timeout each come back whole, whichever way each one went."""
    task.run("true", nodes="n[1-4]")  # (the sessions are open from here on)
    pidfile = tmp_path / "pid"
    task.shell("echo a; sleep 0.2; echo b >&2; exit 4", nodes="n1")
    task.shell("sleep 0.2; echo late", nodes="n2")
    task.shell("echo now", nodes="n3")
    task.shell(f"sleep 60 & echo $! > {pidfile}; wait", nodes="n4", timeout=0.5)
    task.resume()
    assert (task.node_buffer("n1"), task.node_error("n1")) == (b"a", b"b")
    assert task.node_retcode("n1") == 4
    assert task.node_buffer("n2") == b"late" and task.node_buffer("n3") == b"now"
    assert task.node_status("n4") == "timeout"
    assert wait_until(lambda: not pid_alive(int(pidfile.read_text())), timeout=10)
    task.run("echo after", nodes="n[1-4]")  # every session still serves
    assert dict(task.iter_buffers()) == {b"after": ["n1", "n2", "n3", "n4"]}


def test_unreachable_and_lost_nodes_are_named_and_delay_no_one(task):
    task.run("echo ok", nodes="n1")
    victim = task.made["n1"].server_pid
    task.shell(f"kill -9 {victim}; sleep 30", nodes="n1")
    task.shell("echo fine", nodes="n2")
    task.shell("echo never", nodes="down1")
    task.resume()
    assert task.node_status("n1") == "unreachable"
    assert b"lost during the command" in task.node_error("n1")
    assert task.node_status("down1") == "unreachable"
    # (the node is named by the line the message goes in, not by the message again)
    assert task.node_error("down1") == b"easycluster rpc: cannot connect: down1 refuses connections"
    assert task.node_buffer("n2") == b"fine"
    got = task.call(os.getpid, nodes="n1,down1")  # n1 connects again; down1 is an error
    assert got["n1"] != victim and isinstance(got["down1"], ConnectionRefusedError)


def test_stdin_is_broadcast_to_every_node_in_order(task, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB, more than any pipe holds at once
    task.shell("sha256sum", nodes="n[1-3]", stdin=data)
    task.shell("cat > /dev/null; echo done", nodes="n4", stdin=b"")
    task.resume()
    digest = hashlib.sha256(data).hexdigest().encode()
    assert dict(task.iter_buffers()) == {digest + b"  -": ["n1", "n2", "n3"], b"done": ["n4"]}
    source = tmp_path / "in"
    source.write_bytes(data[:100_000])
    with open(source, "rb") as f:  # a file object as stdin, read as the nodes take it
        task.run("wc -c", nodes="n[1-2]", stdin=f)
    assert dict(task.iter_buffers()) == {b"100000": ["n1", "n2"]}


def test_ssh_zero_install_sessions(sshd):
    t = Task()
    t.set_info("ssh_options", f"-F {sshd.config}")
    try:
        t.run("echo $((6 * 7))", nodes="sshtest[1-2]", backend="rpc")
        assert dict(t.iter_buffers()) == {b"42": ["sshtest1", "sshtest2"]}
        pids = t.call(os.getpid, nodes="sshtest[1-2]")
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    finally:
        t.close_sessions()


def test_ssh_path_and_connect_timeout_reach_the_sessions_ssh(sshd, tmp_path):
    """As for the ssh backend: ``ssh_path`` is shell words (a wrapper, here), and
    ``connect_timeout`` is ssh's ConnectTimeout too, after the caller's options; an
    ``ssh_path`` that is not there is the node's "could not start here"."""
    log = tmp_path / "args"
    wrapper = tmp_path / "my ssh"
    wrapper.write_text(f'printf "%s\\n" "$@" > "{log}"\nexec ssh "$@"\n')
    t = Task()
    t.set_info("ssh_path", f"sh '{wrapper}'")
    t.set_info("ssh_options", f"-F {sshd.config}")
    t.set_info("connect_timeout", 7)
    try:
        t.run("echo ok", nodes="sshtest1", backend="rpc")
        assert t.node_buffer("sshtest1") == b"ok"
        assert log.read_text().splitlines()[:3] == ["-F", sshd.config, "-oConnectTimeout=7"]
    finally:
        t.close_sessions()
    t = Task()
    t.set_info("ssh_path", "/nonexistent/ssh")
    t.set_info("ssh_options", f"-F {sshd.config}")
    try:
        t.run("echo ok", nodes="sshtest1", backend="rpc")
        assert t.node_status("sshtest1") == "failed"
        assert b"/nonexistent/ssh" in t.node_error("sshtest1")
    finally:
        t.close_sessions()


def test_closing_the_sessions_ends_the_commands_still_running(task, tmp_path):
    pidfile = tmp_path / "pid"

    class CloseWhenStarted(EventHandler):
        def ev_read(self, worker, node, sname, msg):
            if sname != "stdout":
                return
            pid = int(msg)
            task.close_sessions()  # (mid-run: the node's server ends with its session)
            assert wait_until(lambda: not pid_alive(pid), timeout=10), "left running"
            pidfile.write_text(str(pid))

    task.shell("echo $$; exec sleep 60", nodes="n1", handler=CloseWhenStarted())
    task.resume()
    assert pidfile.exists()
    assert task.node_status("n1") == "unreachable"  # the session went away under it


def test_placeholders_are_substituted_as_for_exec(task):
    task.run("echo %h %n %host %rank 100%%", nodes="n[1-2]")
    assert dict(task.iter_buffers()) == {b"n1 0 n1 0 100%": ["n1"], b"n2 1 n2 1 100%": ["n2"]}
    backend = task.rpc_backend()
    task.run(backend.literal("echo %h 100%"), nodes="n1")  # literal: runs as written
    assert task.node_buffer("n1") == b"%h 100%"


@pytest.mark.parametrize("warm", [False, True], ids=["new-session", "warm-session"])
def test_a_command_dies_with_its_killed_server(task, tmp_path, warm):
    """The server is SIGKILLed (no clean end of its session): the watchdog it started
    kills the command's process group, children included. On a warm session the command
    is announced to the watchdog only once it outlived ``commands.QUICK``, but before
    anything of it came back: once its output is seen, it is protected."""
    if warm:
        task.run("true", nodes="n1")  # (no watchdog yet: that command was too short)
    pids: List[int] = []

    class KillServerWhenStarted(EventHandler):
        def ev_read(self, worker, node, sname, msg):
            if sname == "stdout":
                pids.extend(int(p) for p in msg.split())
                os.kill(task.made[node].server_pid, signal.SIGKILL)

    task.shell("sleep 60 & echo $$ $!; wait", nodes="n1", handler=KillServerWhenStarted())
    task.resume()
    assert task.node_status("n1") == "unreachable" and len(pids) == 2
    for pid in pids:  # the shell and its background child
        assert wait_until(lambda p=pid: not pid_alive(p), timeout=10), f"{pid} left running"


def test_one_watchdog_per_server_and_it_goes_with_the_server(task):
    """One watchdog per server however many commands ran, and it goes with its server
    (it is not left behind when the server is SIGKILLed). (The commands outlive
    ``commands.QUICK``: a shorter one on a warm session is never announced to it.)"""
    for _ in range(3):
        task.run("sleep 0.1; echo $$", nodes="n[1-2]")
    server = task.made["n1"].server_pid
    watchdogs = [p for p in children_of(server) if b"while read -r op pg" in cmdline(p)]
    assert len(watchdogs) == 1
    os.kill(server, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(watchdogs[0]), timeout=10)


def children_of(pid: int) -> List[int]:
    out: List[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out
