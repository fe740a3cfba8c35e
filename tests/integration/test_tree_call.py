"""Python calls through the tree (``Cluster(..., topology=...)``, ``Task.call`` with a
topology) over real networks of namespaces (tests/netns.py), each host a real sshd.

The ``netns`` network lets the admin reach gateways only: every node is reached by
logging in to one of its gateways (a direct connection fails, checked below). The
``direct`` network also lets the admin reach the nodes (a gateway forwards in the
kernel), so the same calls run flat and through the tree and are compared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from netns import build_network, require_netns

from easycluster.cluster.session import Cluster, CommandResult
from easycluster.cluster.task import Task
from easycluster.cluster.tree import tree_shell
from easycluster.errors import ConnectionLost

TOPOLOGY = "admin: gw[1-3]\ngw1: node[1-2]\ngw[2-3]: node[3-4]\n"


def _getenv(name):  # (not importable on the hosts: sent by value from inside a function)
    def getenv(name):
        import os

        return os.environ.get(name)

    return getenv


getenv = _getenv(None)
peer = lambda: os.environ.get("SSH_CONNECTION", "").split()[0]  # noqa: E731 (by value)
pid = lambda: os.getpid()  # noqa: E731


def _raiser():
    def maybe_raise(node):
        import os

        if os.environ.get("EC_NODE") == node:
            raise ValueError(f"boom on {node}")
        return len(node)

    return maybe_raise


maybe_raise = _raiser()


def _waiter():
    def wait_for(directory):
        """Mark a start (one file line per run), then wait for the file ``go``."""
        import os
        import time

        me = os.environ["EC_NODE"]
        with open(os.path.join(directory, me), "a") as f:
            f.write("run\n")
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(directory, "go")):
            if time.monotonic() > deadline:
                return "gave up"
            time.sleep(0.05)
        return me

    return wait_for


wait_for = _waiter()


def _cluster(net, nodes="node[1-4]", topology=TOPOLOGY, **kw):
    kw.setdefault("connect_timeout", 5)
    return Cluster(nodes, topology=topology, extra_args=["-F", net.config], **kw)


def _until(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _signal_all(net, gw, sig):
    """Send ``sig`` to every process in ``gw``'s namespace (SIGSTOP: frozen, not dead)."""
    out = subprocess.run(
        ["ip", "netns", "pids", net.gateways[gw].netns], capture_output=True, text=True, timeout=10
    )
    for p in out.stdout.split():
        try:
            os.kill(int(p), sig)
        except ProcessLookupError:
            pass


# -- through gateways only ----------------------------------------------------------


