"""``Cluster``: sessions to many nodes, commands and Python calls per slot, over local
servers and over ssh against the real loopback sshd (never skipped under ``CI=true``)."""

from __future__ import annotations

import os
import sys

import pytest

import easycluster
from easycluster import Cluster
from easycluster.server import spawn_local

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def local_cluster():
    with Cluster("n[1-3],n1", client=lambda node: spawn_local()) as c:
        yield c


def test_run_gives_each_slot_its_exit_code_and_output(local_cluster):
    r = local_cluster.run("echo out; echo err >&2; [ $(($$ % 1)) = 0 ] && exit 4")
    assert list(r) == ["n1", "n2", "n3", "n1#2"]  # a node listed twice: two slots
    assert {k: v.rc for k, v in r.items()} == dict.fromkeys(r, 4)
    assert all(v.stdout == b"out\n" and v.stderr == b"err\n" for v in r.values())
    assert r.succeeded == {} and set(r.failed) == set(r)
    assert r.summary().splitlines() == [
        "n[1-3],n1#2 (4 nodes): exit code 4",
        "4 of 4 did not succeed",
    ]
    assert r.exit_code() == 250 and r.exit_code(maxrc=True) == 4
    ok = local_cluster.run("true")
    assert ok.summary() == "" and ok.exit_code() == 0


