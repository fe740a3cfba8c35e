"""``easycluster farm``: its input checked before a run, and its output files during one.

Bad files, values, node sets and groups are usage errors (exit 2) naming what to fix,
found before any job runs; a file the farm cannot write mid-run never leaves a job
running unreported. Runs call ``main(argv)`` in this process with ``-R local`` (each
"host" a real local server process), as ``test_farm_options.py`` does.
"""

from __future__ import annotations

import io
import re

import pytest

from easycluster.cli import farm as cli
from easycluster.nodeset import set_std_group_resolver, set_std_group_resolver_config

SUMMARY = re.compile(r"(\d+) jobs: (\d+) done.*?, (\d+) failed, (\d+) not run")


def run(capfd, *argv: str, stdin: str = ""):
    rc = cli.main(["-R", "local", "--no-status", *argv], stdin=io.StringIO(stdin))
    out, err = capfd.readouterr()
    return rc, out, err


def added_up(err: str, total: int) -> tuple:
    m = SUMMARY.search(err)
    assert m, err
    t, done, failed, not_run = map(int, m.groups())
    assert t == total and done + failed + not_run == total, err
    return done, failed, not_run


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
