"""``Task.copy`` and ``Task.rcopy`` at their edges, over the real loopback sshd (the ssh
backend) and over rpc sessions: names that end in a newline, ``~`` in a node's path,
times before 1970, a Ctrl-C while a pulled directory is unpacked, and a node user who
is not root (a tree with a read-only subdirectory to replace, a destination that user
cannot write).

Not root on the node: the sshd logs in as the test's user (root), and the command
runs under ``setpriv`` as ``nobody`` (the ssh backend's ``ssh`` is a small wrapper that
puts ``setpriv ... sh -c`` before the command; an rpc session's Python is started by
``setpriv``). Nothing is added to the system: no user is created.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from helpers import SHELL, ctrl_c, tree

from easycluster import Client
from easycluster.cluster import SshBackend, Task
from easycluster.cluster.copy import TEMP_MARK

pytestmark = [pytest.mark.usefixtures("no_leftover_children"), pytest.mark.timeout(120)]

NOBODY_ID = 65534
NOBODY = f"setpriv --reuid={NOBODY_ID} --regid={NOBODY_ID} --clear-groups"
BEFORE_1970 = -304819200  # 1960-05-05


def ssh_task(sshd) -> Task:
    t = Task()
    t.set_info("ssh_options", f"-F {sshd.config}")
    t.set_info("connect_timeout", 5)
    return t


@pytest.fixture(scope="module", autouse=True)
def zygote():
    """spawn_local's zygote, started before ``no_leftover_children`` counts (it is kept
    for the process, as for ``rpc_task``)."""
    from easycluster.server import spawn_local

    spawn_local().close()


@pytest.fixture(params=["ssh", "rpc"])
def node(request, sshd, tmp_path):
    """``(task, node, home)``: a Task whose default backend reaches ``node`` as root, and
    that node user's home (``~``). ssh: the sshd's HOME; rpc: a local server whose HOME
    is a directory of the test."""
    if request.param == "ssh":
        yield ssh_task(sshd), "sshtest1", sshd.home
        return
    from easycluster.server import spawn_local

    home = tmp_path / "home"
    home.mkdir()
    task = Task()

    def connect(name: str):
        client = spawn_local()
        client.call("os.environ.__setitem__", "HOME", str(home))
        return client

    task.set_info("rpc_connect", connect)
    task.set_default("backend", "rpc")
    yield task, "n1", str(home)
    task.close_sessions()


def errors(task: Task) -> list:
    return [(bytes(e), k) for e, k in task.iter_errors()]


# -- names and paths ---------------------------------------------------------------


def test_a_name_or_a_destination_ending_in_a_newline_is_kept(node, tmp_path):
    task, name, _ = node
    src = tmp_path / "tnl\n"
    src.write_bytes(b"newline\n")
    dest = tmp_path / "dest"
    (dest / "nl\n").mkdir(parents=True)
    (dest / "nl").mkdir()
    task.copy(str(src), str(dest), nodes=name)
    task.copy(str(tmp_path / "tnl\n"), str(dest / "nl\n"), nodes=name)
    task.resume()
    assert task.max_retcode() == 0, errors(task)
    assert tree(dest) == sorted(["nl/", "nl\n/", "nl\n/tnl\n", "tnl\n"])
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    task.rcopy(str(dest / "nl\n" / "tnl\n"), str(pulled), nodes=name)
    task.resume()
    assert task.max_retcode() == 0, errors(task)
    assert os.listdir(pulled) == [f"tnl\n.{name}"]


def test_a_leading_tilde_is_the_node_users_home(node, tmp_path):
    task, name, home = node
    src = tmp_path / "conf"
    src.write_bytes(b"conf\n")
    made = [os.path.join(home, p) for p in ("conf", "sub", "tilde-test")]
    try:
        os.mkdir(made[1])
        task.copy(str(src), "~", nodes=name)
        task.copy(str(src), "~/sub/", nodes=name)
        task.copy(str(src), "~/tilde-test", nodes=name)
        task.resume()
        assert task.max_retcode() == 0, errors(task)
        assert not os.path.exists(os.path.join(home, "~"))
        assert [os.path.isfile(p) for p in made] == [True, False, True]
        assert os.listdir(made[1]) == ["conf"]
        pulled = tmp_path / "pulled"
        pulled.mkdir()
        task.rcopy("~/tilde-test", str(pulled), nodes=name)
        task.resume()
        assert task.max_retcode() == 0, errors(task)
        assert (pulled / f"tilde-test.{name}").read_bytes() == b"conf\n"
        # ~user is refused here, before anything runs, saying how to write the path
        with pytest.raises(ValueError, match="~root is not expanded.*in full"):
            task.copy(str(src), "~root/x", nodes=name)
        with pytest.raises(ValueError, match="~root is not expanded.*in full"):
            task.rcopy("~root/x", str(pulled), nodes=name)
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else None
            if os.path.isfile(path):
                os.unlink(path)


def test_preserve_keeps_a_time_before_1970_both_ways(node, tmp_path):
    task, name, _ = node
    src = tmp_path / "old"
    src.write_bytes(b"old\n")
    os.utime(src, (BEFORE_1970, BEFORE_1970))
    dest = tmp_path / "dest"
    dest.mkdir()
    task.copy(str(src), str(dest), nodes=name, preserve=True)
    task.resume()
    assert task.max_retcode() == 0, errors(task)
    assert os.stat(dest / "old").st_mtime == BEFORE_1970
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    task.rcopy(str(dest / "old"), str(pulled), nodes=name, preserve=True)
    task.resume()
    assert task.max_retcode() == 0, errors(task)
    assert os.stat(pulled / f"old.{name}").st_mtime == BEFORE_1970


# -- Ctrl-C while a pulled directory is unpacked here ---------------------------------


@pytest.mark.parametrize("worker", ["ssh", "rpc"])
def test_ctrl_c_while_a_pulled_directory_is_unpacked_keeps_nothing(worker, sshd, tmp_path):
    """The unpack runs on the Task's thread once the node has sent everything: a Ctrl-C
    then must remove the tar and the half-unpacked tree, and the node is reported as
    interrupted (it did send its data)."""
    src = tmp_path / "many"
    for d in range(40):
        sub = src / f"d{d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f}").write_bytes(b"x")
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = subprocess.Popen(
        [*SHELL, "-R", worker, "-o", f"-F {sshd.config}", "-w", "sshtest1"]
        + ["--rcopy", str(src), "--dest", str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def unpacking() -> bool:
        try:
            return any(TEMP_MARK in n and (dest / n).is_dir() for n in os.listdir(dest))
        except OSError:
            return False

    def ready() -> None:
        deadline = time.monotonic() + 60
        while not unpacking():
            assert proc.poll() is None, "the rcopy ended before its unpack was seen"
            assert time.monotonic() < deadline, "no unpack seen"
            time.sleep(0.001)

    _, err = ctrl_c(proc, ready)
    assert proc.returncode == 130, err
    assert [n for n in os.listdir(dest) if TEMP_MARK in n or ".ecold." in n] == []
    assert b"sent no data" not in err
    assert b"sshtest1: interrupted" in err


# A Ctrl-C that lands just as a temporary is made: the terminal's SIGINT sent to the
# shell's process group by the shell itself, from inside the step that made it, right
# after the file or directory exists (as the kernel delivers a signal on the return of
# that system call). mkstemp and mkdtemp give the name only as they return, so an
# interrupt there left a temporary nobody knew about (seen under CPU load: the shell
# preempted as its mkdir returned, the Ctrl-C sent meanwhile).
CTRL_C_AFTER = """import os, signal, sys, threading
from easycluster.cli import run
from easycluster.cluster.copy import TEMP_MARK
step, dest = sys.argv.pop(1), sys.argv.pop(1)
thread_run = threading.Thread.run
def run_without_sigint(self):  # (so the kernel gives the SIGINT to the main thread,
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # at once: raised here)
    thread_run(self)
