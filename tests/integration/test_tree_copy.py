"""Copies through the tree (``Task.copy`` with a topology, ``easycluster shell --topology
-c``) over the ``netns`` network (tests/netns.py): the admin reaches the gateways only,
so a copy that arrives went through them (a direct connection fails, checked below).

The namespaces share one filesystem, so each node gets a private tmpfs at the same path
(``PrivateDirs``): mounted inside the mount namespace of the node's sshd (``ip netns
exec`` gives each its own, not shared with the host), read from here through
``/proc/PID/root``. What a node holds there, it received itself.

A gateway killed mid-copy is made deterministic by holding the receivers: in the
nodes' mount namespaces ``cat`` (the receiver's writer) is a wrapper that notes its
start and waits for a ``go`` file before reading a byte.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from typing import Dict, List

import pytest

from easycluster.cluster.copy import TEMP_MARK
from easycluster.cluster.events import EventHandler
from easycluster.cluster.task import Task

TOPOLOGY = "admin: gw[1-3]\ngw1: node[1-2]\ngw[2-3]: node[3-4]\n"
DEEP = "admin: gw1\ngw1: gw2\ngw2: node[3-4]\n"
NODES = ["node1", "node2", "node3", "node4"]


def _ns(net, node: str, *argv: str) -> None:
    """Run ``argv`` in the mount namespace of ``node``'s sshd (its sessions' one)."""
    pid = net.nodes[node].sshd.pid
    subprocess.run(["nsenter", "-t", str(pid), "-m", *argv], check=True, timeout=30,
                   capture_output=True)  # fmt: skip


class PrivateDirs:
    """A tmpfs per node at the same path ``path``; ``seen(node)`` is that node's view."""

    def __init__(self, net, path: str, nodes: List[str]) -> None:
        self.net, self.path, self.nodes = net, path, []
        os.makedirs(path, exist_ok=True)
        for node in nodes:
            _ns(net, node, "mount", "-t", "tmpfs", "-o", "size=200m", "ectest", path)
            self.nodes.append(node)

    def seen(self, node: str, *parts: str) -> str:
        return os.path.join(f"/proc/{self.net.nodes[node].sshd.pid}/root{self.path}", *parts)

    def close(self) -> None:
        for node in self.nodes:
            _ns(self.net, node, "umount", "-l", self.path)


@pytest.fixture
def private(netns, tmp_path):
    dirs = PrivateDirs(netns, str(tmp_path / "dest"), NODES)
    try:
        yield dirs
    finally:
        dirs.close()


class Recorder(EventHandler):
    def __init__(self) -> None:
        self.hups: Dict[str, int] = {}
        self.closed = 0

    def ev_hup(self, worker, node, rc):
        self.hups[node] = rc

    def ev_close(self, worker, timedout):
        self.closed += 1


def _task(net, topology=TOPOLOGY) -> Task:
    task = Task()
    task.set_info("ssh_options", f"-F {net.config}")
    task.set_info("connect_timeout", 5)
    task.load_topology(topology)
    return task


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _temporaries(root: str) -> List[str]:
    return [n for n in os.listdir(root) if TEMP_MARK in n or ".ecold." in n]


def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- through the gateways only ------------------------------------------------------


def test_a_file_reaches_every_node_through_its_gateway_whole(netns, private, tmp_path):
    direct = subprocess.run(netns.ssh_argv("node1", "true"), capture_output=True, timeout=60,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    assert direct.returncode == 255  # the admin has no way to the nodes but the gateways
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom((5 << 20) + 12345))  # (several chunks, an odd tail)
    task = _task(netns)
    rec = Recorder()
    worker = task.copy(str(source), private.path, nodes="node[1-4]", handler=rec)
    task.resume(timeout=120)
    assert worker.backend.name == "tree"
    assert rec.hups == {n: 0 for n in NODES} and rec.closed == 1
    assert task.max_retcode() == 0, [task.node_error(n) for n in NODES]
    want = _sha(str(source))
    for node in NODES:
        assert _sha(private.seen(node, "data.bin")) == want, node
        assert _temporaries(private.seen(node)) == []
    assert not os.path.exists(os.path.join(private.path, "data.bin"))  # (each node's own)


def test_a_directory_crosses_two_levels_with_modes_and_times(netns, private, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "big").write_bytes(os.urandom(3 << 20))
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "run.sh", 0o750)
    os.utime(src / "run.sh", (1_000_000_000, 1_000_000_000))
    task = _task(netns, DEEP)
    task.copy(str(src), private.path, nodes="node[3-4]", preserve=True)
    task.resume(timeout=120)
    assert task.max_retcode() == 0, [task.node_error(n) for n in ("node3", "node4")]
    for node in ("node3", "node4"):
        got = private.seen(node, "tree")
        assert _sha(os.path.join(got, "sub", "big")) == _sha(str(src / "sub" / "big"))
        st = os.stat(os.path.join(got, "run.sh"))
        assert stat.S_IMODE(st.st_mode) == 0o750 and int(st.st_mtime) == 1_000_000_000


