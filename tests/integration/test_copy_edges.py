"""``Task.copy`` and ``Task.rcopy`` at their edges, over the real loopback sshd (the ssh
backend) and over rpc sessions: a Ctrl-C while a pulled directory is unpacked."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from helpers import SHELL, ctrl_c

from easycluster.cluster.copy import TEMP_MARK

pytestmark = [pytest.mark.usefixtures("no_leftover_children"), pytest.mark.timeout(120)]

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
