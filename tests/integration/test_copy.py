"""``Task.copy`` and ``Task.rcopy`` with real processes: the receiver and sender scripts
run by ``sh`` through a local exec template (``cd ROOT/%h && sh -c %c``: one directory
per node), and over plain ssh against the real loopback sshd.

Killed copies are real: a receiver stopped with SIGSTOP and killed at its timeout, a
stream cut short, a run aborted in the middle of a 50 MB push over ssh, a sender
stopped midway. After each, neither the destination name nor a temporary exists, and
no child process of ours is left (``no_leftover_children``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import List

import pytest
from helpers import tree, wait_until
from sshd import free_port

from easycluster.cluster import EventHandler, ExecBackend, SshBackend, Task
from easycluster.cluster.copy import TEMP_MARK

pytestmark = pytest.mark.usefixtures("no_leftover_children")

MB50 = 50_000_000
HAS_SETSID = shutil.which("setsid") is not None


def temporaries(root) -> List[str]:
    return [p for p in tree(root) if TEMP_MARK in p or ".ecold." in p]


def sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture
def nodes(tmp_path):
    """A root with one directory per node n1..n3, and the exec backend that runs each
    node's command in its directory."""
    root = tmp_path / "nodes"
    for n in ("n1", "n2", "n3"):
        (root / n).mkdir(parents=True)
    return root


def in_dirs(root, before: str = "", after: str = "") -> ExecBackend:
    return ExecBackend(template=f"cd {root}/%h && {before} sh -c %c {after}")


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"A\n")
    (src / "sub" / "b").write_bytes(b"B" * 100_000)
    os.chmod(src / "sub", 0o750)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(1_000_000))
    os.chmod(big, 0o750)
    return tmp_path


# -- push, local exec ----------------------------------------------------------------


def test_push_a_file_to_every_node(nodes, source):
    task = Task()
    w = task.copy(str(source / "big"), ".", nodes="n[1-3]", backend=in_dirs(nodes))
    task.resume()
    assert list(task.iter_retcodes()) == [(0, ["n1", "n2", "n3"])] and w.keys == ["n1", "n2", "n3"]
    for n in ("n1", "n2", "n3"):
        assert tree(nodes / n) == ["big"]
        assert sha(nodes / n / "big") == sha(source / "big")
        mask = os.umask(0)
        os.umask(mask)
        assert os.stat(nodes / n / "big").st_mode & 0o7777 == 0o750 & ~mask


def test_where_a_pushed_file_goes(nodes, source):
    (nodes / "n1" / "into").mkdir()
    (nodes / "n1" / "blocked" / "big").mkdir(parents=True)
    task = Task()
    b = in_dirs(nodes)
    task.copy(str(source / "big"), "into", nodes="n1", backend=b)  # inside a directory
    task.copy(str(source / "big"), "renamed", nodes="n1", backend=b)  # under a new name
    task.copy(str(source / "big"), "no/such/dir/x", nodes="n1", backend=b)
    task.copy(str(source / "big"), "blocked", nodes="n1", backend=b)  # blocked/big is a dir
    task.copy(str(source / "big"), "p%hq", nodes="n1", backend=b)  # no %h substitution
    task.copy(str(source / "big"), "newdir/", nodes="n1", backend=b)  # a directory, missing
    task.resume()
    assert [task.results.slot(k).rc for k in task.results.slots] == [0, 0, 1, 1, 0, 1]
    assert b"newdir/: no such directory" in task.node_error("n1#6")
    assert task.node_retcode("n1") == 1  # a node's code over its runs: the largest
    assert b"no/such/dir/: no such directory" in task.node_error("n1#3")
    assert b"blocked/big: is a directory" in task.node_error("n1#4")
    want = ["blocked/", "blocked/big/", "into/", "into/big", "p%hq", "renamed"]
    assert tree(nodes / "n1") == want


