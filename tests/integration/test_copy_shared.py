"""Many nodes pushing one tree at once into a directory they share (an NFS home:
``copy -w node[1-64] mydir --dest ~/``), over every backend that replaces a tree on the
node: the ``sh`` receiver through local exec and over the real loopback sshd, and our
own server over rpc (local servers working in the shared directory).

Replacing a directory cannot be one atomic rename (a rename over a non-empty directory
fails), so each node moves the previous tree aside and renames its own in; with several
nodes doing it at once, one finds another's fresh tree in its way. Each round here
pushes the same tree from every node at once and expects: every node succeeded, the
destination holds exactly one whole copy of the tree, and nothing else is left beside
it (no ``.ecold``, no temporary). Ten rounds each, so that the race, which only some
rounds meet, is met.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterator, List

import pytest
from helpers import tree

from easycluster.cluster import ExecBackend, Task

pytestmark = [pytest.mark.usefixtures("no_leftover_children"), pytest.mark.timeout(300)]

ROUNDS = 10
NODES = 6
EXPECTED = ["src/", "src/a", "src/deep/", "src/deep/er/", "src/deep/er/c", "src/sub/", "src/sub/b"]


@pytest.fixture
def source(tmp_path) -> str:
    """A small tree (small, so the nodes finish unpacking together and meet)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "deep" / "er").mkdir(parents=True)
    (src / "a").write_bytes(b"A\n")
    (src / "sub" / "b").write_bytes(b"B" * 10_000)
    (src / "deep" / "er" / "c").write_bytes(b"C\n")
    return str(src)


@pytest.fixture
def shared(tmp_path) -> str:
    path = tmp_path / "shared"
    path.mkdir()
    return str(path)


def push_rounds(
    task: Task, source: str, dest: str, nodes: List[str], shared: str, backend=None
) -> None:
    """Push ``source`` to ``dest`` from every node at once, ``ROUNDS`` times; after each
    round check every node's success and the shared directory's whole content."""
    for n in range(ROUNDS):
        task.copy(source, dest, nodes=",".join(nodes), backend=backend)
        task.resume()
        errors = {k: bytes(task.node_error(k)) for k in nodes if task.node_retcode(k) != 0}
        assert not errors, f"round {n}: {errors}"
        assert dict(task.iter_retcodes()) == {0: nodes}, f"round {n}"
        assert tree(shared) == EXPECTED, f"round {n}"
        got = os.path.join(shared, "src")
        with open(os.path.join(got, "a"), "rb") as f:
            assert f.read() == b"A\n"
        with open(os.path.join(got, "sub", "b"), "rb") as f:
            assert f.read() == b"B" * 10_000
        with open(os.path.join(got, "deep", "er", "c"), "rb") as f:
            assert f.read() == b"C\n"


# A ``mv`` without ``-T`` (BSD's), made of GNU's: this host has no other, and the
# receiver's fallback for one (moved into a tree that appeared meanwhile: taken back
# out) must be proven too. Every other argument goes to the real ``mv``.
NO_T_MV = """#!/bin/sh
for a in "$@"; do
  [ "$a" = -- ] && break
  [ "$a" = -T ] && { echo "mv: illegal option -- T" >&2; exit 64; }
done
exec REAL_MV "$@"
"""


@pytest.mark.parametrize("mv", ["mv -T", "mv without -T"])
def test_exec_nodes_push_one_tree_into_a_shared_directory(mv, source, shared, tmp_path):
    nodes = [f"c{i}" for i in range(1, NODES + 1)]
    path = ""
    if mv == "mv without -T":
        real = shutil.which("mv")
        assert real is not None
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "mv").write_text(NO_T_MV.replace("REAL_MV", real))
        (bin_dir / "mv").chmod(0o755)
        path = f"PATH={bin_dir}:$PATH "
    backend = ExecBackend(template=f"cd {shared} && {path}sh -c %c")
    push_rounds(Task(), source, ".", nodes, shared, backend)


def test_ssh_nodes_push_one_tree_into_a_shared_directory(sshd, source, shared):
    nodes = [f"sshtest{i}" for i in range(NODES)]
    task = Task()
    task.set_info("ssh_options", f"-F {sshd.config}")
    task.set_info("connect_timeout", 5)
    push_rounds(task, source, shared, nodes, shared)


@pytest.fixture
def rpc_task(shared) -> Iterator[Task]:
    """A Task whose rpc sessions are local servers all working in ``shared``; their
    sessions are closed however the test ends. (Named as ``no_leftover_children``
    expects: spawn_local's zygote is no leftover.)"""
    from easycluster.server import spawn_local

    task = Task()

    def connect(node: str):
        client = spawn_local()
        try:
            client.call("os.chdir", shared)
        except BaseException:
            client.close()
            raise
        return client

    task.set_info("rpc_connect", connect)
    task.set_default("backend", "rpc")
    try:
        yield task
    finally:
        task.close_sessions()


def test_rpc_nodes_push_one_tree_into_a_shared_directory(rpc_task, source, shared):
    nodes = [f"r{i}" for i in range(1, NODES + 1)]
    push_rounds(rpc_task, source, ".", nodes, shared)
