"""``remote/treeplace.py``: a tree renamed onto a directory others replace at the same
time. Real directories; the race is real processes, each putting its own trees in
place again and again onto one target."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import tree

from easycluster.remote.treeplace import PlaceError, place_tree, same_tree

pytestmark = pytest.mark.timeout(120)


def make(path, body: bytes = b"B\n") -> str:
    """A small tree at ``path``: a file, a directory holding a file, a symlink."""
    os.makedirs(os.path.join(path, "sub"))
    with open(os.path.join(path, "a"), "wb") as f:
        f.write(b"A\n")
    with open(os.path.join(path, "sub", "b"), "wb") as f:
        f.write(body)
    os.symlink("a", os.path.join(path, "link"))
    return str(path)


MADE = ["a", "link", "sub/", "sub/b"]


def test_a_tree_goes_where_nothing_was_and_replaces_a_tree_as_a_whole(tmp_path):
    target = str(tmp_path / "dest" / "t")
    os.mkdir(tmp_path / "dest")
    place_tree(make(tmp_path / "new1"), target)
    assert tree(tmp_path / "dest") == ["t/"] + [f"t/{p}" for p in MADE]
    os.mkdir(os.path.join(target, "stale"))
    place_tree(make(tmp_path / "new2", b"two\n"), target)
    assert tree(tmp_path / "dest") == ["t/"] + [f"t/{p}" for p in MADE]  # (no aside left)
    assert (tmp_path / "dest" / "t" / "sub" / "b").read_bytes() == b"two\n"


def test_a_file_at_the_target_is_refused_and_kept(tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"a file\n")
    new = make(tmp_path / "new")
    with pytest.raises(PlaceError, match="exists and is not a directory"):
        place_tree(new, str(target))
    assert target.read_bytes() == b"a file\n" and tree(new) == MADE


def test_after_every_turn_lost_only_an_identical_tree_counts_as_ours(tmp_path):
    # tries=0 stands for "every turn lost": what is in place then decides
    target = make(tmp_path / "t")
    new = make(tmp_path / "new")
    place_tree(new, target, tries=0)
    assert not os.path.lexists(new) and tree(target) == MADE
    new = make(tmp_path / "new", b"other bytes\n")
    with pytest.raises(PlaceError, match="other trees kept taking its place"):
        place_tree(new, target, tries=0)
    assert tree(new) == MADE and (tmp_path / "t" / "sub" / "b").read_bytes() == b"B\n"


@pytest.mark.parametrize("change", ["bytes", "mode", "name", "link", "type", "mtime"])
def test_same_tree_sees_each_difference(tmp_path, change):
    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    assert same_tree(a, b, times=False)
    if change == "bytes":
        (tmp_path / "b" / "sub" / "b").write_bytes(b"C\n")
    elif change == "mode":
        os.chmod(tmp_path / "b" / "sub", 0o700)
    elif change == "name":
        (tmp_path / "b" / "extra").write_bytes(b"")
    elif change == "link":
        os.remove(tmp_path / "b" / "link")
        os.symlink("sub", tmp_path / "b" / "link")
    elif change == "type":
        os.remove(tmp_path / "b" / "a")
        os.mkdir(tmp_path / "b" / "a")
    else:
        os.utime(tmp_path / "b" / "a", (0, 0))
        assert same_tree(a, b, times=False)  # (without preserve, times are the unpack's)
    assert not same_tree(a, b, times=True)


RACER = textwrap.dedent(
    """
    import os, sys
    from easycluster.remote.treeplace import place_tree
    work, target, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for n in range(rounds):
        new = os.path.join(work, f"new{n}")
        os.makedirs(os.path.join(new, "sub"))
        for name in ("a", os.path.join("sub", "b")):
            with open(os.path.join(new, name), "w") as f:
                f.write(name)
        place_tree(new, target)  # (raises, and the process fails, if it cannot)
    """
)


def test_processes_replacing_one_tree_at_once_all_succeed_and_leave_one_tree(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    target = str(shared / "t")
    procs = []
    try:
        for i in range(6):
            work = tmp_path / f"w{i}"
            work.mkdir()
            argv = [sys.executable, "-c", RACER, str(work), target, "40"]
            procs.append(subprocess.Popen(argv, stderr=subprocess.PIPE))
        errors = [p.communicate(timeout=100)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert tree(shared) == ["t/", "t/a", "t/sub/", "t/sub/b"]
    assert (shared / "t" / "sub" / "b").read_text() == os.path.join("sub", "b")