threading.Thread.run = run_without_sigint
made = getattr(os, step)
def then_ctrl_c(path, *args, **kw):
    result = made(path, *args, **kw)
    if TEMP_MARK in os.fspath(path) and os.path.dirname(os.fspath(path)) == dest:
        os.killpg(0, signal.SIGINT)
    return result
setattr(os, step, then_ctrl_c)
sys.argv[0] = "easycluster"
sys.exit(run())
"""


@pytest.mark.parametrize("step", ["open", "mkdir"])  # the pulled tar; the unpack's directory
@pytest.mark.parametrize("worker", ["ssh", "rpc"])
def test_ctrl_c_just_as_a_pull_makes_a_temporary_keeps_nothing(worker, step, sshd, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x")
    dest = tmp_path / "dest"
    dest.mkdir()
    driver = tmp_path / "ctrl_c_after.py"
    driver.write_text(CTRL_C_AFTER)
    proc = subprocess.Popen(
        [sys.executable, str(driver), step, str(dest), "shell", "-R", worker]
        + ["-o", f"-F {sshd.config}", "-w", "sshtest1", "--rcopy", str(src), "--dest", str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert os.listdir(dest) == [], err
    assert b"sshtest1: interrupted" in err


# -- a node user who is not root ----------------------------------------------------

WRAPPER = f"""import os, shlex, sys
argv = sys.argv[1:]
argv[-1] = "{NOBODY} sh -c " + shlex.quote(argv[-1])
os.execvp("ssh", ["ssh", *argv])
"""


@pytest.fixture
def as_nobody():
    """Skip unless root with ``setpriv`` here (under CI=true: fail)."""
    why = None
    if os.geteuid() != 0:
        why = "needs root (to run the node's side as nobody)"
    elif shutil.which("setpriv") is None:
        why = "needs setpriv (util-linux)"
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but this test cannot run: {why}", pytrace=False)
        pytest.skip(why)


@pytest.fixture(params=["ssh", "rpc"])
def nobody_task(request, as_nobody, sshd, tmp_path):
    """A Task whose default backend runs the node's side as nobody on ``sshtest1``."""
    task = ssh_task(sshd)
    if request.param == "ssh":
        wrapper = tmp_path / "ssh-as-nobody.py"
        wrapper.write_text(WRAPPER)
        # (kill_remote off: its watcher would run as root around nobody's command)
        backend = SshBackend(
            options=["-F", sshd.config], path=[sys.executable, str(wrapper)], kill_remote=False
        )
        task.set_default("backend", backend)
        yield task
        return
    task.set_info("rpc_connect", lambda n: Client(**sshd.client_kw(n, rpython=f"{NOBODY} python3")))
    task.set_default("backend", "rpc")
    yield task
    task.close_sessions()


