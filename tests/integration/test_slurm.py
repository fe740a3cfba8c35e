"""SLURM for real: group sources and srun-started servers against a real slurmctld.

The ``slurm`` fixture (tests/slurm.py) runs munged, slurmctld and four slurmd (n1..n4)
on this host. Each test makes its own allocation (``salloc --no-shell --no-kill``) and
acts "inside" it the way a shell in ``salloc`` would: ``SLURM_JOB_ID`` and
``SLURM_JOB_NODELIST`` in the environment. Tests that break nodes heal them afterwards.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from easycluster import Client, Cluster
from easycluster.client.spec import clients_from_slurm, parse_srun_spec
from easycluster.errors import ConfigError, ConnectError, ConnectionLost, SpecError
from easycluster.launch import srun as launch_srun
from easycluster.nodeset import GroupResolver, NodeSet
from easycluster.nodeset.slurm import allocation_nodes, parse_hostnames, slurm_hostlist

NODENAME = "__import__('os').environ['SLURMD_NODENAME']"


@pytest.fixture
def resolver(slurm, tmp_path):
    """The configuration-file resolver, with no site files, so only SLURM's built-in
    sources are there (it reads SLURM_CONF, which the ``slurm`` fixture set)."""
    return GroupResolver.from_config({"EASYCLUSTER_GROUPS_CONF": str(tmp_path / "none.conf")})


def our_steps(slurm, job):
    out = slurm.run("squeue", "-h", "-s", "-j", job, "-o", "%i %j", check=False)
    return [line for line in out.splitlines() if launch_srun.STEP_PREFIX in line]


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- node sets ----------------------------------------------------------------------------


def test_scontrol_reads_every_hostlist_we_write(slurm):
    cases = [
        [f"n{i}" for i in range(1, 5)],
        ["r1n1", "r1n2", "r2n1", "r2n2"],
        ["x8-ib", "x9-ib", "login"],
        ["gpu08", "gpu09", "gpu10", "gpu8"],
        [f"a{i}" for i in range(1, 65541)],  # past SLURM's 65,536 hosts per range
    ]
    for names in cases:
        written = slurm_hostlist(names)
        out = slurm.run("scontrol", "show", "hostnames", written)
        assert parse_hostnames(out) == NodeSet.fromlist(names), written


def test_allocation_node_list_parses(slurm, inside):
    job = inside(3)
    nodes = allocation_nodes()
    assert len(nodes) == 3 and nodes <= NodeSet("n[1-4]")
    assert launch_srun.allocation_nodes(job) == list(nodes)


def test_group_sources_resolve(slurm, inside, resolver):
    job = inside(2)
    assert NodeSet("@slurm:debug", resolver=resolver) == NodeSet("n[1-4]")
    assert NodeSet("@sp:debug", resolver=resolver) == NodeSet("n[1-4]")
    held = NodeSet(os.environ["SLURM_JOB_NODELIST"])
    assert NodeSet(f"@sj:{job}", resolver=resolver) == held
    assert NodeSet("@st:allocated", resolver=resolver) == held
    assert NodeSet("@st:idle", resolver=resolver) == NodeSet("n[1-4]") - held
    assert job in resolver.groups("sj")
    assert "debug" in resolver.groups("slurm")
    assert set(resolver.groups("st")) == {"allocated", "idle"}
    first = sorted(held)[0]
    assert job in resolver.node_groups(first, "sj")


def test_group_source_answers_are_cached(slurm, inside, resolver):
    job = inside(1)
    assert len(NodeSet(f"@sj:{job}", resolver=resolver)) == 1
    slurm.cancel_all()
    # the job is gone, but for SLURM_CACHE_TIME the source keeps its answer
    assert len(NodeSet(f"@sj:{job}", resolver=resolver)) == 1
    resolver.source("sj").clear_cache()
    assert len(NodeSet(f"@sj:{job}", resolver=resolver)) == 0


# -- servers over srun --------------------------------------------------------------------


def test_servers_start_in_parallel_and_answer(slurm, inside):
    job = inside(4)
    clients = clients_from_slurm(Client)
    try:
        assert [c.eval(NODENAME) for c in clients] == ["n1", "n2", "n3", "n4"]
        assert [c.eval("6 * 7") for c in clients] == [42] * 4
        assert len({c.server_pid for c in clients}) == 4
        big = clients[1].eval("b'x' * (8 << 20)")
        assert big == b"x" * (8 << 20)
        assert len(our_steps(slurm, job)) == 4  # one step per node
    finally:
        for c in clients:
            c.close()
    assert our_steps(slurm, job) == []


def test_cluster_from_slurm_runs_on_every_allocated_node(slurm, inside):
    job = inside(3)
    with Cluster.from_slurm() as cluster:
        names = cluster.call("eval", NODENAME)
        assert names.failed == {}, names.summary()
        assert sorted(names.succeeded.values()) == ["n1", "n2", "n3"]
        assert len(our_steps(slurm, job)) == 3
    assert our_steps(slurm, job) == []
    with Cluster.from_slurm(nodes="n2") as cluster:
        assert list(cluster.call("eval", NODENAME).succeeded.values()) == ["n2"]
    with pytest.raises(ConfigError, match="not in SLURM allocation"):
        Cluster.from_slurm(nodes=["n1", "n4"])
    assert our_steps(slurm, job) == []


def test_from_spec_srun_node(slurm, inside):
    job = inside(2)
    with Client.from_spec("srun:n2") as c:
        assert c.eval(NODENAME) == "n2"
        assert c.eval("__import__('os').environ['SLURM_JOB_ID']") == job
    other = slurm.allocate(1)  # an allocation named by jobid=, not the current one
    node = slurm.run("squeue", "-h", "-j", other, "-o", "%N").strip()
    with Client.from_spec(f"srun:{node}:jobid={other}") as c:
        assert c.eval(NODENAME) == node


def test_closing_a_stuck_server_cancels_its_step(slurm, inside):
    job = inside(1)
    c = Client.from_spec("srun:n1")
    pid = c.server_pid
    os.kill(pid, signal.SIGSTOP)  # stuck: it will never read the end of its stdin
    c.close()
    assert our_steps(slurm, job) == []
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30, "the server to be gone")


def test_node_set_down_mid_run(healed, inside):
    slurm = healed
    job = inside(3)
    assert slurm.run("squeue", "-h", "-j", job, "-o", "%N").strip() == "n[1-3]"
    clients = clients_from_slurm(Client)
    try:
        pending = {
            c.peername: c.eval("__import__('time').sleep(3) or 1", nonblocking=True)
            for c in clients
        }
        slurm.run("scontrol", "update", "nodename=n2", "state=down", "reason=test")
        with pytest.raises(ConnectionLost):
            pending["n2"].wait(timeout=40)
        assert pending["n1"].wait(timeout=40) == 1
        assert pending["n3"].wait(timeout=40) == 1
        assert clients[0].eval(NODENAME) == "n1"  # the allocation survived (--no-kill)
        with pytest.raises(ConnectionLost):
            clients[1].eval("1")
    finally:
        for c in clients:
            c.close()


@pytest.mark.timeout(150)
def test_slurmd_killed_mid_call(healed, inside):
    slurm = healed
    job = inside(2)
    clients = clients_from_slurm(Client)
    try:
        pending = clients[1].eval("__import__('time').sleep(600)", nonblocking=True)
        victim = slurm.slurmd[clients[1].peername]
        victim.kill()
        victim.wait()
        # SLURM declares the node DOWN after SlurmdTimeout; then its step ends, and so
        # does the connection: a clear error, not a wait as long as the call's
        with pytest.raises(ConnectionLost):
            pending.wait(timeout=120)
        assert clients[0].eval("1 + 1") == 2
    finally:
        for c in clients:
            c.close()
    assert job


def test_allocation_cancelled_while_calls_pending(slurm, inside, monkeypatch):
    job = inside(2)
    clients = clients_from_slurm(Client)
    try:
        pending = [c.eval("__import__('time').sleep(600)", nonblocking=True) for c in clients]
        slurm.run("scancel", job)
        for resp in pending:
            with pytest.raises(ConnectionLost):
                resp.wait(timeout=40)
    finally:
        for c in clients:
            c.close()
    # the environment still names the job: srun's refusal is reported as its end
    with pytest.raises(ConnectionLost, match=f"SLURM job {job} has ended"):
        Client.from_spec("srun:n1")
    monkeypatch.delenv("SLURM_JOB_NODELIST")  # now squeue is asked, before any srun
    with pytest.raises(ConfigError, match=f"SLURM job {job} is (unknown|CANCELLED|COMPLETING)"):
        Client.from_spec("srun:n1")


# -- clear errors -------------------------------------------------------------------------


def test_srun_missing_from_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n1")
    with pytest.raises(ConfigError, match="srun not found on PATH"):
        Client.from_spec("srun:n1")


def test_outside_any_allocation(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOBID", raising=False)
    with pytest.raises(ConfigError, match="not inside a SLURM allocation"):
        Client.from_spec("srun:n1")
    with pytest.raises(ConfigError, match="not inside a SLURM allocation"):
        clients_from_slurm(Client)


def test_node_not_in_the_allocation(slurm, inside):
    job = inside(2)
    held = NodeSet(os.environ["SLURM_JOB_NODELIST"])
    outsider = sorted(NodeSet("n[1-4]") - held)[0]
    with pytest.raises(ConfigError, match=f"node {outsider} is not in SLURM allocation {job}"):
        Client.from_spec(f"srun:{outsider}")
    with pytest.raises(ConfigError, match="not in SLURM allocation"):
        clients_from_slurm(Client, nodes=[*held, outsider])
    assert our_steps(slurm, job) == []  # refused before any step started


def test_srun_spec_errors():
    assert parse_srun_spec("srun:n1:jobid=12:compress=1") == {
        "node": "n1",
        "jobid": "12",
        "rpython": None,
        "srun": None,
        "enable_compression": True,
    }
    for bad, why in [
        ("srun:", "node name"),
        ("srun:-x", "node name"),
        ("srun:n1:user=x", "unknown or malformed option"),
        ("srun:n1:jobid=1:jobid=2", "duplicate"),
        ("srun:n1:jobid=", "empty"),
    ]:
        with pytest.raises(SpecError, match=why):
            parse_srun_spec(bad)
    with pytest.raises(ConfigError, match="bad SLURM job id"):
        launch_srun.current_jobid("12; rm -rf /")


def test_missing_remote_python_is_named(slurm, inside):
    job = inside(1)
    node = os.environ["SLURM_JOB_NODELIST"]
    with pytest.raises(ConnectError, match=f"/nonexistent/python3 not found on {node}"):
        Client.from_spec(f"srun:{node}:rpython=/nonexistent/python3")
    assert our_steps(slurm, job) == []


def test_one_node_failing_to_start(healed, inside):
    slurm = healed
    job = inside(2)
    held = sorted(NodeSet(os.environ["SLURM_JOB_NODELIST"]))
    slurm.run("scontrol", "update", f"nodename={held[1]}", "state=down", "reason=test")
    # the environment still lists both nodes, as it would inside salloc
    with pytest.raises(ConnectionLost, match=held[1]):
        clients_from_slurm(Client)
    assert our_steps(slurm, job) == []  # the good node's client was closed, its step ended
    got = clients_from_slurm(Client, return_exceptions=True)
    try:
        assert isinstance(got[1], ConnectionLost)
        assert got[0].eval(NODENAME) == held[0]
    finally:
        for c in got:
            if isinstance(c, Client):
                c.close()