def test_push_a_directory_and_replace_it_as_a_whole(nodes, source):
    task = Task()
    task.copy(str(source / "src"), ".", nodes="n[1-2]", backend=in_dirs(nodes))
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    assert tree(nodes / "n1") == ["src/", "src/a", "src/sub/", "src/sub/b"]
    assert (nodes / "n2" / "src" / "sub" / "b").read_bytes() == b"B" * 100_000
    os.unlink(source / "src" / "a")
    (source / "src" / "c").write_bytes(b"C")
    task.copy(str(source / "src"), ".", nodes="n1", backend=in_dirs(nodes))
    (nodes / "n2" / "file").write_bytes(b"")
    task.copy(str(source / "src"), "file", nodes="n2", backend=in_dirs(nodes))
    task.resume()
    assert tree(nodes / "n1") == ["src/", "src/c", "src/sub/", "src/sub/b"]  # a is gone
    assert task.node_retcode("n2") == 1 and b"not a directory" in task.node_error("n2")
    assert (nodes / "n2" / "file").read_bytes() == b""


def test_preserve_keeps_mode_and_mtime(nodes, source):
    os.utime(source / "big", (1_000_000_000, 1_000_000_000))
    os.utime(source / "src" / "sub" / "b", (1_000_000_000, 1_000_000_000))
    os.chmod(source / "src" / "sub" / "b", 0o604)
    task = Task()
    b = in_dirs(nodes)
    task.copy(str(source / "big"), ".", nodes="n1", backend=b, preserve=True)
    task.copy(str(source / "src"), ".", nodes="n1", backend=b, preserve=True)
    task.copy(str(source / "big"), ".", nodes="n2", backend=b)
    task.copy(str(source / "src"), ".", nodes="n2", backend=b)
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    for path, mode in (("big", 0o750), ("src/sub/b", 0o604)):
        kept, fresh = os.stat(nodes / "n1" / path), os.stat(nodes / "n2" / path)
        assert kept.st_mtime == 1_000_000_000 and fresh.st_mtime > 1_000_000_000
        assert kept.st_mode & 0o7777 == mode
    assert os.stat(nodes / "n1" / "src" / "sub").st_mode & 0o7777 == 0o750


@pytest.mark.skipif(not HAS_SETSID, reason="the guard outlives a SIGKILL only with setsid")
def test_a_stopped_receiver_killed_at_its_timeout_leaves_nothing(nodes, source):
    # the receiver stops (its whole process group) once its temporary has some bytes
    wait = "while ! [ -s .big.ectmp.* ]; do sleep 0.01; done; kill -STOP 0"
    b = in_dirs(nodes, before=f"{{ head -c 300000; {wait}; }} |")
    task = Task()
    task.copy(str(source / "big"), "big", nodes="n[1-2]", backend=b, timeout=2)
    task.resume()
    assert sorted(task.iter_keys_timeout()) == ["n1", "n2"]
    # the guard (outside the killed group) removes the temporaries
    assert wait_until(lambda: tree(nodes) == ["n1/", "n2/", "n3/"]), tree(nodes)


def test_a_stream_cut_short_fails_and_leaves_nothing(nodes, source):
    # what a lost connection looks like to the receiver: its stdin ends early
    task = Task()
    task.copy(str(source / "big"), "big", nodes="n1", backend=in_dirs(nodes, "head -c 1000 |"))
    task.copy(str(source / "src"), "tree", nodes="n2", backend=in_dirs(nodes, "head -c 1000 |"))
    task.resume()
    assert task.node_retcode("n1") == 1 and task.node_retcode("n2") == 1
    assert b"incomplete, 1000 of 1000000 bytes came" in task.node_error("n1")
    assert b"tree: incomplete, 1000 of" in task.node_error("n2")
    assert tree(nodes) == ["n1/", "n2/", "n3/"]


def test_a_missing_source_raises_before_anything_starts(nodes, source):
    task = Task()
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        task.copy(str(source / "missing"), ".", nodes="n1", backend=in_dirs(nodes))
    with pytest.raises(NotADirectoryError, match="must be an existing directory"):
        task.rcopy("big", str(source / "missing"), nodes="n1", backend=in_dirs(nodes))
    with pytest.raises(ValueError, match="need nodes"):
        task.copy(str(source / "big"), ".")
    assert task.workers == [] and not task.results.slots
    task.resume()  # (nothing to run)


# -- pull, local exec ----------------------------------------------------------------


