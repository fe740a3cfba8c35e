"""Tree mode behind the Task and the shell CLI: the same events, results, output and exit
codes as flat, over real gateways (tests/netns.py: namespaces, a real sshd each).

This module's network lets the admin reach the nodes directly too (``allow_direct``:
the first gateway forwards in the kernel), so the same command runs flat and through
the tree; test_tree.py proves that tree mode needs no direct route.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

import pytest
from netns import build_network, require_netns

from easycluster.cluster.engine import LINE_MAX
from easycluster.cluster.events import EventHandler, Piece
from easycluster.cluster.task import Task
from easycluster.cluster.tree import open_gateway, options, tree_shell
from easycluster.errors import TaskTimeout

NODES = "node[1-6]"
TOPOLOGY = "admin: gw[1-2]\ngw[1-2]: node[1-6]\n"  # each node: gw1 or gw2 (failover)
ONE_GW = "admin: gw1\ngw1: node[1-6]\n"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_netns()
    nodes = [f"node{i}" for i in range(1, 7)]
    with build_network(str(tmp_path_factory.mktemp("treetask")), [(["gw1", "gw2"], nodes)]) as n:
        n.allow_direct()
        yield n


class Recorder(EventHandler):
    """Every event, per node in order, and the worker's own events."""

    def __init__(self) -> None:
        self.per_node: Dict[str, List[Tuple]] = {}
        self.worker_events: List[str] = []

    def ev_start(self, worker):
        self.worker_events.append("start")

    def ev_pickup(self, worker, node):
        self.per_node.setdefault(node, []).append(("pickup",))

    def ev_read(self, worker, node, sname, msg):
        self.per_node.setdefault(node, []).append(("read", sname, msg))

    def ev_hup(self, worker, node, rc):
        self.per_node.setdefault(node, []).append(("hup", rc))

    def ev_timeout(self, worker):
        self.worker_events.append("timeout")

    def ev_close(self, worker, timedout):
        self.worker_events.append(f"close {timedout}")


def _task(net, topology=None, connect_timeout=10) -> Task:
    task = Task()
    task.set_info("ssh_options", f"-F {net.config}")
    task.set_info("connect_timeout", connect_timeout)
    if topology is not None:
        task.load_topology(topology)
    return task


def _outcome(task: Task, worker, nodes):
    return {
        "buffers": sorted((out, sorted(keys)) for out, keys in task.iter_buffers()),
        "errors": sorted((err, sorted(keys)) for err, keys in task.iter_errors()),
        "retcodes": sorted((rc, sorted(keys)) for rc, keys in task.iter_retcodes()),
        "status": sorted((s, sorted(keys)) for s, keys in task.iter_status()),
        "max": task.max_retcode(),
        "per_node": {
            n: (
                task.node_buffer(n),
                task.node_error(n),
                task.node_retcode(n),
                worker.node_status(n),
            )
            for n in nodes
        },  # fmt: skip
    }


COMMAND = (
    'echo "$EC_NODE"; echo common; echo "err $EC_NODE" >&2; '
    'case "$EC_NODE" in node2) exit 3;; node5) exit 7;; esac'
)


def test_task_through_the_tree_matches_flat_events_and_results(net):
    nodes = [f"node{i}" for i in range(1, 7)]
    got = {}
    for mode, topology in (("flat", None), ("tree", TOPOLOGY)):
        task = _task(net, topology)
        rec = Recorder()
        worker = task.shell(COMMAND, nodes=NODES, handler=rec)
        task.resume(timeout=120)
        assert (mode, worker.backend.name) == (mode, "tree" if topology else "ssh")
        got[mode] = (_outcome(task, worker, nodes), rec.per_node, rec.worker_events)
    assert got["tree"] == got["flat"]
    outcome, per_node, worker_events = got["tree"]
    assert worker_events == ["start", "close False"]
    assert per_node["node2"][0] == ("pickup",) and per_node["node2"][-1] == ("hup", 3)
    assert outcome["max"] == 7


class Lengths(EventHandler):
    """Per node: each ev_read as (is a Piece, length)."""

    def __init__(self) -> None:
        self.reads: Dict[str, List[Tuple[bool, int]]] = {}

    def ev_read(self, worker, node, sname, msg):
        self.reads.setdefault(node, []).append((isinstance(msg, Piece), len(msg)))


