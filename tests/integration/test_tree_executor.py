"""``ClusterExecutor(nodes, topology=...)`` and ``Cluster(..., topology=...).map`` over a
real network of namespaces (tests/netns.py): the admin reaches the gateways only, and
each node's session is held by its gateway (``cluster/treerelay.py``).

Topology: ``gw1`` serves ``node[1-2]``; ``gw2`` and ``gw3`` both serve ``node[3-4]``.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time

import pytest
from netns import build_network, require_netns

from easycluster.cluster.execpool import NoHostsLeft, RemoteTraceback, WorkLost
from easycluster.cluster.executor import ClusterExecutor
from easycluster.cluster.session import Cluster

TOPOLOGY = "admin: gw[1-3]\ngw1: node[1-2]\ngw[2-3]: node[3-4]\n"
NODES = {"node1", "node2", "node3", "node4"}


def _where():  # (sent by value: the hosts cannot import this test module)
    def where(x):
        import os

        peer = os.environ.get("SSH_CONNECTION", "").split()[:1]
        return x, os.environ.get("EC_NODE"), peer[0] if peer else None

    return where


where = _where()


def _raiser():
    def maybe_raise(x):
        if x == 3:
            raise ValueError(f"boom at {x}")
        return x * 10

    return maybe_raise


maybe_raise = _raiser()


def _waiter():
    def wait_then_say(directory, x):
        """Mark the start (a file per item and node), then wait for ``go``."""
        import os
        import time

        me = os.environ["EC_NODE"]
        with open(os.path.join(directory, f"{x}.{me}"), "a") as f:
            f.write("run\n")
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(directory, "go")):
            if time.monotonic() > deadline:
                return x, "gave up"
            time.sleep(0.05)
        return x, me

    return wait_then_say


wait_then_say = _waiter()


def _executor(net, nodes="node[1-4]", topology=TOPOLOGY, **kw):
    kw.setdefault("connect_timeout", 5)
    return ClusterExecutor(nodes, topology=topology, extra_args=["-F", net.config], **kw)


def _until(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _started(directory):
    return [n for n in os.listdir(directory) if n != "go"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """This module's own network (tests below kill and freeze its gateways)."""
    require_netns()
    groups = [(["gw1"], ["node1", "node2"]), (["gw2", "gw3"], ["node3", "node4"])]
    with build_network(str(tmp_path_factory.mktemp("netns")), groups) as network:
        yield network