def test_pull_files_and_directories_one_name_per_slot(nodes, source, tmp_path):
    dest = tmp_path / "pulled"
    dest.mkdir()
    task = Task()
    b = in_dirs(nodes)
    task.copy(str(source / "big"), ".", nodes="n[1-2]", backend=b)
    task.copy(str(source / "src"), ".", nodes="n[1-2]", backend=b)
    task.resume()
    w = task.rcopy("big", str(dest), nodes="n[1-2],n1", backend=b)
    task.rcopy("src/", str(dest), nodes="n1", backend=b)
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    assert w.keys == ["n1", "n2", "n1#2"] and task.node_buffer("n1") == b""
    assert tree(dest) == [
        "big.n1",
        "big.n1~2",
        "big.n2",
        "src.n1/",
        "src.n1/a",
        "src.n1/sub/",
        "src.n1/sub/b",
    ]
    assert {sha(dest / f) for f in ("big.n1", "big.n1~2", "big.n2")} == {sha(source / "big")}
    assert (dest / "src.n1" / "sub" / "b").read_bytes() == b"B" * 100_000


def test_a_failed_pull_keeps_nothing(nodes, tmp_path):
    dest = tmp_path / "pulled"
    dest.mkdir()
    (nodes / "n2" / "f").write_bytes(b"x" * 1_000_000)
    task = Task()
    task.rcopy("missing", str(dest), nodes="n1", backend=in_dirs(nodes))
    # n2 sends part of its file, then its group stops; its timeout kills it
    cut = in_dirs(nodes, after="| { head -c 100000; kill -STOP 0; }")
    task.rcopy("f", str(dest), nodes="n2", backend=cut, timeout=2)
    task.resume()
    assert task.node_retcode("n1") == 1 and task.node_status("n2") == "timeout"
    assert b"easycluster rcopy: missing: no such file or directory" in task.node_error("n1")
    assert tree(dest) == []


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)"
)
def test_nodes_sharing_a_directory_and_their_pids_do_not_share_temporaries(source, tmp_path):
    # containers on one volume, each in its own pid namespace: every node's receiver is
    # pid 1 there, so a temporary named by the pid alone was written by all at once
    shared = tmp_path / "shared"
    shared.mkdir()
    task = Task()
    backend = ExecBackend(template=f"cd {shared} && unshare --pid --fork sh -c %c")
    # (a file: its rename into place is atomic, so all may write it at once; one tree
    # pushed by all at once races on replacing the last one's, a rename over a non-empty
    # directory: not what this test is about)
    task.copy(str(source / "big"), ".", nodes="c[1-6]", backend=backend)
    task.resume()
    assert dict(task.iter_retcodes()) == {0: [f"c{i}" for i in range(1, 7)]}
    assert sha(shared / "big") == sha(source / "big") and temporaries(shared) == []


@pytest.mark.parametrize("backend", ["exec", "rpc"])
def test_a_pulled_symlink_has_its_targets_mode_and_a_fifo_is_refused(
    backend, nodes, tmp_path, rpc_task
):
    secret = nodes / "n1" / "secret"
    secret.write_bytes(b"key\n")
    os.chmod(secret, 0o600)
    os.symlink("secret", nodes / "n1" / "link")
    os.mkfifo(nodes / "n1" / "fifo")
    dest = tmp_path / "pulled"
    dest.mkdir()
    if backend == "rpc":
        task, b = rpc_task, None
    else:
        task, b = Task(), in_dirs(nodes)
    task.rcopy("link", str(dest), nodes="n1", backend=b, preserve=True)
    task.rcopy("fifo", str(dest), nodes="n1", backend=b, timeout=10)
    task.resume()
    # (ssh and exec read the link's own mode, 0777, before: a 0600 secret arrived 0777)
    assert (dest / "link.n1").read_bytes() == b"key\n"
    assert os.stat(dest / "link.n1").st_mode & 0o777 == 0o600
    assert task.node_status("n1#2") == "hup" and task.node_retcode("n1#2") == 1
    assert b"not a regular file or directory" in task.node_error("n1#2")
    assert tree(dest) == ["link.n1"]