def test_calls_reach_each_node_through_its_gateway_and_reuse_the_sessions(netns):
    direct = subprocess.run(
        netns.ssh_argv("node1", "true"), capture_output=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert direct.returncode == 255  # the admin has no way to the nodes but the gateways
    with _cluster(netns) as c:
        assert c.unreachable == {}
        names = c.call(getenv, "EC_NODE")
        assert names.succeeded == {f"node{i}": f"node{i}" for i in range(1, 5)}
        # each node's session was opened by a gateway (its group-side address)
        peers = c.call(peer).succeeded
        group_side = {f"{netns.prefix}.1.1", f"{netns.prefix}.2.1", f"{netns.prefix}.2.2"}
        assert set(peers.values()) <= group_side, peers
        assert peers["node1"] == f"{netns.prefix}.1.1"
        first = c.call(pid).succeeded
        assert c.call(pid).succeeded == first  # same servers: the sessions were kept
        assert c.call("os.getenv", "EC_NODE").succeeded == names.succeeded  # a name
        assert c.tree is not None and c.tree.rerouted == []


def test_a_raising_node_gets_its_exception_and_the_others_their_values(netns):
    with _cluster(netns) as c:
        r = c.call(maybe_raise, "node3")
    assert isinstance(r["node3"], ValueError) and str(r["node3"]) == "boom on node3"
    assert r.succeeded == {"node1": 5, "node2": 5, "node4": 5}
    assert r.outcomes["node3"].kind.value == "raised"
    assert "node3" in r.summary()


def test_a_deeper_topology_calls_through_two_gateways(netns):
    deep = "admin: gw1\ngw1: gw2\ngw2: node[3-4]\n"
    with _cluster(netns, "node[3-4]", deep) as c:
        assert c.call(getenv, "EC_NODE").succeeded == {"node3": "node3", "node4": "node4"}
        assert set(c.call(peer).succeeded.values()) == {f"{netns.prefix}.2.1"}  # gw2's


def test_a_node_unreachable_from_its_gateway_is_named(netns):
    netns.link_down("node2")
    try:
        with _cluster(netns, connect_timeout=3) as c:
            r = c.call(getenv, "EC_NODE")
    finally:
        netns.link_up("node2")
    assert list(c.unreachable) == ["node2"]
    assert r.outcomes["node2"].kind.value == "unreachable"
    assert isinstance(r["node2"], ConnectionLost)
    assert r.succeeded == {"node1": "node1", "node3": "node3", "node4": "node4"}
    assert "node2" in r.summary()


def test_an_unreachable_gateway_fails_over_to_its_partner(netns):
    netns.kill_gateway("gw2")
    try:
        with _cluster(netns, "node[3-4]", connect_timeout=3) as c:
            r = c.call(getenv, "EC_NODE")
            peers = c.call(peer).succeeded
    finally:
        netns.revive_gateway("gw2")
    assert r.succeeded == {"node3": "node3", "node4": "node4"}
    assert set(peers.values()) == {f"{netns.prefix}.2.2"}  # all through gw3


def test_a_gateway_killed_mid_call_fails_over_or_loses_its_nodes_at_once(netns, tmp_path):
    d = str(tmp_path)
    with _cluster(netns) as c:
        box = {}
        runner = threading.Thread(target=lambda: box.update(r=c.call(wait_for, d)))
        runner.start()
        try:
            _until(lambda: all(os.path.exists(f"{d}/node{i}") for i in range(1, 5)), "no start")
            netns.kill_gateway("gw1")  # node[1-2]: no other gateway
            netns.kill_gateway("gw2")  # node3 (routed through gw2): gw3 takes it over
            _until(lambda: "r" in box or _runs(d, "node3") == 2, "node3 was not rerun")
            open(f"{d}/go", "w").close()
            runner.join(90)
            assert not runner.is_alive(), "the call did not return after its gateways died"
        finally:
            open(f"{d}/go", "a").close()
            runner.join(60)
            netns.revive_gateway("gw1")
            netns.revive_gateway("gw2")
        r = box["r"]
        assert r.succeeded == {"node3": "node3", "node4": "node4"}
        for node in ("node1", "node2"):
            assert r.outcomes[node].kind.value == "unreachable"
            assert isinstance(r[node], ConnectionLost) and "gateway gw1 lost" in str(r[node])
        assert _runs(d, "node3") == 2 and _runs(d, "node4") == 1
        assert "node3: gw2 -> gw3" in c.tree.rerouted, c.tree.rerouted
        # the next call: node[1-2] have no live gateway left, at once; the others go on
        again = c.call(getenv, "EC_NODE")
        assert again.succeeded == {"node3": "node3", "node4": "node4"}
        assert sorted(k for k, o in again.outcomes.items() if not o.succeeded) == [
            "node1",
            "node2",
        ]


def _runs(d, node):
    try:
        with open(os.path.join(d, node)) as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


# -- a frozen gateway (SIGSTOP): silent, not dead ------------------------------------


def test_a_frozen_gateway_mid_call_fails_over_or_ends_lost_after_the_silence(netns, tmp_path):
    d = str(tmp_path)
    with _cluster(netns, silence=3) as c:
        box = {}
        runner = threading.Thread(target=lambda: box.update(r=c.call(wait_for, d)))
        runner.start()
        try:
            _until(lambda: all(os.path.exists(f"{d}/node{i}") for i in range(1, 5)), "no start")
            _signal_all(netns, "gw1", signal.SIGSTOP)
            _signal_all(netns, "gw2", signal.SIGSTOP)
            _until(lambda: "r" in box or _runs(d, "node3") == 2, "node3 was not rerun")
            open(f"{d}/go", "w").close()
            runner.join(90)
            assert not runner.is_alive(), "the call hung on a frozen gateway"
        finally:
            open(f"{d}/go", "a").close()
            _signal_all(netns, "gw1", signal.SIGCONT)
            _signal_all(netns, "gw2", signal.SIGCONT)
            runner.join(60)
    r = box["r"]
    assert r.succeeded == {"node3": "node3", "node4": "node4"}
    for node in ("node1", "node2"):
        assert r.outcomes[node].kind.value == "unreachable"
        assert "gateway gw1 lost" in str(r[node]) and "within 3 s" in str(r[node])


def test_a_frozen_gateway_mid_command_fails_over_or_ends_lost(netns, tmp_path):
    d = str(tmp_path)
    command = f'touch {d}/"$EC_NODE"; while [ ! -e {d}/go ]; do sleep 0.1; done; echo "$EC_NODE"'
    box = {}
    runner = threading.Thread(
        target=lambda: box.update(
            r=tree_shell(command, "node[1-4]", TOPOLOGY, ["-F", netns.config], silence=3)
        )
    )
    runner.start()
    try:
        _until(lambda: all(os.path.exists(f"{d}/node{i}") for i in range(1, 5)), "no start")
        _signal_all(netns, "gw1", signal.SIGSTOP)
        _signal_all(netns, "gw2", signal.SIGSTOP)
        time.sleep(0.5)  # (not a sync: lets the admin's reads stall on the frozen ones)
        open(f"{d}/go", "w").close()
        runner.join(90)
        assert not runner.is_alive(), "tree_shell hung on a frozen gateway"
    finally:
        open(f"{d}/go", "a").close()
        _signal_all(netns, "gw1", signal.SIGCONT)
        _signal_all(netns, "gw2", signal.SIGCONT)
        runner.join(60)
    result = box["r"]
    assert str(result.lost) == "node[1-2]"
    assert any("gateway gw1 lost" in why for _, why in result.reasons)
    assert {str(g.nodes): g.stdout for g in result.groups if g.status == "hup"} == {
        "node3": b"node3",
        "node4": b"node4",
    }


# -- Task.call with a topology --------------------------------------------------------


def test_task_call_with_a_topology_goes_through_the_gateways(netns):
    task = Task()
    task.set_info("ssh_options", f"-F {netns.config}")
    task.set_info("connect_timeout", 5)
    task.load_topology(TOPOLOGY)
    try:
        got = task.call(getenv, "EC_NODE", nodes="node[1-4],nosuchhost")
        assert {n: v for n, v in got.items() if n != "nosuchhost"} == {
            f"node{i}": f"node{i}" for i in range(1, 5)
        }
        assert isinstance(got["nosuchhost"], ConnectionLost)  # tried directly, named
        first = task.call(pid, nodes="node[1-4]")
        assert task.call(pid, nodes="node[1-4]") == first  # the gateways kept the sessions
        raised = task.call(maybe_raise, "node1", nodes="node[1-2]")
        assert isinstance(raised["node1"], ValueError) and raised["node2"] == 5
    finally:
        task.close_sessions()


# -- flat and tree side by side -------------------------------------------------------

DIRECT_TOPOLOGY = "admin: gw[1-2]\ngw[1-2]: node[1-3]\n"


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    require_netns()
    nodes = ["node1", "node2", "node3"]
    with build_network(str(tmp_path_factory.mktemp("treecall")), [(["gw1", "gw2"], nodes)]) as n:
        n.allow_direct()
        yield n


def _facts(results):
    def fact(value):
        if isinstance(value, CommandResult):
            return (value.rc, value.stdout, value.stderr)
        if isinstance(value, BaseException):
            return (type(value).__name__, str(value), getattr(value, "__notes__", None))
        return value

    return (
        {k: fact(v) for k, v in results.items()},
        dict(results.outcomes),
        results.summary(),
        results.exit_code(),
    )


def test_tree_results_equal_flat_results(direct):
    got = {}
    for mode, topology in (("flat", None), ("tree", DIRECT_TOPOLOGY)):
        with Cluster(
            "node[1-3],nosuchhost", topology=topology, extra_args=["-F", direct.config],
            connect_timeout=5,
        ) as c:  # fmt: skip
            got[mode] = (
                _facts(c.call(getenv, "EC_NODE")),
                _facts(c.call(maybe_raise, "node2")),
                _facts(c.call("os.getenv", "EC_NODE")),
                _facts(c.run('echo "$EC_NODE"; echo err >&2; [ "$EC_NODE" != node3 ]')),
                sorted(c.unreachable),
            )
            assert (c.tree is None) == (mode == "flat")
    assert got["tree"] == got["flat"]
    values, outcomes, _, _ = got["tree"][1]
    assert values["node2"][:2] == ("ValueError", "boom on node2")
    assert got["tree"][4] == ["nosuchhost"]
