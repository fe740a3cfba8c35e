"""``easycluster farm --topology FILE`` (and the configured default topology, for the farm
and ``easycluster shell``) over a real network of namespaces (tests/netns.py): the admin
reaches the gateways only; each host's session is held by its gateway.

Each run is a real subprocess; its summary must account for every job.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT
from netns import build_network, require_netns

TOPOLOGY = "admin: gw[1-3]\ngw1: node[1-2]\ngw[2-3]: node[3-4]\n"
SUMMARY = re.compile(r"(\d+) jobs: (\d+) done, (\d+) failed, (\d+) not run")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """This module's own network (a test below kills a gateway)."""
    require_netns()
    groups = [(["gw1"], ["node1", "node2"]), (["gw2", "gw3"], ["node3", "node4"])]
    with build_network(str(tmp_path_factory.mktemp("netns")), groups) as network:
        yield network


@pytest.fixture
def topo(tmp_path):
    path = tmp_path / "topology.conf"
    path.write_text(TOPOLOGY)
    return str(path)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "EASYCLUSTER_TOPOLOGY"}
    env["XDG_CONFIG_HOME"] = "/nonexistent"  # no topology of the user's
    env.update(extra)
    return env


def _run(argv, env=None, timeout=180):
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, out, err


def _farm(net, *args):
    return [
        sys.executable, "-m", "easycluster.cli.farm", "--ssh-options", f"-F {net.config}",
        "--no-status", "--connect-timeout", "5", *args,
    ]  # fmt: skip


def _counts(err, total):
    m = SUMMARY.search(err)
    assert m, err
    got = tuple(int(x) for x in m.groups())
    assert got[0] == total and sum(got[1:]) == total, err
    return got


def _joblog(path):
    with open(path) as f:
        lines = f.read().splitlines()[1:]
    return [line.split("\t") for line in lines]


def test_jobs_run_on_their_hosts_through_the_gateways(net, topo, tmp_path):
    direct = subprocess.run(
        net.ssh_argv("node1", "true"), capture_output=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert direct.returncode == 255  # the admin has no way to the nodes but the gateways
    log = tmp_path / "run.log"
    jobs = ["echo $EC_NODE ${SSH_CONNECTION%% *}"] * 16 + ["exit 7"]
    args = ["--topology", topo, "-w", "node[1-4]", "--joblog", str(log)]
    for j in jobs:
        args += ["-j", j]
    rc, out, err = _run(_farm(net, *args))
    assert rc == 250, err  # the one job that exits 7
    assert _counts(err, 17) == (17, 16, 1, 0)
    assert "failed (failed, exit 7): job 17" in err
    group_side = {f"{net.prefix}.1.1", f"{net.prefix}.2.1", f"{net.prefix}.2.2"}
    lines = out.splitlines()
    assert len(lines) == 16
    for line in lines:  # "SEQ HOST: node peer": each job ran on the host it names
        seq, host, node, peer = re.match(r"(\d+) (\S+): (\S+) (\S+)$", line).groups()
        assert host == node and peer in group_side, line
    rows = _joblog(log)
    assert sorted(int(r[0]) for r in rows) == list(range(1, 18))
    assert {r[5] for r in rows} == {"done", "failed"}


def test_a_gateway_killed_mid_farm_its_jobs_rerun_through_the_others(net, topo, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "job.sh"
    script.write_text(
        f"touch {work}/$1.$EC_NODE\n"
        f"i=0; while [ ! -e {work}/go ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done\n"
        "echo $EC_NODE\n"
    )
    log = tmp_path / "run.log"
    args = ["--topology", topo, "-w", "node[1-4]", "--joblog", str(log), "--heartbeat", "1"]
    for i in range(1, 9):
        args += ["-j", f"sh {script} {i}"]
    proc = subprocess.Popen(
        _farm(net, *args), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not any(n.endswith(("node1", "node2")) for n in os.listdir(work)):
            assert time.monotonic() < deadline and proc.poll() is None, "no job behind gw1"
            time.sleep(0.05)
        net.kill_gateway("gw1")
        (work / "go").write_text("")
        out, err = proc.communicate(timeout=180)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        net.revive_gateway("gw1")
    assert proc.returncode == 0, err
    assert _counts(err, 8) == (8, 8, 0, 0)
    # (a host whose session was still opening when gw1 died is unreachable: no job ran)
    assert re.search(r"hosts retired \(lost\): node(1|2|\[1-2\])(:|$)", err, re.M), err
    rows = _joblog(log)
    lost = [r for r in rows if r[5] == "lost"]
    done = [r for r in rows if r[5] == "done"]
    assert lost and all(r[1] in ("node1", "node2") for r in lost)
    assert sorted(int(r[0]) for r in done) == list(range(1, 9))  # every job, once done
    assert {r[0] for r in lost} <= {r[0] for r in done if r[1] in ("node3", "node4")}


def test_the_configured_topology_is_the_default_and_no_topology_goes_flat(net, topo):
    env = _env(EASYCLUSTER_TOPOLOGY=topo)
    rc, out, err = _run(_farm(net, "-w", "node[1-2]", "-j", "echo $EC_NODE"), env=env)
    assert rc == 0, err
    assert re.match(r"1 (node[12]): \1$", out.strip()), out
    # --no-topology: straight to the node, which the admin cannot reach
    rc, out, err = _run(
        _farm(net, "--no-topology", "-w", "node1", "-j", "true"), env=env, timeout=120
    )
    assert rc == 254, err
    assert "not run" in err and "unreachable" in err
    shell = [sys.executable, "-m", "easycluster", "shell", "-o", f"-F {net.config}"]
    rc, out, err = _run(shell + ["-w", "node[1-2]", "echo", "$EC_NODE"], env=env)
    assert rc == 0, err
    assert sorted(out.splitlines()) == ["node1: node1", "node2: node2"]
    rc, out, err = _run(shell + ["--no-topology", "-w", "node1", "true"], env=env)
    assert rc != 0 and "node1" in err
    # an XDG config file is found the same way
    rc, out, err = _run(
        _farm(net, "-w", "node3", "-j", "echo $EC_NODE"),
        env=_env(XDG_CONFIG_HOME=os.path.dirname(os.path.dirname(topo)) + "/cfg"),
    )
    assert rc == 254  # (no such file there: flat, and node3 is out of reach)


def test_topology_with_local_workers_is_a_usage_error(topo):
    rc, out, err = _run(
        [sys.executable, "-m", "easycluster.cli.farm", "--topology", topo, "-R", "local",
         "-n", "a", "-j", "true"]
    )  # fmt: skip
    assert rc == 2 and "--topology" in err
