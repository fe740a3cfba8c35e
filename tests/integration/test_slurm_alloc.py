"""The shell, the farm and the executor on a SLURM allocation, against a real slurmctld.

The ``slurm`` fixture (tests/slurm.py) runs munged, slurmctld and four slurmd (n1..n4,
2 CPUs each) on this host. Each test makes its own allocation (``salloc --no-shell
--no-kill --exclusive``) and acts "inside" it as a shell in ``salloc`` would, with
``SLURM_JOB_ID``, ``SLURM_JOB_NODELIST`` and ``SLURM_JOB_CPUS_PER_NODE`` set. Commands
run as subprocesses in their own session, killed with their group whatever happens;
every test ends with no step of ours left; tests that break nodes heal them afterwards.
Jobs and items that must be caught "mid-run" wait for a release file, so no test
depends on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List

import pytest

from easycluster.cluster.executor import ClusterExecutor
from easycluster.errors import ConfigError
from easycluster.launch import srun as launch_srun
from easycluster.nodeset import NodeSet

pytestmark = pytest.mark.timeout(90)

CPUS = 2  # per node in tests/slurm.py's slurm.conf; --exclusive gives a job all of them


@pytest.fixture
def no_groups(tmp_path, monkeypatch):
    """No site group files: only SLURM's built-in sources (``@sj:``...) exist."""
    monkeypatch.setenv("EASYCLUSTER_GROUPS_CONF", str(tmp_path / "none.conf"))


def held() -> List[str]:
    return sorted(NodeSet(os.environ["SLURM_JOB_NODELIST"]))


