"""A tree's copy packs and unpacks with GNU ``tar`` where there is one (``tarfile``
costs ten times as much per member), and with ``tarfile`` where there is none: the
rpc node's receiver and sender (``remote/filecopy.py``) and the rcopy's local unpack
(``copyio.PullSink``). Real ``tar`` processes: a wrapper first in ``PATH`` logs each
run of it and runs the real one; a ``tar`` that is not GNU's (a script that says so)
must not be used.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile

import pytest

from easycluster.cluster.copyio import PullSink
from easycluster.cluster.results import SlotResult
from easycluster.remote.filecopy import Receiver, Sender, gnu_tar

REAL_TAR = shutil.which("tar")
pytestmark = pytest.mark.skipif(
    REAL_TAR is None or gnu_tar() is None and not os.environ.get("CI"),
    reason="no GNU tar here",
)


def fake_tar(tmp_path, monkeypatch, body: str):
    """A ``tar`` first in PATH that appends its arguments to the returned log file, then
    runs ``body`` (shell)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tar.log"
    wrapper = bin_dir / "tar"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >>"{log}"\n{body}\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


@pytest.fixture
def tar_log(tmp_path, monkeypatch):
    """A ``tar`` first in PATH that logs its arguments and runs the real GNU tar."""
    return fake_tar(tmp_path, monkeypatch, f'exec {REAL_TAR} "$@"')


@pytest.fixture
def not_gnu_tar(tmp_path, monkeypatch):
    """A ``tar`` first in PATH that is not GNU's (it does nothing, and says so)."""
    return fake_tar(tmp_path, monkeypatch, 'echo "bsdtar 3.7"')


def runs(log) -> list:
    """The tar runs logged, ``--version`` checks left out."""
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line != "--version"]


def make_tree(root) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a").write_bytes(b"A" * 300)
    (root / "sub" / "b").write_bytes(b"B")
    (root / "sub" / "deep" / "c").write_bytes(b"C" * 5000)
    os.symlink("../a", root / "sub" / "link")
    (root / "suid").write_bytes(b"s")
    os.chmod(root / "suid", 0o4755)
    os.utime(root / "a", (1_000_000, 1_000_000))


def packed(root) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(root), arcname="d")
    return buf.getvalue()


def receive(dest, data: bytes, preserve: bool) -> tuple:
    recv = Receiver(str(dest), "t", len(data), 0o755, "d", preserve, 0, "d")
    recv.write(data)
    recv.close_stdin()
    return recv.read()


def check_tree(root, preserve: bool) -> None:
    assert (root / "sub" / "deep" / "c").read_bytes() == b"C" * 5000
    assert os.readlink(root / "sub" / "link") == "../a"
    assert (os.stat(root / "a").st_mtime == 1_000_000) is preserve


@pytest.mark.parametrize("preserve", [False, True])
def test_the_node_unpacks_a_pushed_tree_with_tar(tmp_path, tar_log, preserve):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    dest.mkdir()
    assert receive(dest, packed(src), preserve) == ([], 0)
    check_tree(dest / "t", preserve)
    mode = stat.S_IMODE(os.stat(dest / "t" / "suid").st_mode)
    assert mode == (0o4755 if preserve else 0o755 & ~os.umask(os.umask(0)))
    [run] = runs(tar_log)
    assert run.startswith("-x -f ") and ("-p" in run.split()) is preserve
    assert [n for n in os.listdir(dest) if ".ectmp." in n] == []


def test_a_tar_that_cannot_unpack_fails_the_push_and_leaves_nothing(tmp_path, tar_log):
    dest = tmp_path / "dest"
    dest.mkdir()
    data = b"not a tar stream at all" * 100
    chunks, rc = receive(dest, data, False)
    assert rc == 1 and chunks[0][1].startswith(b"easycluster copy: ")
    assert b"cannot unpack" in chunks[0][1]
    assert runs(tar_log) and os.listdir(dest) == []


def stream(sender: Sender) -> tuple:
    out, err = b"", b""
    while True:
        chunks, rc = sender.read()
        for sid, data in chunks:
            if sid == 1:
                out += data
            else:
                err += data
        if rc is not None:
            return out, err, rc


