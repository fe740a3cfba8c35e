"""``spawn_local``'s zygote leaves nothing behind: a master script that exits, or one whose
zygote died and was replaced, closes every socket and reaps every process it started.

Each case runs a master script in a fresh interpreter with every warning an error
(``-X dev -W error``): a socket or a child process left to the garbage collector, or to
the interpreter's exit, prints a ``ResourceWarning`` ("Exception ignored in ...") there.

Then the spawn itself: the handshake the master ran in memory (a request not made with
its key is not served), and the hello whose answer is read later (``server_pid`` waits
for it; a server gone before the first call fails that call).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT, pid_alive

import easycluster
from easycluster import ConnectionLost, ThreadedClient
from easycluster.launch import local
from easycluster.protocol.control import SPAWNED, spawn_request
from easycluster.protocol.handshake import WireOptions
from easycluster.server import spawn_local
from easycluster.transport.channel import Channel

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


# -- the in-memory handshake and the hello not waited for --------------------------------


def test_server_pid_waits_for_the_hello_answer():
    for cls in (None, ThreadedClient):
        c = spawn_local(cls)
        try:
            assert c.server_pid == c.process.pid  # (no call made yet: read here)
            assert c.server_version and c.eval("6 * 7") == 42
        finally:
            c.close()


def test_the_hello_not_waited_for_is_answered_without_a_writer_thread():
    # The hello runs on the server's reading thread, which must never block on a write;
    # its small answer leaves in one non-blocking send, so a local server runs its main
    # thread and its standby only (a writer thread costs a start, a stack and an exit).
    clients = [spawn_local() for _ in range(3)]  # (after the first: hellos not waited for)
    try:
        for c in clients:
            assert c.eval("6 * 7") == 42
            assert c.server_pid == c.process.pid  # (the hello's answer came)
            assert len(os.listdir(f"/proc/{c.process.pid}/task")) == 2
    finally:
        for c in clients:
            c.close()


def test_a_server_gone_before_the_first_call_fails_that_call():
    c = spawn_local()
    try:
        c.process.kill()
        assert c.process.wait(timeout=20) == -9
        with pytest.raises(ConnectionLost):
            c.eval("1")
    finally:
        c.close()


def test_a_request_failing_its_handshake_is_not_served():
    """A zygote child whose request was not made with the key it carries closes the
    socket without serving it (and exits)."""
    spawn_local().close()  # (a zygote running)
    msg, _ = spawn_request(os.urandom(32), WireOptions(), 0, "/")
    bad = bytes([msg[0] ^ 1]) + msg[1:]
    mine, theirs = local.socketpair()
    try:
        proc = local._get_zygote().request(theirs, bad, 30)
        theirs.close()
        mine.settimeout(30)
        assert mine.recv(1) == b""  # closed, nothing sent
        assert proc.wait(timeout=20) == 0
    finally:
        mine.close()
        theirs.close()


def test_a_handle_tells_its_server_from_a_process_that_took_its_pid():
    """The pid of an answer read late may belong to another process by then: one that is
    not the zygote's child is taken for the server, ended (never signalled)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ours = local.LocalProcess()
        ours.found(child.pid, os.getpid())  # the parent named in the answer: it is ours
        assert ours.pid == child.pid and ours.poll() is None
        other = local.LocalProcess()
        other.found(child.pid, child.pid)  # a parent it does not have: not that server
        assert other.poll() == 0
        other.kill()  # (no-op: it ended)
        assert child.poll() is None
        ours.kill()
        assert ours.wait(timeout=20) == -9
    finally:
        child.kill()
        child.wait()


def test_a_handle_without_a_server_says_why():
    proc = local.LocalProcess()
    proc.found(-11, 0)  # the zygote could not fork (EAGAIN)
    assert proc.poll() == 1 and proc.wait(timeout=1) == 1
    with pytest.raises(easycluster.ConnectError, match="could not fork"):
        proc.pid  # noqa: B018


UNREAD = """\
import os
from easycluster.launch import local
from easycluster.server import spawn_local

clients = [spawn_local() for _ in range(20)]  # no answer read, no server waited for
print(local._zygote.proc.pid, flush=True)
os._exit(0)  # gone at once: the zygote meets a closed control socket mid-burst
"""