def our_steps(slurm, job: str) -> List[str]:
    out = slurm.run("squeue", "-h", "-s", "-j", job, "-o", "%i %j %N", check=False)
    return [line for line in out.splitlines() if launch_srun.STEP_PREFIX in line]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Command:
    """``python -m easycluster ARGS`` in its own session; ``close()`` kills its whole
    process group (srun steps included) if it still runs."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "easycluster", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, timeout: float = 60) -> subprocess.CompletedProcess:
        out, err = self.proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.communicate()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = Command(*args)
    try:
        return cmd.finish(timeout)
    finally:
        cmd.close()


def on_node(job: str) -> str:
    """A ``-R exec`` command that runs on node ``%h`` of ``job`` as an srun step."""
    return f"srun --jobid={job} -N1 -n1 --overlap --quiet -w %h printenv SLURMD_NODENAME"


# -- the shell ----------------------------------------------------------------------------


def test_shell_defaults_to_the_allocation_nodes(slurm, inside, no_groups, monkeypatch):
    job = inside(3, CPUS)
    r = run("shell", "-R", "exec", "-L", on_node(job))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{n}: {n}" for n in held()]
    assert "the allocation's nodes" in " ".join(run("shell", "--help").stdout.split())
    monkeypatch.delenv("SLURM_JOB_ID")
    r = run("shell", "-R", "exec", "echo %h")
    assert r.returncode == 2
    assert "no nodes" in r.stderr and "SLURM allocation" in r.stderr


def test_shell_w_sj_names_a_jobs_nodes(slurm, no_groups, monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(name, raising=False)  # outside any allocation
    job = slurm.allocate(2)
    try:
        nodes = sorted(NodeSet(slurm.run("squeue", "-h", "-j", job, "-o", "%N").strip()))
        r = run("shell", "-R", "exec", "-L", "-w", f"@sj:{job}", on_node(job))
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [f"{n}: {n}" for n in nodes]
    finally:
        slurm.cancel_all()


# -- the farm -----------------------------------------------------------------------------


def joblog(path) -> List[List[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f][1:]


def test_farm_slurm_runs_every_job_and_names_failures(slurm, inside, tmp_path):
    job = inside(2, CPUS)
    log = tmp_path / "log"
    jobs = [f"echo job{i} on $SLURMD_NODENAME" for i in range(1, 10)]
    jobs[3] = "echo job4 fails; exit 3"
    args = ["farm", "--slurm", "-v", "--no-status", "--joblog", str(log)]
    for j in jobs:
        args += ["-j", j]
    r = run(*args)
    assert r.returncode == 250, r.stderr  # a job exited non-zero
    assert "(4 slots)" in r.stderr  # a slot per CPU: SLURM_JOB_CPUS_PER_NODE
    assert "9 jobs: 8 done, 1 failed, 0 not run" in r.stderr
    assert "failed (failed, exit 3): job 4: echo job4 fails; exit 3" in r.stderr
    ran: Dict[str, str] = {}
    for line in r.stdout.splitlines():  # "SEQ HOST: output"
        label, _, text = line.partition(": ")
        seq, host = label.split()
        assert text.split()[0] == f"job{seq}"
        ran[seq] = host
        if seq != "4":
            assert text.split()[-1] == host  # it ran on the node it is labelled with
    assert sorted(ran, key=int) == [str(i) for i in range(1, 10)]
    assert set(ran.values()) <= set(held())
    assert sorted(int(row[0]) for row in joblog(log)) == list(range(1, 10))  # each once
    assert our_steps(slurm, job) == []


def test_farm_slurm_jobid_from_outside_gives_a_slot_per_cpu(slurm, tmp_path, monkeypatch):
    """audit68 #3: another allocation named by its job id got 1 slot per node (its
    SLURM_JOB_CPUS_PER_NODE is not ours to read): SLURM says how many CPUs it holds."""
    job = slurm.allocate(2)  # (exclusive: every CPU of both nodes)
    for name in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NODELIST", "SLURM_JOB_CPUS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    try:
        r = run("farm", "--slurm", job, "-v", "--no-status", "-j", "true")
    finally:
        slurm.cancel_all()
    assert r.returncode == 0, r.stderr
    assert f"({2 * CPUS} slots)" in r.stderr, r.stderr


def test_farm_slurm_outside_an_allocation(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(name, raising=False)
    r = run("farm", "--slurm", "-j", "true")
    assert r.returncode == 2
    assert "not inside a SLURM allocation" in r.stderr


def test_farm_slurm_with_a_slurm_conf_that_names_no_file(tmp_path, monkeypatch):
    """audit68 #2: SLURM's commands retry reading a missing slurm.conf for a minute; the
    farm waited 30 s, then said only that a command did not answer."""
    for name in ("SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "nowhere" / "slurm.conf"))
    r = run("farm", "--slurm", "1234", "-j", "true", timeout=20)
    assert r.returncode == 2, r.stderr
    assert f"SLURM_CONF={tmp_path / 'nowhere' / 'slurm.conf'}: no such file" in r.stderr


def test_farm_slurm_node_not_in_the_allocation(slurm, inside):
    inside(1, CPUS)
    outsider = sorted(NodeSet("n[1-4]") - NodeSet(held()))[0]
    r = run("farm", "--slurm", "-w", outsider, "-j", "true")
    assert r.returncode == 2
    assert f"node {outsider} is not in SLURM allocation" in r.stderr


def test_farm_slurm_drained_node_jobs_rerun_elsewhere(healed, inside, tmp_path):
    slurm = healed
    job = inside(2, CPUS)
    keep, victim = held()
    started, release, log = tmp_path / "started", tmp_path / "release", tmp_path / "log"
    started.mkdir()
    args = ["farm", "--slurm", "--no-status", "--joblog", str(log)]
    for i in range(1, 5):  # one job per slot; each waits (bounded) for the release file
        args += [
            "-j",
            f"touch {started}/{i}.$SLURMD_NODENAME; n=0; while [ ! -e {release} ] && "
            f"[ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; echo job{i}",
        ]
    farm = Command(*args)
    try:
        wait_until(lambda: len(os.listdir(started)) == 4, 30, "a job on every slot")
        on_victim = {n.split(".")[0] for n in os.listdir(started) if n.endswith("." + victim)}
        assert len(on_victim) == CPUS
        slurm.run("scontrol", "update", f"nodename={victim}", "state=drain", "reason=test")
        # the drained node's steps go on running: only SLURM's word retires it
        wait_until(
            lambda: log.exists() and sum(row[5] == "lost" for row in joblog(log)) == CPUS,
            30,
            "the drained node's jobs to be lost",
        )
        release.touch()
        r = farm.finish()
    finally:
        release.touch()
        farm.close()
    assert r.returncode == 0, r.stderr  # every job done in the end
    assert f"hosts retired (lost): {victim}: SLURM marks {victim} draining" in r.stderr
    rows = joblog(log)
    assert {row[0] for row in rows if row[5] == "lost"} == on_victim
    assert {row[1] for row in rows if row[5] == "lost"} == {victim}
    done = {row[0]: row[1] for row in rows if row[5] == "done"}
    assert sorted(done) == ["1", "2", "3", "4"]
    assert all(done[seq] == keep for seq in on_victim)  # redone on the other node
    assert our_steps(slurm, job) == []


# -- the executor -------------------------------------------------------------------------

NODENAME = "SLURMD_NODENAME"


def test_executor_from_slurm_map(slurm, inside):
    job = inside(3, CPUS)
    with ClusterExecutor.from_slurm(heartbeat=5.0) as ex:
        got = list(ex.map(lambda x: (x * x, os.environ[NODENAME]), range(40), chunksize=1))
        assert [v for v, _ in got] == [x * x for x in range(40)]
        assert {n for _, n in got} <= set(held())
        assert len(our_steps(slurm, job)) == 3  # one server (step) per node
    assert our_steps(slurm, job) == []
    one = held()[1]
    with ClusterExecutor.from_slurm(nodes=one) as ex:
        assert ex.submit(lambda: os.environ[NODENAME]).result(timeout=30) == one
    outsider = sorted(NodeSet("n[1-4]") - NodeSet(held()))[0]
    with pytest.raises(ConfigError, match=f"node {outsider} is not in SLURM allocation"):
        ClusterExecutor.from_slurm(nodes=[held()[0], outsider])
    assert our_steps(slurm, job) == []


def test_executor_from_slurm_outside_an_allocation(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="not inside a SLURM allocation"):
        ClusterExecutor.from_slurm()


@pytest.mark.parametrize("state", ["down", "drain"])
def test_executor_node_out_of_service_mid_run_work_redone_elsewhere(
    healed, inside, tmp_path, state
):
    slurm = healed
    job = inside(3, CPUS)
    victim = held()[1]
    started, hit, release = tmp_path / "started", tmp_path / "hit", tmp_path / "release"
    started.mkdir()

    def item(i: int) -> str:
        """Waits on the victim until released, elsewhere until the victim is hit (so
        every server holds an item when it is); a rerun returns at once."""
        node = os.environ["SLURMD_NODENAME"]
        rerun = any(name.startswith(f"{i}.") for name in os.listdir(started))
        open(os.path.join(started, f"{i}.{node}"), "w").close()
        gate = release if node == victim else hit
        for _ in range(1200 if not rerun else 0):  # bounded: a failed test must end
            if os.path.exists(gate):
                break
            time.sleep(0.05)
        return node

    with ClusterExecutor.from_slurm(heartbeat=5.0, watch_interval=0.5) as ex:
        try:
            futures = [ex.submit(item, i) for i in range(6)]
            first = wait_until(
                lambda: [n for n in os.listdir(started) if n.endswith("." + victim)],
                30,
                f"an item on {victim}",
            )
            slurm.run("scontrol", "update", f"nodename={victim}", f"state={state}", "reason=t")
            hit.touch()
            values = [f.result(timeout=60) for f in futures]
            assert "1 retired" in repr(ex)
        finally:  # (before shutdown, which waits for the items)
            hit.touch()
            release.touch()
    assert victim not in values  # the victim's item was redone elsewhere
    assert set(values) <= set(held())
    lost = first[0].split(".")[0]
    runs = [n.split(".")[1] for n in os.listdir(started) if n.startswith(lost + ".")]
    assert len(runs) == 2 and victim in runs  # begun on the victim, redone on another node
    left = our_steps(slurm, job)
    if state == "down":  # slurmctld keeps the record of a step on a DOWN node until the
        left = [step for step in left if not step.endswith(" " + victim)]  # node is back
    assert left == []  # (a drained node's step is cancelled when its server is lost)