def test_the_node_streams_a_pulled_tree_from_tar(tmp_path, tar_log):
    src = tmp_path / "src"
    make_tree(src)
    out, err, rc = stream(Sender(str(src)))
    assert (rc, err) == (0, b"") and out.startswith(b"D\n")
    with tarfile.open(fileobj=io.BytesIO(out[2:])) as tar:
        names = set(tar.getnames())
    assert {"./a", "./sub/deep/c", "./sub/link", "./suid"} <= names
    assert runs(tar_log) == ["-c -f - ."]


def test_a_killed_sender_ends_its_tar(tmp_path, tar_log):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):  # (more than a chunk of stream)
        (src / f"f{i}").write_bytes(os.urandom(5000))
    sender = Sender(str(src))
    chunks, rc = sender.read()
    assert rc is None and chunks
    sender.kill()
    assert sender.read() == ([], 137)
    assert sender.proc.returncode is not None  # (reaped: no process left)


@pytest.mark.parametrize("preserve", [False, True])
def test_the_rcopy_unpacks_with_tar_and_drops_setuid(tmp_path, tar_log, preserve):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    os.chmod(src / "sub", 0o2775)
    dest.mkdir()
    out, _, rc = stream(Sender(str(src)))
    assert rc == 0
    sink = PullSink(str(dest), {"n1": "t.n1"}, preserve)
    slot = SlotResult("n1", "n1", 0)
    sink.write(slot, out)
    assert sink.commit(slot) == 0, slot.stderr
    got = dest / "t.n1"
    check_tree(got, preserve)
    for path in (got / "suid", got / "sub"):
        assert not os.lstat(path).st_mode & (stat.S_ISUID | stat.S_ISGID)
    if preserve:
        assert stat.S_IMODE(os.stat(got / "suid").st_mode) == 0o755
        assert stat.S_IMODE(os.stat(got / "sub").st_mode) == 0o775
    assert any(run.startswith("-x -f ") for run in runs(tar_log))
    assert os.listdir(dest) == ["t.n1"]


def test_a_pulled_tree_that_escapes_fails_with_tar_too(tmp_path, tar_log):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    dest = tmp_path / "dest"
    dest.mkdir()
    sink = PullSink(str(dest), {"n1": "t.n1"}, False)
    slot = SlotResult("n1", "n1", 0)
    sink.write(slot, b"D\n" + buf.getvalue())
    assert sink.commit(slot) == 1 and b"easycluster rcopy: n1: cannot unpack" in slot.stderr
    assert os.listdir(dest) == [] and not (tmp_path / "evil").exists()
    assert runs(tar_log)


def test_a_tar_that_is_not_gnus_is_not_used(tmp_path, not_gnu_tar):
    assert gnu_tar() is None
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src)
    dest.mkdir()
    assert receive(dest, packed(src), True) == ([], 0)
    check_tree(dest / "t", True)
    out, err, rc = stream(Sender(str(src)))
    assert (rc, err) == (0, b"")
    sink = PullSink(str(dest), {"n1": "t.n1"}, True)
    slot = SlotResult("n1", "n1", 0)
    sink.write(slot, out)
    assert sink.commit(slot) == 0, slot.stderr
    check_tree(dest / "t.n1", True)
    assert runs(not_gnu_tar) == []


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE])
def test_a_pulled_tree_holding_a_device_or_fifo_fails_and_leaves_nothing(tmp_path, tar_log, kind):
    """A node's stream is not trusted: ``tar`` (as root) would make the device file it
    names, readable by all, under the destination; the pull fails instead, naming it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = tarfile.TarInfo("./fine")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        special = tarfile.TarInfo("./dev")
        special.type, special.mode = kind, 0o666
        special.devmajor, special.devminor = 1, 3  # (/dev/null's numbers)
        tar.addfile(special)
    dest = tmp_path / "dest"
    dest.mkdir()
    sink = PullSink(str(dest), {"n1": "t.n1"}, True)
    slot = SlotResult("n1", "n1", 0)
    sink.write(slot, b"D\n" + buf.getvalue())
    assert sink.commit(slot) == 1
    if kind == tarfile.CHRTYPE and os.geteuid() != 0:
        assert b"cannot unpack" in slot.stderr  # (tar itself cannot make one)
    else:
        assert b"dev: a device, FIFO or socket: refused" in slot.stderr, slot.stderr
    assert os.listdir(dest) == []
