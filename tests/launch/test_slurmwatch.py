"""``launch/slurmwatch.py`` without SLURM: reading sinfo's states and
``SLURM_JOB_CPUS_PER_NODE``, and a watch whose question fails. The watch against a real
slurmctld is in ``tests/integration/test_slurm_alloc.py``."""

from __future__ import annotations

import pytest

from easycluster.launch.slurmwatch import SlurmWatch, cpus_per_node, parse_states, unusable

pytestmark = pytest.mark.timeout(30)


def test_parse_states_keeps_each_nodes_first_line():
    text = "n1 allocated\nn2 draining\n\nn1 idle\nbad line here\nn3 DOWN*\n"
    assert parse_states(text) == {"n1": "allocated", "n2": "draining", "n3": "down*"}


@pytest.mark.parametrize(
    "state",
    ["down", "down*", "drained", "draining", "drain", "fail", "failing", "mixed+drain", "DOWN~"],
)
def test_out_of_service_states(state):
    assert unusable(state)


@pytest.mark.parametrize(
    "state", ["allocated", "allocated*", "mixed", "idle", "completing", "powered_down", ""]
)
def test_states_in_service(state):
    assert not unusable(state)


def test_cpus_per_node():
    nodes = ["a", "b", "c", "d"]
    env = {"SLURM_JOB_CPUS_PER_NODE": "2(x3),1"}
    assert cpus_per_node(nodes, env) == {"a": 2, "b": 2, "c": 2, "d": 1}
    assert cpus_per_node(["a", "b"], {"SLURM_JOB_CPUS_PER_NODE": "4,8"}) == {"a": 4, "b": 8}
    for text in ("", "2(x3)", "2(x5)", "x", "2(x3),", "0(x4)"):  # unset, wrong count, bad
        assert cpus_per_node(nodes, {"SLURM_JOB_CPUS_PER_NODE": text}) == {}, text
    assert cpus_per_node(nodes, {}) == {}


def test_a_failed_question_reports_nothing(tmp_path):
    seen = []
    watch = SlurmWatch(["n1"], lambda node, why: seen.append(node), sinfo=str(tmp_path / "no"))
    assert watch.poll() == []
    assert isinstance(watch.last_error, OSError) and seen == []
    with pytest.raises(ValueError, match="interval"):
        SlurmWatch(["n1"], print, interval=0)


def test_stop_ends_the_thread(tmp_path):
    watch = SlurmWatch(["n1"], print, interval=0.01, sinfo=str(tmp_path / "no")).start()
    watch.stop()
    assert watch._thread is not None and not watch._thread.is_alive()
