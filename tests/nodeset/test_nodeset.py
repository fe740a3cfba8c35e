"""Table-driven tests of node-set notation, set algebra and group sources."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from easycluster.errors import (
    GroupResolverConfigError,
    GroupSourceError,
    NodeSetError,
    NodeSetParseError,
)
from easycluster.nodeset import NodeSet, count, expand, fold
from easycluster.nodeset.groups import (
    CommandGroupSource,
    FileGroupSource,
    GroupResolver,
    load_groups_conf,
    parse_group_lines,
)
from easycluster.nodeset.rangeset import RangeSet

pytestmark = pytest.mark.timeout(30)

# (input, folded, count, first names)
NOTATION = [
    ("node[1-5]", "node[1-5]", 5, ["node1", "node2"]),
    ("node[001-100]", "node[001-100]", 100, ["node001", "node002"]),
    (
        "node[1-99/2]",
        "node[1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31,33,35,37,39,41,43,45,47,"
        "49,51,53,55,57,59,61,63,65,67,69,71,73,75,77,79,81,83,85,87,89,91,93,95,97,99]",
        50,
        ["node1", "node3"],
    ),
    (
        "curie[50,100-120,200-249]-ipmi",
        "curie[50,100-120,200-249]-ipmi",
        72,
        ["curie50-ipmi", "curie100-ipmi"],
    ),
    ("da[10-19]c[1-2]", "da[10-19]c[1-2]", 20, ["da10c1", "da10c2"]),
    ("r[1-100]n[1-500]", "r[1-100]n[1-500]", 50000, ["r1n1", "r1n2"]),
    ("n[9-11],n[09-11]", "n[9,09-11]", 4, ["n9", "n09", "n10"]),
    ("n[8-10],n09", "n[8-9,09-10]", 4, ["n8", "n9", "n09"]),
    ("login,node1,admin", "admin,login,node1", 3, ["admin", "login"]),
    ("n1[0-2]", "n[10-12]", 3, ["n10"]),
    ("n[1-2]0", "n[10,20]", 2, ["n10", "n20"]),
    ("n[1-2]-ib[0-1]", "n[1-2]-ib[0-1]", 4, ["n1-ib0", "n1-ib1"]),
    (" n1 , n2 ", "n[1-2]", 2, ["n1", "n2"]),
    ("n[  1-3 ]", "n[1-3]", 3, ["n1"]),
    ("n[10-12]x,n[9-11]", "n[9-11],n[10-12]x", 6, ["n9", "n10", "n11", "n10x"]),
    ("n[1-10]!n[3-4]&n[2-8]^n[8-9]", "n[2,5-7,9]", 5, ["n2", "n5"]),
    ("n[1-10]&n[5-20]", "n[5-10]", 6, ["n5"]),
    ("n[1-5]^n[4-8]", "n[1-3,6-8]", 6, ["n1"]),
    ("r[1-3]n[1-3]!r2n2", "r[1,3]n[1-3],r2n[1,3]", 8, ["r1n1", "r1n2", "r1n3", "r3n1"]),
    ("r1n1,r2n[1-2]", "r[1-2]n1,r2n2", 3, ["r1n1", "r2n1", "r2n2"]),
    ("r9n[1-2],r10n[3-4]", "r10n[3-4],r9n[1-2]", 4, ["r10n3"]),
    ("n[1-9],n[10-100]", "n[1-100]", 100, ["n1"]),
    ("a%b[1-2]", "a%b[1-2]", 2, ["a%b1", "a%b2"]),
    ("", "", 0, []),
]


@pytest.mark.parametrize("text,folded,size,first", NOTATION)
def test_notation(text, folded, size, first):
    ns = NodeSet(text)
    assert str(ns) == folded
    assert len(ns) == size == count(text)
    assert list(ns)[: len(first)] == first
    assert expand(text)[: len(first)] == first
    # round trips: fold(expand(s)) and parse(fold(s)) give the canonical fold
    assert fold(list(ns)) == folded
    assert str(NodeSet(folded)) == folded


PARSE_ERRORS = [
    ("node[1-", "node[1-"),
    ("node[5-3]", "node[5-3]"),
    ("node[a-b]", "node[a-b]"),
    ("n[01-100]", "n[01-100]"),
    ("n[1-3]]", "n[1-3]]"),
    ("n[1-2][3-4]", "n[1-2][3-4]"),
    ("n[]", "n[]"),
    ("n,,n2", "n,,n2"),
    ("n1!", "n1!"),
    ("n[1-2/0]", "n[1-2/0]"),
    ("@", "@"),
    ("@src:", "@src:"),
]


@pytest.mark.parametrize("text,part", PARSE_ERRORS)
def test_parse_errors_name_the_part(text, part):
    with pytest.raises(NodeSetParseError) as info:
        NodeSet(text)
    assert info.value.part == part
    assert isinstance(info.value, NodeSetError) and isinstance(info.value, ValueError)
    assert repr(part) in str(info.value)


def test_big_range_is_not_expanded_to_count():
    ns = NodeSet("node[1-1000000000000]")
    assert len(ns) == 10**12
    assert "node999999999999" in ns and "node0" not in ns
    assert ns[10**12 - 1] == "node1000000000000"
    assert str(ns) == "node[1-1000000000000]"


SET_OPS = [
    # a, b, |, &, -, ^
    ("n[1-10]", "n[5-15]", "n[1-15]", "n[5-10]", "n[1-4]", "n[1-4,11-15]"),
    ("n[1-3],x", "x,y", "n[1-3],x,y", "x", "n[1-3]", "n[1-3],y"),
    ("r[1-2]n[1-2]", "r2n[2-3]", "r2n[1-3],r1n[1-2]", "r2n2", "r1n[1-2],r2n1", "r1n[1-2],r2n[1,3]"),
    ("n[01-03]", "n[1-3]", "n[1-3,01-03]", "", "n[01-03]", "n[1-3,01-03]"),
]


@pytest.mark.parametrize("a,b,union,inter,diff,xor", SET_OPS)
def test_set_operations(a, b, union, inter, diff, xor):
    x, y = NodeSet(a), NodeSet(b)
    assert str(x | y) == str(x.union(b)) == union
    assert str(x & y) == str(x.intersection(b)) == inter
    assert str(x - y) == str(x.difference(b)) == diff
    assert str(x ^ y) == str(x.symmetric_difference(b)) == xor
    for method, expected in [
        ("update", union),
        ("intersection_update", inter),
        ("difference_update", diff),
        ("symmetric_difference_update", xor),
    ]:
        z = x.copy()
        getattr(z, method)(y)
        assert str(z) == expected
        assert str(x) == str(NodeSet(a))  # the copy was independent
    assert (x & y) <= x and x >= (x & y) and (x & y).issubset(x) and x.issuperset(x & y)


def test_membership_add_remove_clear():
    ns = NodeSet("n[1-5]")
    assert "n3" in ns and "n6" not in ns and "n[2-4]" in ns and "n[4-6]" not in ns
    ns.add("n7")
    ns.discard("n1")
    ns.remove("n2")
    assert str(ns) == "n[3-5,7]"
    with pytest.raises(KeyError):
        ns.remove("n2")
    assert ns == NodeSet("n[3-5],n7") and ns != NodeSet("n[3-5]")
    ns.clear()
    assert len(ns) == 0 and not ns and str(ns) == ""


def test_indexing_slicing_split_contiguous():
    ns = NodeSet("n[1-10],a[1-3]")
    assert ns[0] == "a1" and ns[3] == "n1" and ns[-1] == "n10"
    assert str(ns[3:6]) == "n[1-3]" and str(ns[::4]) == "a1,n[2,6,10]"
    with pytest.raises(IndexError):
        ns[13]
    assert [str(p) for p in ns.split(3)] == ["a[1-3],n[1-2]", "n[3-6]", "n[7-10]"]
    assert [str(p) for p in NodeSet("n[1-3,5],r[1-2]n[1-2],x").contiguous()] == [
        "n[1-3]",
        "n5",
        "r[1-2]n[1-2]",
        "x",
    ]
    assert ns.index("n2") == 4
    assert NodeSet("r[1-2]n[1-2]")[1] == "r1n2"


def test_autostep():
    assert str(NodeSet("n1,n3,n5,n7,n20", autostep=3)) == "n[1-7/2,20]"
    assert str(NodeSet("n1,n3,n5", autostep=4)) == "n[1,3,5]"
    assert str(RangeSet("1-3,5,7,9,10", autostep=3)) == "1-3,5-9/2,10"
    assert str(RangeSet("1-3,5,7,9,10", autostep=4)) == "1-3,5,7,9-10"


def test_pickle_and_copy_keep_value():
    ns = NodeSet("n[1-5],r[1-2]n[1-3],login")
    assert pickle.loads(pickle.dumps(ns)) == ns
    rs = RangeSet("1-5,09")
    assert pickle.loads(pickle.dumps(rs)) == rs and str(rs.copy()) == "1-5,09"


RANGESETS = [
    ("1-5,7,10-20/5", "1-5,7,10,15,20", 9),
    ("001-003,1-3,0001", "1-3,001-003,0001", 7),
    ("0,00,000", "0,00,000", 3),
    ("95-105", "95-105", 11),
    ("1-9/2,2-10/2", "1-10", 10),
]


@pytest.mark.parametrize("text,folded,size", RANGESETS)
def test_rangeset_table(text, folded, size):
    rs = RangeSet(text)
    assert str(rs) == folded and len(rs) == size
    assert RangeSet(list(rs)) == rs


# -- groups -------------------------------------------------------------------------
@pytest.fixture
def groups_conf(tmp_path):
    (tmp_path / "racks.groups").write_text(
        textwrap.dedent("""\
        # racks
        rack1: n[1-4]
        rack2: n[5-8]
        big: n[1-8]
        all: n[1-10]
        nested: @rack1,n9
        """)
    )
    script = tmp_path / "map.sh"
    script.write_text(
        textwrap.dedent("""\
        #!/bin/sh
        case "$GROUP" in
          odd) echo "n1 n3"; echo "n5" ;;
          even) echo "n[2,4]" ;;
          broken) echo "cannot reach the database" >&2; exit 3 ;;
        esac
        """)
    )
    script.chmod(0o755)
    conf = tmp_path / "groups.conf"
    conf.write_text(
        textwrap.dedent("""\
        [Main]
        default = racks

        [racks]
        file = racks.groups

        [cmd,c]
        map = ./map.sh
        list = echo odd even
        all = echo 'n[1-5]'
        reverse = case "$NODE" in n1|n3|n5) echo odd;; *) echo even;; esac
        """)
    )
    return conf


def test_groups_from_file_and_commands(groups_conf):
    res = GroupResolver.from_file(str(groups_conf))
    # [cmd,c] defines two sources with the same upcalls, as in ClusterShell
    assert res.source_names() == ["racks", "cmd", "c"]
    assert str(NodeSet("@rack1", resolver=res)) == "n[1-4]"
    assert str(NodeSet("@racks:rack2,@nested", resolver=res)) == "n[1-9]"
    assert str(NodeSet("@rack[1-2]", resolver=res)) == "n[1-8]"
    assert str(NodeSet("@*", resolver=res)) == "n[1-10]"
    assert str(NodeSet("@cmd:odd", resolver=res)) == "n[1,3,5]"
    assert str(NodeSet("@c:even", resolver=res)) == "n[2,4]"
    assert str(NodeSet("@cmd:*!@cmd:odd", resolver=res)) == "n[2,4]"
    assert str(NodeSet("@@racks", resolver=res)) == "all,big,nested,rack[1-2]"
    assert res.node_groups("n3", "cmd") == ["odd"]
    assert str(NodeSet("n?", resolver=res)) == "n[1-9]"


def test_regroup(groups_conf):
    res = GroupResolver.from_file(str(groups_conf))
    assert NodeSet("n[1-9]", resolver=res).regroup() == "@big,n9"
    assert NodeSet("n[1-9]").regroup(res) == "@big,n9"
    assert NodeSet("n[1-4,6]").regroup(res) == "@rack1,n6"
    # group names fold and sort like node names, as ClusterShell prints them
    assert NodeSet("n[1-5]").regroup(res, source="cmd") == "@cmd:even,@cmd:odd"
    assert NodeSet("n[1-5]").regroup(res, source="cmd", noprefix=True) == "@even,@odd"


def test_group_errors(groups_conf):
    res = GroupResolver.from_file(str(groups_conf))
    with pytest.raises(NodeSetParseError) as info:
        NodeSet("@nosuch:g", resolver=res)
    assert info.value.part == "@nosuch:g"
    with pytest.raises(NodeSetParseError):
        NodeSet("@rack1")  # no resolver at all
    with pytest.raises(GroupSourceError, match="unknown group 'nope'"):
        NodeSet("@nope", resolver=res)
    with pytest.raises(GroupSourceError) as info:
        NodeSet("@cmd:broken", resolver=res)
    message = str(info.value)
    assert "'cmd'" in message and "./map.sh" in message and "cannot reach the database" in message


def test_group_recursion_is_bounded():
    res = GroupResolver(sources=(FileGroupSource("s", {"a": "@b", "b": "@a"}),))
    with pytest.raises(NodeSetError, match="nested too deeply"):
        NodeSet("@a", resolver=res)


def test_groups_file_errors(tmp_path):
    with pytest.raises(GroupSourceError, match="expected 'group: nodeset'"):
        parse_group_lines("rack1 n[1-2]\n", "f")
    assert parse_group_lines("a: n1\na: n2 n3 # more\n\n") == {"a": "n1,n2,n3"}
    bad = tmp_path / "bad.conf"
    bad.write_text("[src]\nfoo = bar\n")
    with pytest.raises(GroupResolverConfigError, match="needs 'map', 'mapall' or 'file'"):
        load_groups_conf([str(bad)])
    with pytest.raises(GroupResolverConfigError, match="cannot read groups file"):
        load_groups_conf([str(tmp_path / "missing.conf")])


def test_resolver_from_env(groups_conf):
    assert GroupResolver.from_env({}) is None
    res = GroupResolver.from_env({"EASYCLUSTER_GROUPS_CONF": str(groups_conf)})
    assert res is not None and res.default == "racks"


def test_command_source_caches_answers(tmp_path):
    counter = tmp_path / "calls"
    src = CommandGroupSource("s", f"echo x >> {counter}; echo n1")
    res = GroupResolver(sources=(src,))
    assert str(NodeSet("@g,@g", resolver=res)) == "n1"
    NodeSet("@g", resolver=res)
    assert counter.read_text().count("x") == 1


def test_fromnames_takes_each_string_as_one_name():
    ns = NodeSet.fromnames(["@n1", "@n2", "n1!x", "[a3]", "", "p 1"])
    assert str(ns) == "@n[1-2],[a3],n1!x,p 1" and len(ns) == 5
    assert str(NodeSet.fromnames(["a1\nb", "a2"])) == "a2,a1\nb"  # a newline is text too
    assert str(NodeSet.fromnames([f"n{i}-ib" for i in range(1, 4)])) == "n[1-3]-ib"
    assert len(NodeSet.fromnames([])) == 0