def test_a_pull_that_cannot_be_written_here_says_why_to_the_handler(nodes, tmp_path):
    dest = tmp_path / "pulled"
    (dest / "f.n1" / "in-the-way").mkdir(parents=True)  # a directory where the copy goes
    (nodes / "n1" / "f").write_bytes(b"data")
    said = []

    class Record(EventHandler):
        def ev_read(self, worker, node, sname, msg):
            said.append((node, sname, msg))

    task = Task()
    task.rcopy("f", str(dest), nodes="n1", backend=in_dirs(nodes), handler=Record())
    task.resume()
    assert task.node_retcode("n1") == 1
    assert [(n, s) for n, s, _ in said] == [("n1", "stderr")]
    assert said[0][2].startswith(b"easycluster rcopy: n1: ") and said[0][2] in task.node_error("n1")
    assert tree(dest) == ["f.n1/", "f.n1/in-the-way/"]  # nothing replaced, no temporary


def test_events_of_a_copy(nodes, source):
    seen = []

    class Record(EventHandler):
        def ev_pickup(self, worker, node):
            seen.append(("pickup", node))

        def ev_written(self, worker, node, sname, size):
            if ("written", node) not in seen:
                seen.append(("written", node))

        def ev_hup(self, worker, node, rc):
            seen.append(("hup", node, rc, os.path.exists(nodes / node / "big")))

        def ev_close(self, worker, timedout):
            seen.append(("close", timedout))

    task = Task()
    task.copy(str(source / "big"), ".", nodes="n1", handler=Record(), backend=in_dirs(nodes))
    task.resume()
    assert seen == [("pickup", "n1"), ("written", "n1"), ("hup", "n1", 0, True), ("close", False)]


# -- over ssh --------------------------------------------------------------------------


def ssh_task(sshd) -> Task:
    t = Task()
    t.set_info("ssh_options", f"-F {sshd.config}")
    t.set_info("connect_timeout", 5)
    return t


def test_ssh_push_and_pull(sshd, source, tmp_path):
    dest = tmp_path / "remote"
    dest.mkdir()
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    task = ssh_task(sshd)
    task.copy(str(source / "big"), str(dest), nodes="sshtest[0-3]")
    # (one node for the directory: every "node" is this host, and two replacing one
    # directory at once race each other's rename, as two hosts never do)
    task.copy(str(source / "src"), str(dest), nodes="sshtest0", preserve=True)
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    assert tree(dest) == ["big", "src/", "src/a", "src/sub/", "src/sub/b"]
    task.rcopy(str(dest / "big"), str(pulled), nodes="sshtest[0-1],sshtest0")
    task.rcopy(str(dest / "src"), str(pulled), nodes="sshtest2")
    task.rcopy(str(dest / "missing"), str(pulled), nodes="sshtest3")
    task.resume()
    assert [task.node_retcode(k) for k in task.results.slots] == [0, 0, 0, 0, 1]
    assert b"missing: no such file or directory" in task.node_error("sshtest3")
    assert tree(pulled) == [
        "big.sshtest0",
        "big.sshtest0~2",
        "big.sshtest1",
        "src.sshtest2/",
        "src.sshtest2/a",
        "src.sshtest2/sub/",
        "src.sshtest2/sub/b",
    ]
    assert sha(pulled / "big.sshtest0~2") == sha(source / "big")