def test_call_sends_functions_and_names(local_cluster):
    pids = local_cluster.call(os.getpid)
    assert len(set(pids.values())) == 4 and os.getpid() not in pids.values()
    assert set(local_cluster.call("os.getloadavg").succeeded) == set(local_cluster.keys)
    r = local_cluster.call(lambda x: 10 // x, 0)
    assert all(isinstance(v, ZeroDivisionError) for v in r.values())
    assert r.exit_code() == 250 and "4 of 4 did not succeed" in r.summary()
    # a raise has no exit status: the failure class's code, with maxrc too (not a 1,
    # which reads as a remote exit status, and is easycluster's own failure)
    assert r.exit_code(maxrc=True) == 250
    # and the summary says it raised, not that something "exited 250"
    assert {o.kind.value for o in r.outcomes.values()} == {"raised"}
    assert "raised an exception" in r.summary() and "exit code" not in r.summary()


def test_a_call_that_returns_an_exception_succeeded(local_cluster):
    r = local_cluster.call(lambda: ValueError("a value, not an error"))
    assert all(type(v) is ValueError for v in r.values())
    assert set(r.succeeded) == set(r) and r.failed == {}
    assert r.summary() == "" and r.exit_code() == 0 and r.exit_code(maxrc=True) == 0


def test_a_command_past_its_timeout_is_killed_and_classified(local_cluster):
    r = local_cluster.run("sleep 30", timeout=0.5)
    assert r.exit_code() == 251 and "timed out" in r.summary()
    assert local_cluster.run("echo again")["n2"].stdout == b"again\n"  # sessions go on


def test_a_timeout_or_close_kills_what_the_command_started(tmp_path):
    from helpers import pid_alive, wait_until

    with Cluster(["a", "b"], client=lambda n: spawn_local()) as c:
        r = c.run(f"sleep 61 & echo $! >> {tmp_path}/timed; wait", timeout=0.5)
        assert r.exit_code() == 251
        pids = [int(p) for p in (tmp_path / "timed").read_text().split()]
        assert len(pids) == 2 and wait_until(lambda: not any(map(pid_alive, pids)), 10)
        import threading

        running = threading.Thread(
            target=c.run, args=(f"sleep 62 & echo $! >> {tmp_path}/open; wait",)
        )
        running.start()
        opened = tmp_path / "open"
        assert wait_until(lambda: opened.exists() and len(opened.read_text().split()) == 2, 10)
    running.join(10)
    pids = [int(p) for p in (tmp_path / "open").read_text().split()]
    assert wait_until(lambda: not any(map(pid_alive, pids)), 10)  # closed: killed there


def test_run_takes_one_command_string(local_cluster):
    with pytest.raises(TypeError, match="one string"):
        local_cluster.run(["echo", "hello"])


def test_a_session_lost_during_a_call_is_unreachable():
    with Cluster(["a", "b"], client=lambda n: spawn_local()) as c:
        os.kill(c.clients["b"].server_pid, 9)
        r = c.call(os.getpid)
        assert r.outcomes["b"].kind.value == "unreachable" and r.exit_code() == 252


def test_call_timeout_bounds_a_call_per_slot():
    with Cluster(["a", "b"], call_timeout=0.5, client=lambda n: spawn_local()) as c:
        r = c.call("time.sleep", 10)
        assert all(isinstance(v, easycluster.CallTimeout) for v in r.values())
        assert r.exit_code() == 251
        # the stuck calls hold up no later one (each call has a server thread of its own)
        assert c.call(os.getpid).exit_code() == 0
        # every keyword is the remote function's, even those call_multi takes for itself
        got = c.call(lambda **kw: sorted(kw), call_timeout=1, origexc=2, on_result=3)
        assert got["a"] == ["call_timeout", "on_result", "origexc"]
        with pytest.raises(TypeError, match="not 42"):
            c.call(42)


def test_copy_and_rcopy_over_the_sessions(tmp_path):
    def connect(node):
        if node == "down":
            raise easycluster.ConnectError("down: no route")
        return spawn_local()

    src = tmp_path / "conf.txt"
    src.write_bytes(b"setting = 1\n" * 1000)
    dest = tmp_path / "remote"
    dest.mkdir()
    back = tmp_path / "back"
    back.mkdir()
    with Cluster(["a", "b", "down"], client=connect) as c:
        r = c.copy(str(src), str(dest))
        assert r.exit_code() == 252 and set(r.succeeded) == {"a", "b"}
        assert (dest / "conf.txt").read_bytes() == src.read_bytes()
        r = c.rcopy(str(dest / "conf.txt"), str(back))
        assert set(r.succeeded) == {"a", "b"} and "down: unreachable" in r.summary()
        assert sorted(p.name for p in back.iterdir()) == ["conf.txt.a", "conf.txt.b"]
        missing = c.rcopy(str(tmp_path / "nope"), str(back))
        assert missing.failed["a"].rc != 0 and missing.failed["a"].stderr
        assert sorted(p.name for p in back.iterdir()) == ["conf.txt.a", "conf.txt.b"]
        with pytest.raises(FileNotFoundError):
            c.copy(str(tmp_path / "nope"), str(dest))  # a local mistake raises here
        assert c.call(os.getpid).exit_code() == 252  # the sessions are still the Cluster's


def test_a_misspelt_connect_option_raises_at_once():
    with pytest.raises(TypeError, match="extra_arg"):
        Cluster(["a", "b"], extra_arg=["-v"])


def test_over_ssh_unreachable_nodes_are_kept_per_slot(sshd):
    kw = sshd.client_kw(rpython=sys.executable)
    kw.pop("host")
    with Cluster("sshtest[1-2],nosuch.invalid", **kw) as c:
        assert set(c.unreachable) == {"nosuch.invalid"}
        r = c.run("echo ok")
        assert {k: v.stdout for k, v in r.succeeded.items()} == {
            "sshtest1": b"ok\n",
            "sshtest2": b"ok\n",
        }
        assert r.summary().splitlines()[0] == "nosuch.invalid: unreachable"
        assert r.exit_code() == 252
        assert c.call(sum, [1, 2]).succeeded == {"sshtest1": 3, "sshtest2": 3}


def _ssh_cluster(sshd, nodes, **kw):
    opts = sshd.client_kw(rpython=sys.executable, **kw)
    opts.pop("host")
    return Cluster(nodes, **opts)


def _ssh_child(node):
    """The pid of this process's ``ssh`` child that reaches ``node``."""
    from helpers import cmdline

    kids = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            kids.update(int(p) for p in f.read().split())
    found = [p for p in kids if f"\0{node}\0".encode() in cmdline(p)]
    assert len(found) == 1, found
    return found[0]


def test_a_session_found_lost_has_its_ssh_reaped_at_once(sshd):
    from helpers import pid_alive, wait_until

    with _ssh_cluster(sshd, "sshtest[1-2]") as c:
        pids = c.call(os.getpid).data
        ssh = _ssh_child("sshtest1")
        os.kill(pids["sshtest1"], 9)
        # ssh ends with its server (a zombie until collected): the next call finds the
        # session lost as it sends
        assert wait_until(lambda: not pid_alive(ssh))
        assert c.call(os.getpid).outcomes["sshtest1"].kind.value == "unreachable"
        # found lost: its ssh is collected now, not left a zombie until close()
        assert wait_until(lambda: not os.path.exists(f"/proc/{ssh}"))
        assert c.call(os.getpid).succeeded.keys() == {"sshtest2"}


@pytest.fixture
def local_module(tmp_path, monkeypatch):
    """A module importable here only (the node's Python does not see ``tmp_path``)."""
    import importlib

    (tmp_path / "ec_only_here.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("ec_only_here")
    sys.modules.pop("ec_only_here", None)


def test_a_function_of_a_module_the_node_lacks_says_how_to_fix_it(sshd, local_module):
    with _ssh_cluster(sshd, "sshtest1") as c:
        r = c.call(local_module.double, 21)
        err = r["sshtest1"]
        assert isinstance(err, ModuleNotFoundError) and err.name == "ec_only_here"
        assert "not importable here" in str(err) and "define_common" in str(err)
        assert "register_pickle_by_value(ec_only_here)" in str(err)
        # a module the function itself fails to import is its own error, left as it is
        r = c.call(lambda: __import__("ec_no_such_module"))
        assert str(r["sshtest1"]) == "No module named 'ec_no_such_module'"
        # the same hint for a plain Client (the server gives it)
        client = c.clients["sshtest1"]
        with pytest.raises(ModuleNotFoundError, match="define_common"):
            client.raw_call("easycluster.remote.verbs.apply", (local_module.double, 1))


def test_a_server_frozen_before_the_hello_is_unreachable_within_connect_timeout(sshd, tmp_path):
    # The node freezes itself (SIGSTOP) while it answers the hello: its define_common
    # block runs there, where its rpython's environment says so; in a fresh interpreter,
    # as define_common is the process's.
    import signal

    from helpers import pid_alive, run_fresh, wait_until

    frozen = tmp_path / "frozen.pid"
    try:
        out = run_fresh(
            f"""
            import os, sys
            from easycluster import Client, Cluster, define_common
            define_common('''
            import os, signal
            if os.environ.get("EC_FREEZE"):
                with open(os.environ["EC_FREEZE"], "w") as f:
                    f.write(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGSTOP)
            ''', local=False)
            def connect(node):
                env = "env EC_FREEZE={frozen} " if node == "sshtest2" else ""
                return Client(
                    host=node, extra_args=["-F", {sshd.config!r}],
                    rpython=env + sys.executable, connect_timeout=3,
                )
            with Cluster(["sshtest1", "sshtest2"], client=connect) as c:
                err = c.unreachable["sshtest2"]
                print(sorted(c.unreachable), type(err).__name__)
                print(str(err))
                print(c.call(os.getpid).exit_code(), sorted(c.call(os.getpid).succeeded))
            """,
            timeout=30,
        )
    finally:
        if frozen.exists():  # let the stopped server go: it ends (its ssh is gone)
            pid = int(frozen.read_text())
            os.kill(pid, signal.SIGCONT)
            assert wait_until(lambda: not pid_alive(pid))
    lines = out.splitlines()
    assert lines[0] == "['sshtest2'] ConnectError"
    assert "connecting timed out after 3 s: no answer to the hello" in lines[1]
    assert lines[2] == "252 ['sshtest1']"
