"""SLURM hostlists: reading what SLURM prints, writing what SLURM reads (pure code).

That SLURM itself reads what we write is proven against a real ``scontrol`` in
tests/integration/test_slurm.py.
"""

from __future__ import annotations

import pytest

from easycluster.errors import NodeSetError, NodeSetParseError
from easycluster.nodeset import GroupSource, NodeSet
from easycluster.nodeset.groupsconf import GroupsConfig
from easycluster.nodeset.slurm import (
    MAX_RANGE,
    SLURM_SOURCES,
    allocation_nodes,
    parse_hostnames,
    parse_slurm_nodelist,
    slurm_available,
    slurm_group_sources,
    slurm_hostlist,
    with_slurm_sources,
)

# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, names",
    [
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("n[1-2,5],gpu[01-02]", ["gpu01", "gpu02", "n1", "n2", "n5"]),
        ("login", ["login"]),
        ("a1 a2\tb7", ["a1", "a2", "b7"]),  # white space separates too
        ("rack1-n[8-10]", ["rack1-n8", "rack1-n9", "rack1-n10"]),
    ],
)
def test_parse_slurm_nodelist(text, names):
    assert sorted(parse_slurm_nodelist(text)) == sorted(names)


@pytest.mark.parametrize("text", ["n[1-3]!n2", "@rack1", "n*", "a&b", "a^b"])
def test_parse_slurm_nodelist_refuses_our_extensions(text):
    with pytest.raises(NodeSetParseError, match="not SLURM hostlist syntax"):
        parse_slurm_nodelist(text)


def test_parse_hostnames_reads_scontrol_output():
    out = "n1\nn2\n\nn10\ngpu01\n"
    nodes = parse_hostnames(out)
    assert isinstance(nodes, NodeSet)
    assert str(nodes) == "gpu01,n[1-2,10]"
    assert len(nodes) == 4


def test_parse_hostnames_refuses_a_line_that_is_not_one_name():
    with pytest.raises(NodeSetParseError, match="line 2"):
        parse_hostnames("n1\nn[2-3]\n")
    with pytest.raises(NodeSetParseError, match="line 1"):
        parse_hostnames("n1 n2\n")


def test_allocation_nodes_from_the_environment():
    assert str(allocation_nodes({"SLURM_JOB_NODELIST": "n[1-4]"})) == "n[1-4]"
    assert str(allocation_nodes({"SLURM_NODELIST": "c[7-8]"})) == "c[7-8]"


def test_allocation_nodes_outside_an_allocation_says_so():
    with pytest.raises(NodeSetError, match="not inside a SLURM allocation"):
        allocation_nodes({})


# -- writing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, expected",
    [
        (["n1", "n2", "n3"], "n[1-3]"),
        (["n5"], "n5"),
        (["n1", "n3", "n4"], "n[1,3-4]"),
        (["login", "n2", "n1"], "login,n[1-2]"),
        # the last number only: never an n-D fold such as r[1-2]n[1-2]
        (["r1n1", "r1n2", "r2n1", "r2n2"], "r1n[1-2],r2n[1-2]"),
        # nothing may follow a bracket: such names stay whole
        (["x8-ib", "x9-ib"], "x8-ib,x9-ib"),
        # padding as SLURM reads it: the width of the low end
        (["n08", "n09", "n10"], "n[08-10]"),
        (["n8", "n08"], "n8,n08"),
        (["n1", "n1", "n2"], "n[1-2]"),
        (["007"], "007"),  # a bare number is a name, not a range
    ],
)
def test_slurm_hostlist(names, expected):
    assert slurm_hostlist(names) == expected


def test_slurm_hostlist_reads_node_set_text_and_node_sets():
    assert slurm_hostlist("n[1-3],r[1-2]n[1-2]") == "n[1-3],r1n[1-2],r2n[1-2]"
    assert slurm_hostlist(NodeSet("x[8-9]-ib")) == "x8-ib,x9-ib"


def test_slurm_hostlist_cuts_ranges_at_slurms_limit():
    names = [f"a{i}" for i in range(1, MAX_RANGE + 10)]
    assert slurm_hostlist(names) == f"a[1-{MAX_RANGE},{MAX_RANGE + 1}-{MAX_RANGE + 9}]"
    assert slurm_hostlist([f"a{i}" for i in range(1, 8)], max_range=3) == "a[1-3,4-6,7]"


def test_slurm_hostlist_round_trips_through_our_parser():
    names = NodeSet("n[1-20/3],gpu[001-012],r[1-3]n[1-4],x[1-2]-ib,solo")
    written = slurm_hostlist(names)
    assert "][" not in written and "]-" not in written
    assert parse_slurm_nodelist(written) == names


@pytest.mark.parametrize("bad", ["", "a,b", "n[1]", "two words"])
def test_slurm_hostlist_refuses_names_slurm_cannot_hold(bad):
    with pytest.raises(NodeSetError, match="cannot be written in a SLURM hostlist"):
        slurm_hostlist([bad])


def test_slurm_hostlist_bad_max_range():
    with pytest.raises(ValueError, match="max_range"):
        slurm_hostlist(["a1"], max_range=0)


# -- group sources ------------------------------------------------------------------------


def test_sources_have_clustershells_names():
    names = [s.name for s in slurm_group_sources()]
    assert names == list(SLURM_SOURCES)
    for name in ("slurm", "sp", "slurmpart", "sj", "slurmjob", "st", "slurmstate", "su"):
        assert name in names
    by_name = {s.name: s for s in slurm_group_sources()}
    assert by_name["sp"].cache_time == 60.0
    assert "squeue" in by_name["sj"].upcalls["map"]
    assert by_name["st"].has_reverse


def test_no_sources_where_slurm_is_not_installed(tmp_path):
    env = {"PATH": str(tmp_path), "SLURM_CONF": "/nowhere/slurm.conf"}
    assert not slurm_available(env)
    config = GroupsConfig()
    assert with_slurm_sources(config, env) is config


def test_a_sites_own_source_wins(tmp_path):
    (tmp_path / "sinfo").write_text("#!/bin/sh\nexit 0\n")  # only found on PATH, never run
    (tmp_path / "sinfo").chmod(0o755)
    env = {"PATH": str(tmp_path), "SLURM_CONF": "/x/slurm.conf"}
    own = GroupSource("sp", {"debug": "mine[1-2]"})
    merged = with_slurm_sources(GroupsConfig((own,), "sp"), env)
    names = [s.name for s in merged.sources]
    assert names.count("sp") == 1 and merged.sources[0] is own
    assert "sj" in names and merged.default == "sp"
