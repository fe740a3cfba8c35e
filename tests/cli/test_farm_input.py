"""``easycluster farm``: its input checked before a run, and its output files during one.

Bad files, values, node sets and groups are usage errors (exit 2) naming what to fix,
found before any job runs; a file the farm cannot write mid-run never leaves a job
running unreported. Runs call ``main(argv)`` in this process with ``-R local`` (each
"host" a real local server process), as ``test_farm_options.py`` does.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from helpers import added_up
from helpers import farm_run as run

from easycluster.nodeset import set_std_group_resolver, set_std_group_resolver_config


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (a killed job whose parent left is one here:
    this container's PID 1 does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def groups(tmp_path):
    """A group source with one group, ``rack1`` (h1, h2); any other group is empty."""
    conf = tmp_path / "groups.conf"
    conf.write_text(
        "[Main]\ndefault: racks\n\n[racks]\n"
        "map: case $GROUP in rack1) echo h[1-2];; esac\n"
        "list: echo rack1\n"
    )
    set_std_group_resolver_config(str(conf))
    try:
        yield
    finally:
        set_std_group_resolver(None)


# -- input: usage errors naming what to fix ---------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--timeout", "inf"),
        ("--heartbeat", "inf"),
        ("--connect-timeout", "inf"),
        ("--timeout", "-inf"),
        ("--heartbeat", "nan"),
        ("--timeout", "1e300"),  # finite, but past any wait the OS takes
    ],
)
def test_non_finite_seconds_are_usage_errors(capfd, tmp_path, flag, value):
    marker = tmp_path / "ran"
    rc, out, err = run(capfd, "-n", "h1", f"{flag}={value}", "-j", f"touch {marker}")
    assert rc == 2, err
    assert f"{flag} takes seconds > 0" in err and "Traceback" not in err
    assert not marker.exists()


def test_bad_input_files_are_usage_errors_naming_them(capfd, tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_bytes(b"echo a\necho \xff\n")
    rc, _, err = run(capfd, "-n", "h1", "-J", str(jobs))
    assert rc == 2 and f"job file {jobs}:2: not UTF-8" in err, err
    nodes = tmp_path / "nodes.txt"
    nodes.write_text("h1\n# rack 2\nnode[1-\n")
    rc, _, err = run(capfd, "-N", str(nodes), "-j", "true")
    assert rc == 2 and f"{nodes}:3: cannot read 'node[1-' as a node set" in err, err
    rc, _, err = run(capfd, "-w", "h[1-", "-j", "true")
    assert rc == 2 and "-w: cannot read 'h[1-' as a node set" in err, err


def test_unwritable_output_paths_are_usage_errors_before_any_job(capfd, tmp_path):
    marker = tmp_path / "ran"
    job = ["-n", "h1", "-j", f"touch {marker}"]
    a_file = tmp_path / "file"
    a_file.write_text("")
    missing = tmp_path / "no" / "such"
    for argv, says in [
        (["--joblog", f"{missing}.log"], f"--joblog {missing}.log: cannot write it"),
        (["--outdir", str(a_file)], f"--outdir {a_file}: exists and is not a directory"),
        (["-A", f"{missing}.txt"], f"-A {missing}.txt: cannot write it"),
        (["-A", str(tmp_path)], f"-A {tmp_path}: cannot write it"),  # a directory
    ]:
        rc, out, err = run(capfd, *job, *argv)
        assert rc == 2, (argv, err)
        assert says in err and ".tmp" not in err, err
        assert not marker.exists(), argv


def test_unknown_group_is_a_usage_error_even_beside_hosts(capfd, groups):
    rc, out, err = run(capfd, "-g", "rack1", "-j", "echo x")
    assert rc == 0 and re.fullmatch(r"1 h[12]: x\n", out), err
    for argv in (["-n", "h1", "-g", "rack1typo"], ["-w", "h1,@rack1typo"], ["-g", "rack1typo"]):
        rc, out, err = run(capfd, *argv, "-j", "echo x")
        assert rc == 2, (argv, err)
        assert "no node in @rack1typo (an unknown or empty group?)" in err, err
        assert out == ""


# -- output: one file for both streams; files that fail mid-run ------------------------


@pytest.mark.parametrize("spelling", ["same", "symlink"])
def test_one_file_for_stdout_and_stderr_keeps_both(capfd, tmp_path, spelling):
    path = tmp_path / "both.txt"
    other = path
    if spelling == "symlink":
        other = tmp_path / "link.txt"
        other.symlink_to(path)
    rc, out, err = run(
        capfd,
        "-n",
        "h1",
        "-o",
        str(path),
        "-e",
        str(other),
        "-j",
        "echo OUT-one; echo ERR-one >&2",
        "-j",
        "echo OUT-two; echo ERR-two >&2",
    )
    assert rc == 0, err
    assert path.read_text().splitlines() == [
        "1 h1: OUT-one",
        "1 h1: ERR-one",
        "2 h1: OUT-two",
        "2 h1: ERR-two",
    ]


@pytest.mark.timeout(60)
def test_active_file_gone_mid_run_is_a_warning_once(capfd, tmp_path):
    adir = tmp_path / "adir"
    adir.mkdir()
    rc, out, err = run(
        capfd,
        "-n",
        "h1",
        "-A",
        str(adir / "act.txt"),
        "-j",
        f"rm -rf {adir}",
        "-j",
        "sleep 0.6; echo two",  # (ticks pass while it runs: -A is written, and fails)
        "-j",
        "echo three",
    )
    assert rc == 0, err
    assert added_up(err, 3) == (3, 0, 0)
    assert err.count("warning: cannot write the active-nodes file") == 1, err
    assert f"{adir / 'act.txt'}" in err and ".act.txt." not in err
    assert out.splitlines() == ["2 h1: two", "3 h1: three"]


@pytest.mark.timeout(60)
def test_outdir_gone_mid_run_kills_running_jobs_and_reports_all(capfd, tmp_path):
    outdir, pidfile = tmp_path / "out", tmp_path / "pid"
    pid = None
    try:
        rc, out, err = run(
            capfd,
            "-n",
            "h1",
            "--slots",
            "2",
            "--outdir",
            str(outdir),
            "-j",
            f"echo $$ > {pidfile}.new && mv {pidfile}.new {pidfile}; exec sleep 60",
            "-j",
            f"while [ ! -e {pidfile} ]; do sleep 0.05; done; rm -rf {outdir}",
            "-j",
            "echo three",
        )
        pid = int(pidfile.read_text())
        assert rc == 1, err
        assert f"cannot write {outdir}/2.out" in err, err
        done, failed, not_run = added_up(err, 3)
        assert (done, not_run) == (1, 2), err
        assert "job 1: echo" in err and "job 3: echo three" in err
        deadline = time.monotonic() + 10
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(pid), "the running job was left running"
    finally:
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGKILL)