def test_map_runs_on_the_nodes_through_their_gateways_only(net):
    direct = subprocess.run(
        net.ssh_argv("node1", "true"), capture_output=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert direct.returncode == 255  # the admin has no way to the nodes but the gateways
    group_side = {f"{net.prefix}.1.1", f"{net.prefix}.2.1", f"{net.prefix}.2.2"}
    with _executor(net) as ex:
        got = list(ex.map(where, range(60), chunksize=1))
        assert [g[0] for g in got] == list(range(60))
        assert {g[1] for g in got} <= NODES
        assert {g[2] for g in got} <= group_side  # each node's session came from a gateway
        chunked = list(ex.map(where, range(200)))
        assert [g[0] for g in chunked] == list(range(200))
        assert ex.submit(where, "x").result(60)[1] in NODES


def test_an_exception_reaches_its_future_with_the_remote_traceback(net):
    with _executor(net, "node[1-2]") as ex:
        fut = ex.submit(maybe_raise, 3)
        with pytest.raises(ValueError, match="boom at 3") as info:
            fut.result(60)
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "maybe_raise" in str(info.value.__cause__)
        assert ex.submit(maybe_raise, 4).result(60) == 40
        it = ex.map(maybe_raise, range(6), chunksize=2)
        assert [next(it) for _ in range(3)] == [0, 10, 20]
        with pytest.raises(ValueError, match="boom at 3"):
            next(it)


def test_cluster_map_runs_through_the_topology(net):
    with Cluster(
        "node[1-4]", topology=TOPOLOGY, extra_args=["-F", net.config], connect_timeout=5
    ) as c:
        assert c.unreachable == {}
        got = c.map(where, range(30))
        assert [g[0] for g in got] == list(range(30))
        assert {g[1] for g in got} <= NODES
        again = c.map(maybe_raise, [1, 2], chunksize=1)  # the gateway links are kept
        assert again == [10, 20]
        with pytest.raises(ValueError, match="boom at 3"):
            c.map(maybe_raise, range(5))
        assert c.relay is not None and set(c.relay.links) <= {"gw1", "gw2", "gw3"}


def test_a_dead_gateway_is_passed_over_when_connecting(net):
    # gw9 does not exist: node[1-2] split between gw1 and gw9, then all go through gw1
    topo = "admin: gw[1,9]\ngw[1,9]: node[1-2]\n"
    with _executor(net, "node[1-2]", topo) as ex:
        got = list(ex.map(where, range(20), chunksize=1))
    assert [g[0] for g in got] == list(range(20))
    assert {g[2] for g in got} == {f"{net.prefix}.1.1"}


def test_a_node_its_gateway_cannot_reach_is_unreachable_and_named(net):
    net.link_down("node2")
    try:
        with _executor(net, "node2", connect_timeout=3) as ex:
            fut = ex.submit(where, 1)
            with pytest.raises(NoHostsLeft) as info:
                fut.result(120)
        text = str(info.value)
        assert "node2" in text and "unreachable" in text and "gw1" in text
        with _executor(net, "node[1-2]", connect_timeout=3) as ex:  # node1 does the work
            got = list(ex.map(where, range(10), chunksize=1))
        assert {g[1] for g in got} == {"node1"}
    finally:
        net.link_up("node2")


def test_a_gateway_killed_mid_map_its_work_reruns_on_the_other_nodes(net, tmp_path):
    ex = _executor(net, heartbeat=2.0)
    try:
        futs = [ex.submit(wait_then_say, str(tmp_path), x) for x in range(12)]
        _until(
            lambda: any(n.endswith(("node1", "node2")) for n in _started(tmp_path)),
            "no item started behind gw1",
        )
        net.kill_gateway("gw1")
        (tmp_path / "go").write_text("")
        got = [f.result(120) for f in futs]  # every item accounted for, no hang
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        net.revive_gateway("gw1")
    assert [g[0] for g in got] == list(range(12))
    assert all(g[1] in ("node3", "node4") or g[1] in ("node1", "node2") for g in got)
    before = {n.split(".")[0] for n in _started(tmp_path) if n.endswith(("node1", "node2"))}
    finished_behind_gw1 = {str(g[0]) for g in got if g[1] in ("node1", "node2")}
    assert before - finished_behind_gw1  # some item behind gw1 was rerun elsewhere


def test_the_only_gateway_killed_mid_map_every_item_ends_with_an_error(net, tmp_path):
    ex = _executor(net, "node[1-2]", heartbeat=2.0)
    try:
        futs = [ex.submit(wait_then_say, str(tmp_path), x) for x in range(6)]
        _until(lambda: len(_started(tmp_path)) >= 2, "no item started")
        net.kill_gateway("gw1")
        done, pending = concurrent.futures.wait(futs, timeout=120)
        assert not pending  # no hang: each future has its outcome
        for f in done:
            assert isinstance(f.exception(), (WorkLost, NoHostsLeft)), f.exception()
        assert any("gw1" in str(f.exception()) for f in done)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        (tmp_path / "go").write_text("")
        net.revive_gateway("gw1")


def test_a_frozen_gateway_loses_its_nodes_and_their_work_moves(net, tmp_path):
    pids = subprocess.run(
        ["ip", "netns", "pids", net.gateways["gw2"].netns],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.split()
    topo = "admin: gw[1-2]\ngw1: node[1-2]\ngw2: node[3-4]\n"
    ex = _executor(net, topology=topo, heartbeat=2.0, silence=4.0)
    stopped = []
    try:
        futs = [ex.submit(wait_then_say, str(tmp_path), x) for x in range(8)]
        _until(
            lambda: any(n.endswith(("node3", "node4")) for n in _started(tmp_path)),
            "no item started behind gw2",
        )
        now = subprocess.run(
            ["ip", "netns", "pids", net.gateways["gw2"].netns],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()
        for p in set(now) - set(pids):  # the gateway server and its ssh clients
            os.kill(int(p), signal.SIGSTOP)
            stopped.append(int(p))
        (tmp_path / "go").write_text("")
        got = [f.result(120) for f in futs]
    finally:
        for p in stopped:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        ex.shutdown(wait=True, cancel_futures=True)
    assert [g[0] for g in got] == list(range(8))
    assert {g[1] for g in got} <= {"node1", "node2"}  # the frozen gateway's work moved


def test_a_deeper_topology_runs_through_two_gateways(net):
    deep = "admin: gw1\ngw1: gw2\ngw2: node[3-4]\n"
    with _executor(net, "node[3-4]", deep) as ex:
        got = list(ex.map(where, range(20), chunksize=1))
        assert [g[0] for g in got] == list(range(20))
        assert {g[1] for g in got} <= {"node3", "node4"}
        assert {g[2] for g in got} == {f"{net.prefix}.2.1"}  # gw2's group-side address
        with pytest.raises(ValueError, match="boom at 3"):
            ex.submit(maybe_raise, 3).result(60)
