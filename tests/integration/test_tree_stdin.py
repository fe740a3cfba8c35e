"""stdin through the tree: ``Task.shell(..., stdin=...)`` with a topology and
``easycluster shell --topology`` with piped stdin, over the ``netns`` network (the
admin reaches gateways only; tests/netns.py), one and two levels of gateways."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from easycluster.cluster.task import Task

TOPOLOGY = "admin: gw[1-3]\ngw1: node[1-2]\ngw[2-3]: node[3-4]\n"
DEEP = "admin: gw1\ngw1: gw2\ngw2: node[3-4]\n"


def _task(netns, topology):
    task = Task()
    task.set_info("ssh_options", f"-F {netns.config}")
    task.load_topology(topology)
    return task


def test_bytes_reach_every_node_through_its_gateway(netns):
    task = _task(netns, TOPOLOGY)
    worker = task.shell('cat; echo "$EC_NODE"', nodes="node[1-4]", stdin=b"hello\nworld\n")
    task.resume(timeout=120)
    assert worker.backend.name == "tree"
    assert {n: task.node_buffer(n) for n in ("node1", "node2", "node3", "node4")} == {
        f"node{i}": f"hello\nworld\nnode{i}".encode() for i in range(1, 5)
    }
    assert task.max_retcode() == 0


def test_a_stream_from_a_file_crosses_two_levels_whole(netns, tmp_path):
    data = os.urandom(3 << 20)  # (many chunks, more than a pipe holds)
    path = tmp_path / "data"
    path.write_bytes(data)
    task = _task(netns, DEEP)
    with open(path, "rb") as f:
        task.shell("sha256sum", nodes="node[3-4]", stdin=f)
        task.resume(timeout=120)
    digest = hashlib.sha256(data).hexdigest().encode()
    for node in ("node3", "node4"):
        assert task.node_buffer(node).split()[0] == digest, task.node_error(node)


def test_nodes_that_do_not_read_stdin_end_anyway(netns, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1 << 20))
    task = _task(netns, TOPOLOGY)
    with open(path, "rb") as f:
        task.shell("echo done", nodes="node[1-4]", stdin=f.fileno())
        task.resume(timeout=120)
    assert [(out, sorted(keys)) for out, keys in task.iter_buffers()] == [
        (b"done", ["node1", "node2", "node3", "node4"])
    ]


def test_shell_cli_with_topology_sends_piped_stdin(netns, tmp_path):
    topo = tmp_path / "topology.conf"
    topo.write_text(TOPOLOGY)
    piped = tmp_path / "stdin"
    piped.write_bytes(b"from the admin\n")
    argv = [sys.executable, "-m", "easycluster", "shell", "--topology", str(topo),
            "-o", f"-F {netns.config}", "-w", "node[1-4]", "-b", "cat"]  # fmt: skip
    with open(piped, "rb") as stdin:
        done = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=120,
                              env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"node[1-4]" in done.stdout and b"from the admin" in done.stdout, done.stdout