def test_failures_are_per_node_and_an_unreachable_node_is_named(netns, private, tmp_path):
    source = tmp_path / "small"
    source.write_bytes(b"x" * 1000)
    missing = os.path.join(private.path, "no", "such", "dir", "")
    task = _task(netns)
    task.copy(str(source), missing, nodes="node[1-2]")
    task.resume(timeout=120)
    for node in ("node1", "node2"):  # the receiver's own failure, as flat
        assert task.node_retcode(node) == 1 and task.node_status(node) == "hup"
        assert b"easycluster copy:" in task.node_error(node) and b"no such" in task.node_error(node)
    netns.link_down("node4")
    try:
        task = _task(netns)
        task.copy(str(source), private.path, nodes="node[3-4]")
        task.resume(timeout=120)
    finally:
        netns.link_up("node4")
    assert task.node_retcode("node3") == 0
    assert task.node_status("node4") == "unreachable" and task.node_retcode("node4") == 255
    assert task.node_error("node4"), "the unreachable node says why"
    assert [sorted(keys) for status, keys in task.iter_status() if status == "unreachable"] == [
        ["node4"]
    ]


# -- a gateway killed mid-copy ----------------------------------------------------------


def _hold_cat(net, tmp_path, nodes: List[str], first: int = 0) -> str:
    """Make ``cat`` wait for ``DIR/go`` on ``nodes`` (noting each start in ``DIR/NODE``),
    after copying ``first`` 64 KiB blocks of its stdin (a regular file: ``dd`` reads no
    more than it writes); returns DIR. Undone by ``_release_cat``."""
    hold = tmp_path / "hold"
    hold.mkdir()
    real = shutil.which("cat")
    assert real is not None
    real = os.path.realpath(real)
    shutil.copy2(real, hold / "realcat")
    wrapper = hold / "cat"
    wrapper.write_text(
        "#!/bin/sh\n"
        + (f"dd bs=65536 count={first} 2>/dev/null\n" if first else "")
        + f'echo run >> {hold}/"$EC_NODE"\n'
        f"while [ ! -e {hold}/go ]; do sleep 0.05; done\n"
        f'exec {hold}/realcat "$@"\n'
    )
    os.chmod(wrapper, 0o755)
    for node in nodes:
        _ns(net, node, "mount", "--bind", str(wrapper), real)
    return str(hold)


def _release_cat(net, hold: str, nodes: List[str]) -> None:
    open(os.path.join(hold, "go"), "a").close()
    real = os.path.realpath(shutil.which("cat") or "/bin/cat")
    for node in nodes:
        subprocess.run(["nsenter", "-t", str(net.nodes[node].sshd.pid), "-m", "umount", real],
                       capture_output=True, timeout=30)  # fmt: skip


def _runs(hold: str, node: str) -> int:
    try:
        with open(os.path.join(hold, node)) as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


def test_a_gateway_killed_mid_copy_fails_over_or_loses_its_nodes(netns, private, tmp_path):
    source = tmp_path / "big"
    source.write_bytes(os.urandom(8 << 20))
    hold = _hold_cat(netns, tmp_path, NODES)
    box: Dict[str, Task] = {}

    def run() -> None:
        task = _task(netns)
        task.copy(str(source), private.path, nodes="node[1-4]")
        task.resume(timeout=180)
        box["task"] = task

    runner = threading.Thread(target=run)
    runner.start()
    try:
        _until(lambda: all(_runs(hold, n) for n in NODES), "the receivers did not start")
        netns.kill_gateway("gw1")  # node[1-2]: no other gateway
        netns.kill_gateway("gw2")  # whichever of node[3-4] it served: gw3 takes it over
        _until(lambda: _runs(hold, "node3") + _runs(hold, "node4") == 3, "no rerun on gw3")
        open(os.path.join(hold, "go"), "w").close()
        runner.join(150)
        assert not runner.is_alive(), "the copy did not end after its gateways died"
    finally:
        _release_cat(netns, hold, NODES)
        runner.join(60)
        netns.revive_gateway("gw1")
        netns.revive_gateway("gw2")
    task = box["task"]
    want = _sha(str(source))
    for node in ("node3", "node4"):
        assert task.node_retcode(node) == 0, task.node_error(node)
        assert _sha(private.seen(node, "big")) == want
    for node in ("node1", "node2"):
        assert task.node_status(node) == "unreachable" and task.node_retcode(node) == 255
        assert b"gateway gw1 lost" in task.node_error(node), task.node_error(node)
        assert not os.path.exists(private.seen(node, "big"))  # never a partial target
    for node in NODES:  # the cut receivers clean up after themselves
        _until(lambda n=node: _temporaries(private.seen(n)) == [], f"{node}: temporaries left")


# -- the shell ------------------------------------------------------------------------


