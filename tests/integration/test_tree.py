"""Tree mode over a real network of namespaces (tests/netns.py): gateways are the only
way to the nodes, and each host runs a real sshd."""

from __future__ import annotations

import subprocess
import threading
import time

from netns import build_network, require_netns

from easycluster.cluster.tree import open_gateway, options, tree_shell


def _run(argv):
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_node_is_reachable_only_through_its_gateway(netns):
    admin_to_node = _run(netns.ssh_argv("node1", "printenv", "EC_NODE"))
    assert admin_to_node.returncode == 255
    assert "no route to host" in admin_to_node.stderr.lower(), admin_to_node.stderr
    admin_to_gw = _run(netns.ssh_argv("gw1", "printenv", "EC_NODE"))
    assert admin_to_gw.stdout.strip() == "gw1", admin_to_gw.stderr
    via_gw = _run(netns.ssh_argv("gw1", *netns.ssh_argv("node1", "printenv", "EC_NODE")))
    assert via_gw.stdout.strip() == "node1", via_gw.stderr
    # a node of the other group is not reachable from gw1 either
    wrong_gw = _run(netns.ssh_argv("gw1", *netns.ssh_argv("node3", "true")))
    assert wrong_gw.returncode == 255


# -- tree_shell through real gateways -----------------------------------------------

TOPOLOGY = "[routes]\nadmin: gw[1-3]\ngw1: node[1-2]\ngw[2-3]: node[3-4]\n"


def _shell(netns, command, nodes="node[1-4]", **kw):
    return tree_shell(command, nodes, TOPOLOGY, ssh_options=["-F", netns.config], **kw)


def test_identical_outputs_come_back_grouped_under_one_node_set(netns):
    result = _shell(netns, 'test -n "$EC_NODE" && echo same')
    assert [(str(g.nodes), g.status, g.rc, g.stdout) for g in result.groups] == [
        ("node[1-4]", "hup", 0, b"same")
    ]
    assert result.reasons == []


def test_distinct_outputs_and_return_codes_stay_apart(netns):
    result = _shell(netns, 'echo "$EC_NODE"; case "$EC_NODE" in node3) exit 3;; esac')
    by_node = {str(g.nodes): (g.rc, g.stdout) for g in result.groups}
    assert by_node == {
        "node1": (0, b"node1"),
        "node2": (0, b"node2"),
        "node3": (3, b"node3"),
        "node4": (0, b"node4"),
    }


def test_children_of_the_root_run_directly(netns):
    result = _shell(netns, 'echo "$EC_NODE"', nodes="gw1,node1")
    assert {str(g.nodes): g.stdout for g in result.groups} == {"gw1": b"gw1", "node1": b"node1"}


def test_a_partitioned_node_is_reported_unreachable_by_name(netns):
    netns.link_down("node2")
    try:
        result = _shell(netns, "echo ok", connect_timeout=3)
    finally:
        netns.link_up("node2")
    assert str(result.unreachable) == "node2"
    assert result.node_group("node1").stdout == b"ok"
    assert str(result.status_nodes("hup")) == "node[1,3-4]"


def test_unreachable_gateway_fails_over_to_the_declared_partner(netns):
    netns.kill_gateway("gw2")
    try:
        result = _shell(netns, 'echo "$EC_NODE"', nodes="node[3-4]", connect_timeout=3)
    finally:
        netns.revive_gateway("gw2")
    assert {str(g.nodes): g.stdout for g in result.groups} == {"node3": b"node3", "node4": b"node4"}


def test_gateway_without_partner_unreachable_reports_its_nodes(netns):
    netns.kill_gateway("gw1")
    try:
        result = _shell(netns, "echo ok", connect_timeout=3)
    finally:
        netns.revive_gateway("gw1")
    assert str(result.unreachable) == "node[1-2]"
    assert any("gateway gw1 unreachable" in why for _, why in result.reasons)
    assert str(result.status_nodes("hup")) == "node[3-4]"