def test_a_master_gone_mid_burst_leaves_the_zygote_quiet():
    r = subprocess.run(
        [sys.executable, "-X", "dev", "-c", UNREAD],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 0
    zygote = int(r.stdout)
    assert wait_dead(zygote)  # (an orphan now: ended is all we can see)
    assert r.stderr == "", r.stderr


def test_blocks_proven_on_a_local_server_are_not_waited_for_again(tmp_path):
    """spawn_local waits for a hello carrying define_common blocks until those blocks ran
    on a local server once; later spawns do not wait, and a block that fails there after
    all (here: once a marker file exists) fails the first call, saying why."""
    from easycluster.objects import definitions as defs

    marker = tmp_path / "fail-now"
    easycluster.define_common(
        f"import os\nif os.path.exists({str(marker)!r}):\n    raise RuntimeError('marker set')\n",
        name="easycluster.proven_defs",
        local=False,
    )
    clients = []
    try:
        clients.append(spawn_local())  # the blocks run here first: waited for
        marker.write_text("x")
        clients.append(spawn_local())  # the same blocks: not waited for, so no error yet
        with pytest.raises(ConnectionLost, match="(?s)DefinitionsError.*marker set"):
            clients[1].os.getpid()
        assert not clients[1].connected
        assert clients[0].os.getpid() == clients[0].server_pid  # the first one is fine
    finally:
        defs._blocks[:] = [b for b in defs._blocks if b[0] != "easycluster.proven_defs"]
        for c in clients:
            c.close()


def test_a_handle_seen_ending_by_several_threads_at_once_stays_sound():
    """A lost client's closer reaps on a thread of its own while its owner may poll or
    kill the same handle: the exit is recorded once and the pidfd closed once."""
    import threading

    for _ in range(5):
        c = spawn_local()
        proc = c.process
        assert c.os.getpid() == proc.pid
        errors, codes = [], []
        go = threading.Event()

        def watch(proc, go, codes, errors):
            go.wait()
            try:
                codes.append(proc.wait(10))
                proc.kill()  # (ended already: nothing to do)
            except Exception as e:  # pragma: no cover - reported by the assert
                errors.append(e)

        args = (proc, go, codes, errors)
        threads = [threading.Thread(target=watch, args=args) for _ in range(8)]
        for t in threads:
            t.start()
        proc.kill()
        go.set()
        for t in threads:
            t.join(20)
        assert errors == [] and len(set(codes)) == 1 and len(codes) == 8
        c.close()


def test_answers_the_master_has_not_read_never_stop_the_zygote():
    """The master reads the zygote's answers (pids) only when it needs one: answers that
    find the control socket full wait in the zygote, which goes on serving the requests
    behind them. (A zygote that blocked there left the last servers of a burst of 1,000
    spawns unstarted, their first calls waiting for the keep-alive to give up.) Here the
    zygote's end holds only a few answers, and 24 requests are sent unread."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # (the kernel's least)
    zygote = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from easycluster.remote.zygote import main; sys.exit(main(sys.argv[1:]))",
            "--control",
            str(theirs.fileno()),
        ],
        pass_fds=(theirs.fileno(),),
        env=local._env(),
        start_new_session=True,
    )
    theirs.close()
    mine.settimeout(30)  # (an answer missing fails the test, never hangs it)
    links = []
    try:
        for _ in range(24):
            msg, session = spawn_request(os.urandom(32), WireOptions(), 0, "/")
            ours, server_end = local.socketpair()
            socket.send_fds(mine, [msg], [server_end.fileno()])  # (no answer read)
            server_end.close()
            links.append((ours, session))
        ours, session = links[-1]  # the last request: served although 23 answers wait
        client = easycluster.Client(connect_timeout=30)
        client.attach(Channel(ours, session), "last", None)
        assert client.eval("6 * 7", call_timeout=30) == 42
        answers = [mine.recv(16) for _ in range(24)]  # all there, in order, once read
        pids = [SPAWNED.unpack(a)[0] for a in answers]
        assert all(p > 0 for p in pids) and client.server_pid == pids[-1]
        client.close()
    finally:
        for ours, _ in links:
            ours.close()
        mine.close()  # (the zygote ends: its control socket is closed)
        try:
            zygote.wait(timeout=30)
        except subprocess.TimeoutExpired:
            zygote.kill()
            zygote.wait()
            raise


@pytest.mark.parametrize("fresh", [False, True], ids=["zygote", "fresh"])
def test_servers_run_the_masters_package_whatever_the_working_directory_holds(tmp_path, fresh):
    """``python -c`` puts the working directory first on ``sys.path``: a folder holding
    another ``easycluster`` must not give the servers other code than the master's, and
    the folder's own modules still import there."""
    work = tmp_path / "work"
    (work / "easycluster").mkdir(parents=True)
    (work / "easycluster" / "__init__.py").write_text("raise ImportError('not the master\\'s')\n")
    (work / "helper_mod.py").write_text("VALUE = 42\n")
    script = tmp_path / "master.py"  # (its folder, not the working one, is the master's first)
    script.write_text(
        "import easycluster\n"
        "from easycluster.server import spawn_local\n"
        f"c = spawn_local(fresh_interpreter={fresh}, timeout=20)\n"
        "print(c.eval(\"__import__('easycluster').__file__\") == easycluster.__file__)\n"
        "c.import_modules('helper_mod')\n"
        "print(c.eval('helper_mod.VALUE'))\n"
        "c.close()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=work, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "42"]
