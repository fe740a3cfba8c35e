"""Topology parsing and validation, and the router (pure code, no processes)."""

from __future__ import annotations

import pytest

from easycluster.cluster.events import Piece
from easycluster.cluster.routing import Router
from easycluster.cluster.topology import (
    Topology,
    TopologyError,
    load_topology,
    parse_topology,
)
from easycluster.cluster.treegroom import STDERR, STDOUT, Groomer, expand, lines_of
from easycluster.errors import ConfigError

TWO_LEVELS = """
# a comment
[routes]
admin: gw[1-4]
gw[1-2]: node[1-4000]   ; failover pair
gw[3-4]: rack[1-2]
rack[1-2]: cn[1-10]
"""


def test_parse_two_levels():
    topo = parse_topology(TWO_LEVELS)
    assert topo.root == "admin"
    assert topo.candidates("node17") == ("gw1", "gw2")
    assert topo.candidates("cn3") == ("rack1", "rack2")
    assert topo.gateways == {"gw1", "gw2", "gw3", "gw4", "rack1", "rack2"}
    assert topo.depth("cn3") == 3 and topo.depth("gw2") == 1 and topo.depth("admin") == 0
    assert topo.below("gw3") == {"rack1", "rack2"} | {f"cn{i}" for i in range(1, 11)}
    assert "node4000" in topo and "node4001" not in topo
    assert parse_topology(topo.to_text()).parents == topo.parents


def test_build_from_dict_pairs_and_text_agree():
    a = Topology.build({"admin": "gw[1-2]", "gw[1-2]": "n[1-4]"})
    b = Topology.build([("admin", "gw[1-2]"), ("gw[1-2]", "n[1-4]")])
    c = Topology.build("admin: gw[1-2]\ngw[1-2]: n[1-4]\n")
    assert a.parents == b.parents == c.parents
    assert a.root == "admin"


def test_load_topology_names_the_file(tmp_path):
    path = tmp_path / "topology.conf"
    path.write_text("admin: gw1\ngw1 n1\n")
    with pytest.raises(TopologyError, match=r"topology.conf: line 2: .*has no ':'"):
        load_topology(str(path))
    path.write_text("[routes]\nadmin: gw1\ngw1: n[1-3]\n")
    assert load_topology(str(path)).candidates("n2") == ("gw1",)


def test_other_sections_are_ignored():
    topo = parse_topology("[other]\nx: y\n[routes]\nadmin: gw1\n")
    assert topo.root == "admin" and "x" not in topo


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no routes"),
        ("admin gw1", "has no ':'"),
        ("admin:", "both sides"),
        (": gw1", "both sides"),
        ("admin: gw[1-", "bad node set"),
        ("admin: gw1\ngw1: n1\ngw2: n2", "several nodes are below no one: admin,gw2"),
        ("admin: gw1\ngw[1-2]: n1", "line 2: gw2 is not below any node"),
        (
            "admin: gw[1-3]\ngw1: n1\ngw2: n1",
            "line 3: n1 is already under gw1 .line 2.*gw\\[1-2\\]: n1",
        ),
        ("gw1: gw2\ngw2: gw1", "no root"),
        ("admin: a\na,c: b\nb: c", "cycle"),
        ("admin: gw1\ngw1: gw1", "its own parent"),
    ],
)
def test_bad_topologies_say_what_and_how(text, message):
    with pytest.raises(TopologyError, match=message) as info:
        parse_topology(text)
    assert isinstance(info.value, ConfigError)


def test_same_parents_on_two_lines_is_fine():
    topo = parse_topology("admin: gw[1-2]\ngw[1-2]: n1\ngw[2,1]: n[1-2]")
    assert set(topo.candidates("n1")) == {"gw1", "gw2"}


# -- routing ------------------------------------------------------------------


def test_least_loaded_split_between_failover_pair():
    router = Router(parse_topology(TWO_LEVELS))
    plan = router.route(f"node{i}" for i in range(1, 101))
    assert {g: len(n) for g, n in plan.via.items()} == {"gw1": 50, "gw2": 50}
    assert not plan.direct and not plan.lost
    assert router.next_hop("node7") in ("gw1", "gw2")


def test_deeper_targets_go_through_first_level_and_balance_each_level():
    router = Router(parse_topology(TWO_LEVELS))
    plan = router.route(f"cn{i}" for i in range(1, 11))
    assert {g: len(n) for g, n in plan.via.items()} == {"gw3": 5, "gw4": 5}
    assert router.load["rack1"] == router.load["rack2"] == 5
    assert len(router.paths["cn1"]) == 3 and router.paths["cn1"][-1] == "cn1"


def test_children_of_root_and_unlisted_nodes_are_direct_and_reported():
    router = Router(parse_topology(TWO_LEVELS))
    plan = router.route(["gw1", "elsewhere", "node1"])
    assert plan.direct == {"gw1", "elsewhere"}
    assert plan.unlisted == {"elsewhere"}
    assert plan.targets() == {"gw1", "elsewhere", "node1"}