def test_gateway_killed_mid_command_loses_its_nodes_at_once(netns, tmp_path):
    # node1 and node2 (behind gw1 alone) would sleep far past the test's timeout;
    # each node leaves a file once its command started (namespaces share the disk)
    command = (
        f'touch {tmp_path}/"$EC_NODE"; case "$EC_NODE" in node[12]) sleep 600;; esac; echo done'
    )
    box = {}
    runner = threading.Thread(target=lambda: box.update(r=_shell(netns, command)))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / n).exists() for n in ("node1", "node2")):
            assert time.monotonic() < deadline, "the commands never started"
            time.sleep(0.05)
        netns.kill_gateway("gw1")
        runner.join(60)
        assert not runner.is_alive(), "tree_shell did not return after its gateway died"
    finally:
        netns.revive_gateway("gw1")
        if runner.is_alive():  # let the sleeping nodes go so the thread can end
            for n in ("node1", "node2"):
                netns.run_in(n, ["pkill", "-f", "sleep 600"])
            runner.join(60)
    result = box["r"]
    assert str(result.lost) == "node[1-2]"
    assert str(result.status_nodes("hup")) == "node[3-4]"
    assert any(nodes == "node[1-2]" and "gateway gw1 lost" in why for nodes, why in result.reasons)


def test_a_deeper_topology_goes_through_two_gateways(netns):
    # gw1 reaches gw2 over the admin-side bridge; gw2 alone reaches node[3-4]
    deep = "admin: gw1\ngw1: gw2\ngw2: node[3-4]\n"
    result = tree_shell('echo "$EC_NODE"', "node[3-4]", deep, ssh_options=["-F", netns.config])
    assert {str(g.nodes): g.stdout for g in result.groups} == {"node3": b"node3", "node4": b"node4"}
    assert result.reasons == []


def test_nodes_the_topology_does_not_list_are_tried_directly_and_reported(netns):
    result = _shell(netns, "true", nodes="node1,nosuchhost", connect_timeout=3)
    assert str(result.status_nodes("hup")) == "node1"
    assert "nosuchhost" in result.unreachable  # tried from the admin, never silently absent


def test_a_gateway_sends_up_one_entry_per_distinct_output(netns):
    # what crosses the level is what the admin pays for: groups, not nodes
    gw = open_gateway("gw2", ["-F", netns.config])
    outputs, ends = [], []
    try:
        opts = options(["-F", netns.config])
        token = gw.call(
            "easycluster.cluster.treerun.gateway_start", "echo same", ["node3", "node4"],
            TOPOLOGY, "gw2", opts, None,
        )  # fmt: skip
        for _ in range(100):  # (bounded: a read returns at least every second)
            out, end, reasons, done = gw.call("easycluster.cluster.treerun.gateway_read", token)
            outputs += out
            ends += end
            assert reasons == []
            if done:
                break
    finally:
        gw.close()
    assert sorted(nodes for nodes, _, _ in outputs) in (["node[3-4]"], ["node3", "node4"])
    assert {bytes(data) for _, _, data in outputs} == {b"same\n"}
    assert sorted((n, s, rc) for n, s, rc in ends) in (
        [("node[3-4]", "hup", 0)],
        [("node3", "hup", 0), ("node4", "hup", 0)],
    )


def test_a_dead_second_level_gateway_is_reported_through_the_first(netns):
    netns.kill_gateway("gw2")
    try:
        deep = "admin: gw1\ngw1: gw2\ngw2: node[3-4]\n"
        result = tree_shell(
            "true", "node[3-4]", deep, ssh_options=["-F", netns.config], connect_timeout=3
        )
    finally:
        netns.revive_gateway("gw2")
    assert str(result.unreachable) == "node[3-4]"
    assert [nodes for nodes, why in result.reasons if "gateway gw2 unreachable" in why] == [
        "node[3-4]"
    ]


def test_the_network_is_torn_down_completely(tmp_path):
    require_netns()
    net = build_network(str(tmp_path), [(["gwx"], ["nodex"])])
    with net:
        sshds = [h.sshd for h in [*net.gateways.values(), *net.nodes.values()]]
        assert net.run_in("nodex", ["printenv", "PATH"]).returncode == 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert f"ec{net.tag}" not in listed
    assert net.tag not in links
    assert f"{net.prefix}." not in routes
    assert all(p is not None and p.poll() is not None for p in sshds)
