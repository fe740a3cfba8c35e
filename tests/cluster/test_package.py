"""``easycluster.cluster`` loads its engine only when a name of it is used, so that
``easycluster gather`` (``cluster/gather.py``) does not pay for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENGINE = ["easycluster.cluster.task", "easycluster.cluster.engine", "easycluster.cluster.backends"]


@pytest.mark.parametrize("module", ["easycluster.cluster", "easycluster.cluster.gather"])
def test_importing_the_package_loads_no_engine(module):
    code = f"import sys, {module}; print([m for m in {ENGINE!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_public_names_load_on_first_use():
    import easycluster.cluster as cluster

    assert set(cluster.__all__) >= {"Task", "task_self", "EventHandler", "Worker", "Timer"}
    assert cluster.Task.__module__ == "easycluster.cluster.task"
    assert cluster.EventHandler.__module__ == "easycluster.cluster.events"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        cluster.Nope  # noqa: B018
    assert "Task" in dir(cluster)