def test_gateway_death_fails_over_to_the_declared_partner():
    router = Router(parse_topology(TWO_LEVELS))
    router.route(f"node{i}" for i in range(1, 11))
    on_gw1 = router.assigned("gw1")
    moved = router.fail("gw1")
    assert moved.via == {"gw2": on_gw1} and not moved.lost
    assert router.assigned("gw2") == {f"node{i}" for i in range(1, 11)}
    assert "gw1" not in router.load
    # a new command avoids the dead gateway too
    assert router.route(["node500"]).via == {"gw2": {"node500"}}


def test_both_gateways_dead_reports_lost_as_a_node_set():
    router = Router(parse_topology(TWO_LEVELS))
    router.route(f"node{i}" for i in range(1, 9))
    router.fail("gw1")
    moved = router.fail("gw2")
    assert not moved.via
    assert str(moved.lost_nodeset()) == "node[1-8]"
    assert router.route(["node9"]).lost == {"node9"}
    assert router.next_hop("node9") is None
    router.revive("gw2")
    assert router.route(["node9"]).via == {"gw2": {"node9"}}


def test_deep_gateway_death_reroutes_within_the_level():
    router = Router(parse_topology(TWO_LEVELS))
    router.route(f"cn{i}" for i in range(1, 5))
    moved = router.fail("rack1")
    assert moved.targets() == {"cn1", "cn3"} or moved.targets() == {"cn2", "cn4"}
    assert all(router.paths[t][1] == "rack2" for t in moved.targets())


def test_router_rooted_at_a_gateway_sees_only_its_subtree():
    topo = parse_topology(TWO_LEVELS)
    router = Router(topo, root="gw3")
    plan = router.route(["cn1", "cn2", "node1", "outside"])
    assert plan.via == {"rack1": {"cn1"}, "rack2": {"cn2"}}
    assert plan.lost == {"node1"}  # in the topology but not below gw3
    assert plan.unlisted == {"outside"}
    with pytest.raises(ValueError, match="not in the topology"):
        Router(topo, root="nowhere")


def test_release_frees_the_load():
    router = Router(parse_topology(TWO_LEVELS))
    router.route(["node1", "node2"])
    router.release(["node1", "node2", "never-routed"])
    assert router.load == {} and router.paths == {}


# -- grooming (treegroom.Groomer: pure, what a gateway sends up) ---------------------


def test_groomer_groups_identical_pending_lines_under_one_node_set():
    g = Groomer()
    for n in ("n1", "n2", "n3"):
        g.line(n, STDOUT, b"same")
    g.line("n3", STDOUT, b"more")
    g.line("n2", STDERR, b"oops")
    g.end("n1", "hup", 0)
    g.end("n2", "hup", 0)
    g.end("n3", "hup", 1)
    outputs, ends, reasons, done = g.take()
    assert outputs == [("n[1-2]", STDOUT, b"same\n"), ("n3", STDOUT, b"same\nmore\n"),
                       ("n2", STDERR, b"oops\n")]  # fmt: skip
    assert ends == [("n[1-2]", "hup", 0), ("n3", "hup", 1)]
    assert (reasons, done) == ([], False)
    assert not g and g.take() == ([], [], [], False)  # nothing is kept after a take


def test_groomer_merges_blocks_from_below_without_reordering_a_node():
    g = Groomer()
    g.block("gwA", "n[1-2]", STDOUT, b"a\n")
    g.block("gwB", "n[3-4]", STDOUT, b"a\n")  # another source, same content: merged
    g.block("gwA", "n1", STDOUT, b"b\n")
    g.block("gwA", "n2", STDOUT, b"a\n")  # gwA already has a later entry: not merged back
    outputs, _, _, _ = g.take()
    assert outputs == [("n[1-4]", STDOUT, b"a\n"), ("n1", STDOUT, b"b\n"), ("n2", STDOUT, b"a\n")]


def test_groomer_reasons_and_the_last_batch():
    g = Groomer()
    g.reason("n[5-6]", "gateway gw1 lost")
    assert g
    assert g.take(done=True) == ([], [], [("n[5-6]", "gateway gw1 lost")], True)
    assert expand("n[5-6]") == ["n5", "n6"] and expand("n5") == ["n5"]
    assert lines_of(b"x\ny\n", 64) == [b"x", b"y"]


def test_pieces_of_a_long_line_stay_one_line_through_grooming():
    g = Groomer()
    g.line("n1", STDOUT, Piece(b"ab"))  # a piece: the line goes on
    g.line("n1", STDOUT, b"cd")
    g.line("n1", STDOUT, b"")  # an empty line is a line
    g.line("n1", STDOUT, Piece(b"ef"))  # still going when the batch is taken
    outputs, _, _, _ = g.take()
    assert outputs == [("n1", STDOUT, b"abcd\n\nef")]
    got = lines_of(outputs[0][2], 3)
    assert got == [b"abc", b"d", b"", b"ef"]
    assert [type(m) is Piece for m in got] == [True, False, False, True]
    assert [type(m) is Piece for m in lines_of(b"abcdef\n", 3)] == [True, False]
    assert lines_of(b"abcdef", 3) == [b"abc", b"def"]  # unfinished: pieces only
    assert all(type(m) is Piece for m in lines_of(b"abcdef", 3))