def test_shell_cli_copy_and_rcopy_with_topology_go_through_the_gateways(netns, private, tmp_path):
    topo = tmp_path / "topology.conf"
    topo.write_text(TOPOLOGY)
    source = tmp_path / "conf.txt"
    source.write_bytes(b"setting = 1\n" * 1000)
    argv = [sys.executable, "-m", "easycluster", "shell", "--topology", str(topo),
            "-o", f"-F {netns.config}", "-w", "node[1-4]", "-c", str(source),
            "--dest", private.path]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    for node in NODES:
        with open(private.seen(node, "conf.txt"), "rb") as f:
            assert f.read() == source.read_bytes()
    into = tmp_path / "back"
    into.mkdir()
    argv[-4:] = ["--rcopy", os.path.join(private.path, "conf.txt"), "--dest", str(into)]
    done = subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(into)) == [f"conf.txt.{n}" for n in NODES]
    assert all((into / f"conf.txt.{n}").read_bytes() == source.read_bytes() for n in NODES)


# -- rcopy ----------------------------------------------------------------------------


def _node_files(private: PrivateDirs, size: int) -> Dict[str, bytes]:
    """A different file ``pulled.bin`` of ``size`` bytes in each node's private dir."""
    data = {}
    for node in NODES:
        data[node] = node.encode() + os.urandom(size)
        with open(private.seen(node, "pulled.bin"), "wb") as f:
            f.write(data[node])
    return data


def test_rcopy_pulls_each_nodes_own_file_and_directory(netns, private, tmp_path):
    data = _node_files(private, (2 << 20) + 7)
    for node in NODES:
        os.makedirs(private.seen(node, "d", "sub"))
        with open(private.seen(node, "d", "sub", "who"), "w") as f:
            f.write(node)
    os.unlink(private.seen("node2", "pulled.bin"))  # (node2 has none: rc 1, nothing kept)
    into = tmp_path / "into"
    into.mkdir()
    task = _task(netns)
    rec = Recorder()
    worker = task.rcopy(os.path.join(private.path, "pulled.bin"), str(into),
                        nodes="node[1-4]", handler=rec)  # fmt: skip
    task.resume(timeout=120)
    assert worker.backend.name == "tree"
    assert rec.hups == {"node1": 0, "node2": 1, "node3": 0, "node4": 0}
    assert b"no such file" in task.node_error("node2")
    assert sorted(os.listdir(into)) == ["pulled.bin.node1", "pulled.bin.node3", "pulled.bin.node4"]
    for node in ("node1", "node3", "node4"):
        assert (into / f"pulled.bin.{node}").read_bytes() == data[node], node
    task = _task(netns, DEEP)
    task.rcopy(os.path.join(private.path, "d"), str(into), nodes="node[3-4]")
    task.resume(timeout=120)
    assert task.max_retcode() == 0, task.node_error("node3")
    for node in ("node3", "node4"):
        assert (into / f"d.{node}" / "sub" / "who").read_text() == node


def test_a_gateway_killed_mid_rcopy_resends_or_loses_and_keeps_nothing(netns, private, tmp_path):
    data = _node_files(private, 3 << 20)
    into = tmp_path / "into"
    into.mkdir()
    hold = _hold_cat(netns, tmp_path, NODES, first=16)  # (1 MiB of each, then wait)
    box: Dict[str, Task] = {}

    def run() -> None:
        task = _task(netns)
        task.rcopy(os.path.join(private.path, "pulled.bin"), str(into), nodes="node[1-4]")
        task.resume(timeout=180)
        box["task"] = task

    runner = threading.Thread(target=run)
    runner.start()
    try:  # (each node's first MiB reached the admin: its temporary exists there)
        _until(lambda: len(_temporaries(str(into))) == 4, "the pulls did not start")
        netns.kill_gateway("gw1")  # node[1-2]: no other gateway
        netns.kill_gateway("gw2")  # whichever of node[3-4] it served: gw3 takes it over
        _until(lambda: _runs(hold, "node3") + _runs(hold, "node4") == 3, "no rerun on gw3")
        open(os.path.join(hold, "go"), "w").close()
        runner.join(150)
        assert not runner.is_alive(), "the rcopy did not end after its gateways died"
    finally:
        _release_cat(netns, hold, NODES)
        runner.join(60)
        netns.revive_gateway("gw1")
        netns.revive_gateway("gw2")
    task = box["task"]
    for node in ("node3", "node4"):  # (the rerouted one's first try was dropped)
        assert task.node_retcode(node) == 0, task.node_error(node)
        assert (into / f"pulled.bin.{node}").read_bytes() == data[node], node
    for node in ("node1", "node2"):
        assert task.node_status(node) == "unreachable" and task.node_retcode(node) == 255
        assert b"gateway gw1 lost" in task.node_error(node)
    assert sorted(os.listdir(into)) == ["pulled.bin.node3", "pulled.bin.node4"]