def test_a_line_longer_than_line_max_arrives_in_the_same_pieces_as_flat(net):
    # 150,000 bytes on one line, then a short one: three reads flat (two Pieces)
    command = "head -c 150000 /dev/zero | tr '\\0' x; echo; echo end"
    got = {}
    for mode, topology in (("flat", None), ("tree", ONE_GW)):
        task = _task(net, topology)
        rec = Lengths()
        task.shell(command, nodes="node[1-2]", handler=rec)
        task.resume(timeout=120)
        assert task.node_buffer("node1") == b"x" * 150000 + b"\nend"
        got[mode] = rec.reads
    rest = 150000 - 2 * LINE_MAX
    assert got["flat"]["node1"] == [(True, LINE_MAX), (True, LINE_MAX), (False, rest), (False, 3)]
    assert got["tree"] == got["flat"]


def test_shell_cli_with_topology_prints_what_flat_prints(net, tmp_path):
    topo = tmp_path / "topology.conf"
    topo.write_text("[routes]\n" + TOPOLOGY)
    base = [sys.executable, "-m", "easycluster", "shell", "-o", f"-F {net.config}", "-w", NODES]
    runs = {}
    for mode, extra in (("flat", []), ("tree", ["--topology", str(topo)])):
        for gather in ([], ["-b"]):
            argv = base[:4] + extra + gather + base[4:] + [COMMAND]
            done = subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "NO_COLOR": "1"})  # fmt: skip
            lines = sorted(done.stdout.splitlines()) if not gather else done.stdout.splitlines()
            runs[(mode, tuple(gather))] = (done.returncode, lines, sorted(done.stderr.splitlines()))
    assert runs[("tree", ())] == runs[("flat", ())]
    # (and the topology is really used: through a gateway that does not exist, nothing runs)
    topo.write_text("admin: gwx\ngwx: node[1-6]\n")
    argv = base[:4] + ["--topology", str(topo), "-t", "3"] + base[4:] + ["true"]
    done = subprocess.run(argv, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert b"gateway gwx unreachable" in done.stderr and done.returncode != 0
    assert runs[("tree", ("-b",))] == runs[("flat", ("-b",))]
    assert runs[("tree", ())][0] != 0  # node2 and node5 failed: the summary's code


def test_unreachable_node_and_gateway_are_named_in_task_results(net):
    topo = "admin: gw[1-2]\ngw1: node[1-3]\ngw2: node[4-6]\n"
    net.link_down("node1")
    net.kill_gateway("gw2")
    try:
        task = _task(net, topo, connect_timeout=3)
        rec = Recorder()
        worker = task.shell("echo ok", nodes=NODES + ",nosuchhost", handler=rec)
        task.resume(timeout=120)
    finally:
        net.revive_gateway("gw2")
        net.link_up("node1")
    status = {s: sorted(keys) for s, keys in task.iter_status()}
    assert status == {
        "hup": ["node2", "node3"],
        "unreachable": ["node1", "node4", "node5", "node6", "nosuchhost"],
    }
    for node in ("node4", "node5", "node6"):
        assert b"gateway gw2 unreachable" in task.node_error(node)
        assert rec.per_node[node][-1] == ("hup", 255)
    assert task.node_error("node1")  # ssh's own message, from gw1
    assert worker.node_retcode("node1") == 255
    assert rec.worker_events == ["start", "close False"]


def test_gateway_killed_mid_run_its_nodes_rerun_through_the_other(net, tmp_path):
    # Every node waits for the file "go"; one that already started once says "rerun".
    d = str(tmp_path)
    command = (
        f'if [ -e {d}/"$EC_NODE" ]; then echo rerun; else touch {d}/"$EC_NODE"; '
        f"while [ ! -e {d}/go ]; do sleep 0.1; done; echo first; fi"
    )
    task = _task(net, TOPOLOGY)
    rec = Recorder()
    worker = task.shell(command, nodes=NODES, handler=rec)
    runner = threading.Thread(target=task.resume, kwargs={"timeout": 120})
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not all(os.path.exists(f"{d}/node{i}") for i in range(1, 7)):
            assert time.monotonic() < deadline, "the commands never started"
            time.sleep(0.05)
        net.kill_gateway("gw1")
        open(f"{d}/go", "w").close()
        runner.join(90)
        assert not runner.is_alive(), "the Task did not end after its gateway died"
    finally:
        open(f"{d}/go", "a").close()
        runner.join(60)
        net.revive_gateway("gw1")
    outputs = {n: task.node_buffer(n) for n in (f"node{i}" for i in range(1, 7))}
    rerun = sorted(n for n, out in outputs.items() if out == b"rerun")
    assert len(rerun) == 3 and sorted(set(outputs.values())) == [b"first", b"rerun"]
    assert {s: len(k) for s, k in task.iter_status()} == {"hup": 6}
    assert all(events[-1] == ("hup", 0) for events in rec.per_node.values())
    assert all(sum(e[0] == "hup" for e in events) == 1 for events in rec.per_node.values())
    assert worker.run is not None and any("gw1 -> gw2" in r for r in worker.run.rerouted)


def test_task_timeout_stops_the_gateways_and_their_commands(net):
    task = _task(net, TOPOLOGY)
    rec = Recorder()
    worker = task.shell("sleep 600", nodes=NODES, handler=rec)
    with pytest.raises(TaskTimeout):
        task.resume(timeout=3)
    assert {s for s, _ in task.iter_status()} == {"aborted"}
    assert rec.worker_events == ["start", "close False"]
    assert worker.run is not None and worker.run.done
    # nothing of the run is left on the nodes: only each node's sshd lives there
    deadline = time.monotonic() + 30
    for node in (f"node{i}" for i in range(1, 7)):
        ns = net.nodes[node].netns
        while True:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            if len(pids.stdout.split()) == 1:
                break
            assert time.monotonic() < deadline, f"{node}: the command outlived the Task"
            time.sleep(0.1)


def test_task_timeout_counts_the_nodes_picked_up_as_timed_out(net):
    # as flat and as ClusterShell: a node running when the run's timeout passes timed out
    task = _task(net, ONE_GW)
    rec = Recorder()
    task.shell("echo up; exec sleep 600", nodes="node[1-2]", handler=rec)
    with pytest.raises(TaskTimeout):
        task.resume(timeout=10)  # (the nodes' "up" comes well before)
    assert dict(task.iter_status()) == {"timeout": ["node1", "node2"]}
    assert task.num_timeout() == 2
    assert rec.worker_events == ["start", "timeout", "close True"]


class AbortOnRead(Recorder):
    def ev_read(self, worker, node, sname, msg):
        super().ev_read(worker, node, sname, msg)
        worker.abort()


def test_worker_abort_through_the_tree_ends_that_worker_alone(net):
    task = _task(net, ONE_GW)
    aborted, other = AbortOnRead(), Recorder()
    task.shell("echo up; exec sleep 600", nodes="node[1-2]", handler=aborted)
    task.shell("echo b", nodes="node[3-4]", handler=other)
    task.resume(timeout=120)
    assert dict(task.iter_status()) == {"aborted": ["node1", "node2"], "hup": ["node3", "node4"]}
    assert aborted.worker_events == ["start", "close False"]
    assert not [e for events in aborted.per_node.values() for e in events if e[0] == "hup"]
    assert other.worker_events == ["start", "close False"]


def test_a_gateway_batches_identical_outputs_under_one_entry(net, tmp_path):
    # the nodes meet at a barrier (files on the shared disk), then print the same line
    d = str(tmp_path)
    command = (
        f'touch {d}/"$EC_NODE"; n=0; while [ "$(ls {d} | wc -l)" -lt 6 ] && [ $n -lt 300 ]; '
        "do sleep 0.02; n=$((n+1)); done; echo same; echo same too"
    )
    gw = open_gateway("gw1", ["-F", net.config])
    batches = []
    try:
        token = gw.call(
            "easycluster.cluster.treerun.gateway_start", command,
            [f"node{i}" for i in range(1, 7)], ONE_GW, "gw1",
            options(["-F", net.config], delay=1.0), None,
        )  # fmt: skip
        for _ in range(200):  # (bounded: a read returns at least every second)
            batch = gw.call("easycluster.cluster.treerun.gateway_read", token)
            batches.append(batch)
            if batch[3]:
                break
    finally:
        gw.close()
    assert batches[-1][3]
    named = sorted(n for out, _, _, _ in batches for nodes, _, _ in out for n in _names(nodes))
    assert named == [f"node{i}" for i in range(1, 7)]  # each node's lines once
    for outputs, ends, _, _ in batches:  # identical content is never sent twice in a batch
        assert len({(sid, bytes(data)) for _, sid, data in outputs}) == len(outputs)
        assert len({(s, rc) for _, s, rc in ends}) == len(ends)
    entries = sum(len(out) + len(ends) for out, ends, _, _ in batches)
    assert entries < 12  # 6 nodes' lines and 6 ends came up grouped
    assert {bytes(data) for out, _, _, _ in batches for _, _, data in out} == {b"same\nsame too\n"}


def test_tree_shell_reports_what_crossed_each_gateway(net):
    result = tree_shell("echo same", NODES, ONE_GW, ssh_options=["-F", net.config])
    assert [(str(g.nodes), g.status, g.rc, g.stdout) for g in result.groups] == [
        ("node[1-6]", "hup", 0, b"same")
    ]
    reads, outputs, ends = result.stats["gw1"]
    assert outputs <= reads and ends <= reads  # at most one entry per batch here


def _names(nodes: str) -> List[str]:
    from easycluster.cluster.treegroom import expand

    return expand(nodes)