def test_ssh_50mb_push_and_pull_keep_every_byte(sshd, tmp_path):
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(MB50 // 50))
    task = ssh_task(sshd)
    for i in range(8):  # one destination per node (they all are this host)
        (tmp_path / f"n{i}").mkdir()
        task.copy(str(src), str(tmp_path / f"n{i}"), nodes=f"sshtest{i}")
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    want = sha(src)
    assert all(sha(tmp_path / f"n{i}" / "big") == want for i in range(8))
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    task.rcopy(str(src), str(pulled), nodes="sshtest[0-7]")
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    assert sorted(os.listdir(pulled)) == [f"big.sshtest{i}" for i in range(8)]
    assert all(sha(pulled / f"big.sshtest{i}") == want for i in range(8))


def test_ssh_push_aborted_midway_leaves_nothing(sshd, tmp_path):
    src = tmp_path / "big"
    with open(src, "wb") as f:
        f.write(os.urandom(MB50 // 2))
    dest = tmp_path / "remote"
    dest.mkdir()

    class AbortMidway(EventHandler):
        written = 0

        def ev_written(self, worker, node, sname, size):
            self.written += size
            if self.written > 5_000_000 and temporaries(dest):
                worker.abort()

    task = ssh_task(sshd)
    task.copy(str(src), str(dest), nodes="sshtest[0-1]", handler=AbortMidway())
    task.resume()
    assert dict(task.iter_status()) == {"aborted": ["sshtest0", "sshtest1"]}
    # the receivers see their stdin end short, fail and remove their temporaries
    assert wait_until(lambda: tree(dest) == []), tree(dest)


def test_ssh_copy_to_an_unreachable_node(sshd, source, tmp_path):
    task = ssh_task(sshd)
    refused = SshBackend(options=["-F", sshd.config, "-p", str(free_port())], connect_timeout=5)
    task.copy(str(source / "big"), str(tmp_path), nodes="127.0.0.1", backend=refused)
    task.rcopy("/etc/hostname", str(tmp_path), nodes="127.0.0.1", backend=refused)
    task.resume()
    assert dict(task.iter_status()) == {"unreachable": ["127.0.0.1", "127.0.0.1#2"]}
    assert not [p for p in tree(tmp_path) if "hostname" in p or TEMP_MARK in p]


# -- over RPC sessions (local servers) -----------------------------------------------


@pytest.fixture
def rpc_task(nodes):
    """A Task whose rpc sessions are local servers, each working in its node's
    directory with an empty PATH: a copy that needed ``sh`` and its tools there
    (``cat``, ``mv``, ``tar``) would fail, so these copies prove the server does it."""
    from easycluster.server import spawn_local

    task = Task()

    def connect(node: str):
        client = spawn_local()
        try:
            client.call("os.chdir", str(nodes / node))
            client.call("os.environ.__setitem__", "PATH", "/nonexistent")
        except BaseException:
            client.close()
            raise
        return client

    task.set_info("rpc_connect", connect)
    task.set_default("backend", "rpc")
    yield task
    task.close_sessions()


def test_rpc_push_of_random_mib_keeps_every_byte_and_fails_per_node(rpc_task, nodes, tmp_path):
    big = tmp_path / "random"
    big.write_bytes(os.urandom(5 * 2**20 + 12345))  # several MiB, not a chunk multiple
    os.chmod(big, 0o640)
    for n in ("n1", "n2"):
        (nodes / n / "into").mkdir()
    (nodes / "n3" / "into").write_bytes(b"a file, not a directory")
    rpc_task.copy(str(big), "into/", nodes="n[1-3]")
    rpc_task.resume()
    assert [rpc_task.node_retcode(n) for n in ("n1", "n2", "n3")] == [0, 0, 1]
    assert rpc_task.node_status("n3") == "hup"  # the node failed, it was reachable
    assert b"easycluster copy: into: not a directory" in rpc_task.node_error("n3")
    mask = os.umask(0)
    os.umask(mask)
    for n in ("n1", "n2"):
        assert sha(nodes / n / "into" / "random") == sha(big)
        assert os.stat(nodes / n / "into" / "random").st_mode & 0o7777 == 0o640 & ~mask
    assert temporaries(nodes) == [] and tree(nodes / "n3") == ["into"]


def test_rpc_push_keeps_mode_and_time_and_replaces_atomically(rpc_task, nodes, source):
    os.chmod(source / "big", 0o751)
    os.utime(source / "big", (1_000_000_000, 1_000_000_000))
    (nodes / "n1" / "big").write_bytes(b"old")
    (nodes / "n2" / "big").mkdir()
    rpc_task.copy(str(source / "big"), ".", nodes="n[1-2]", preserve=True)
    rpc_task.copy(str(source / "big"), "p%hq", nodes="n1")  # taken literally
    rpc_task.resume()
    assert rpc_task.node_retcode("n1") == 0 and rpc_task.node_retcode("n1#2") == 0
    st = os.stat(nodes / "n1" / "big")
    assert st.st_mode & 0o7777 == 0o751 and st.st_mtime == 1_000_000_000
    assert sha(nodes / "n1" / "big") == sha(source / "big")
    assert (nodes / "n1" / "p%hq").exists()
    assert b"big: is a directory" in rpc_task.node_error("n2")
    assert temporaries(nodes) == []


def test_rpc_push_and_pull_directories(rpc_task, nodes, source, tmp_path):
    (nodes / "n2" / "src").mkdir()
    (nodes / "n2" / "src" / "stale").write_bytes(b"gone after the copy")
    rpc_task.copy(str(source / "src"), ".", nodes="n[1-2]")
    rpc_task.resume()
    assert rpc_task.max_retcode() == 0, list(rpc_task.iter_errors())
    for n in ("n1", "n2"):
        assert tree(nodes / n) == ["src/", "src/a", "src/sub/", "src/sub/b"]
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    rpc_task.rcopy("src", str(pulled), nodes="n1")
    rpc_task.rcopy("src/sub/b", str(pulled), nodes="n[1-2],n1")
    rpc_task.rcopy("missing", str(pulled), nodes="n3")
    rpc_task.resume()
    assert [rpc_task.node_retcode(k) for k in rpc_task.results.slots] == [0, 0, 0, 0, 1]
    assert b"missing: no such file or directory" in rpc_task.node_error("n3")
    assert tree(pulled) == [
        "b.n1",
        "b.n1~2",
        "b.n2",
        "src.n1/",
        "src.n1/a",
        "src.n1/sub/",
        "src.n1/sub/b",
    ]
    assert (pulled / "b.n1~2").read_bytes() == b"B" * 100_000


def test_preserve_keeps_the_modes_of_a_trees_members(rpc_task, nodes, tmp_path):
    tree_ = tmp_path / "modes"
    (tree_ / "shared").mkdir(parents=True)
    (tree_ / "shared" / "notes").write_bytes(b"n\n")
    os.chmod(tree_ / "shared" / "notes", 0o664)
    os.chmod(tree_ / "shared", 0o2775)
    rpc_task.copy(str(tree_), ".", nodes="n1", preserve=True)  # pushed by our server
    rpc_task.resume()
    assert rpc_task.max_retcode() == 0, list(rpc_task.iter_errors())
    pushed = nodes / "n1" / "modes"
    assert os.stat(pushed / "shared" / "notes").st_mode & 0o7777 == 0o664  # (was 0o644)
    assert os.stat(pushed / "shared").st_mode & 0o7777 == 0o2775
    dest = tmp_path / "pulled"
    dest.mkdir()
    task = Task()
    task.rcopy("modes", str(dest), nodes="n1", backend=in_dirs(nodes), preserve=True)
    task.resume()
    assert task.max_retcode() == 0, list(task.iter_errors())
    pulled = dest / "modes.n1"
    assert os.stat(pulled / "shared" / "notes").st_mode & 0o7777 == 0o664
    assert os.stat(pulled / "shared").st_mode & 0o7777 == 0o775  # (no setgid from a node)


def test_rpc_pull_of_random_mib_keeps_every_byte(rpc_task, nodes, tmp_path):
    data = os.urandom(3 * 2**20 + 7)
    for n in ("n1", "n2", "n3"):
        (nodes / n / "f").write_bytes(data)
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    rpc_task.rcopy("f", str(pulled), nodes="n[1-3]", preserve=True)
    rpc_task.resume()
    assert rpc_task.max_retcode() == 0, list(rpc_task.iter_errors())
    digest = hashlib.sha256(data).hexdigest()
    assert {sha(pulled / f"f.{n}") for n in ("n1", "n2", "n3")} == {digest}


def test_rpc_push_aborted_midway_leaves_nothing(rpc_task, nodes, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(20_000_000))

    class AbortAfterSome(EventHandler):
        def ev_written(self, worker, node, sname, size):
            if size and any(TEMP_MARK in p for p in tree(nodes)):  # a temporary exists
                worker.task.abort(kill=True)

    rpc_task.copy(str(big), ".", nodes="n[1-2]", handler=AbortAfterSome())
    rpc_task.resume()
    assert {rpc_task.node_status(n) for n in ("n1", "n2")} <= {"aborted", "ok"}
    assert "aborted" in {rpc_task.node_status(n) for n in ("n1", "n2")}
    # the node's server removes an abandoned temporary when told the copy was killed
    assert wait_until(lambda: temporaries(nodes) == []), temporaries(nodes)
    for n in ("n1", "n2"):
        if rpc_task.node_status(n) == "aborted":
            assert not (nodes / n / "big").exists()