@pytest.fixture
def shared_dir():
    """A directory in /tmp (which nobody may enter, unlike pytest's) that nobody owns;
    removed as root."""
    path = tempfile.mkdtemp(prefix="ec-nobody-")
    os.chown(path, NOBODY_ID, NOBODY_ID)
    yield path
    shutil.rmtree(path)


def test_a_tree_holding_a_read_only_directory_is_replaced_by_a_plain_user(
    nobody_task, shared_dir, tmp_path
):
    task = nobody_task
    src = tmp_path / "rtree"
    (src / "locked").mkdir(parents=True)
    (src / "locked" / "file").write_bytes(b"x\n")
    os.chmod(src / "locked", 0o555)
    for _ in range(3):
        task.copy(str(src), shared_dir, nodes="sshtest1")
        task.resume()
        assert task.max_retcode() == 0, errors(task)
        assert tree(shared_dir) == ["rtree/", "rtree/locked/", "rtree/locked/file"]
    assert os.stat(os.path.join(shared_dir, "rtree", "locked")).st_uid == NOBODY_ID
    # a tree its user cannot remove (root's directory inside): the new one is in place,
    # the node failed, and its message names what is left
    roots = os.path.join(shared_dir, "rtree", "roots")
    os.mkdir(roots)
    open(os.path.join(roots, "f"), "w").close()
    task.copy(str(src), shared_dir, nodes="sshtest1")
    task.resume()
    assert task.node_retcode("sshtest1") == 1
    left = [n for n in os.listdir(shared_dir) if n != "rtree"]
    assert len(left) == 1 and (".ecold." in left[0] or TEMP_MARK in left[0]), left
    said = bytes(task.node_error("sshtest1")).decode()
    assert "the old one could not be removed" in said and left[0] in said, said
    assert tree(os.path.join(shared_dir, "rtree")) == ["locked/", "locked/file"]


def test_a_destination_the_user_cannot_write_is_one_clear_line(nobody_task, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"f\n")
    closed = tempfile.mkdtemp(prefix="ec-closed-")  # root's, 0755: nobody may not write
    try:
        os.chmod(closed, 0o755)
        nobody_task.copy(str(src), closed, nodes="sshtest1")
        nobody_task.resume()
        assert nobody_task.node_retcode("sshtest1") == 1
        lines = bytes(nobody_task.node_error("sshtest1")).decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"easycluster copy: {closed}/f: cannot write"
        ), lines
        assert os.listdir(closed) == []
    finally:
        shutil.rmtree(closed)
