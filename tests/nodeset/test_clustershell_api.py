"""ClusterShell 1.10's node-set API under easycluster.nodeset: the crashes of issue 19,
its listed differences, and answers compared with ClusterShell itself."""

from __future__ import annotations

import os
import pickle
import textwrap

import pytest

import easycluster.nodeset as ec
from easycluster.nodeset import (
    AUTOSTEP_DISABLED,
    RESOLVER_NOGROUP,
    GroupResolver,
    GroupResolverConfig,
    GroupSource,
    NodeSet,
    NodeSetBase,
    RangeSet,
    RangeSetND,
    UpcallGroupSource,
    set_std_group_resolver,
    set_std_group_resolver_config,
    std_group_resolver,
)

pytestmark = pytest.mark.timeout(30)

cs_nodeset = pytest.importorskip("ClusterShell.NodeSet")
cs_rangeset = pytest.importorskip("ClusterShell.RangeSet")


# -- crashes (issue 19, item 2) -------------------------------------------------------
@pytest.mark.parametrize("op", ["difference_update", "symmetric_difference_update"])
def test_in_place_operation_with_itself(op):
    ns = NodeSet("n[1-5],r[1-2]n[1-2],login")
    getattr(ns, op)(ns)
    assert str(ns) == "" and len(ns) == 0


def test_in_place_operators_with_itself():
    ns = NodeSet("n[1-5]")
    ns -= ns
    assert not ns
    ns = NodeSet("n[1-5]")
    ns ^= ns
    assert not ns
    ns = NodeSet("n[1-5]")
    ns |= ns
    ns &= ns
    assert str(ns) == "n[1-5]"
    nd = RangeSetND([["1-3", "1-2"]])
    nd -= nd
    assert not nd


def test_rangeset_remove_and_discard_of_a_non_index():
    rs = RangeSet("1-5")
    with pytest.raises(KeyError):
        rs.remove("foo")
    rs.discard("foo")
    rs.discard(-1)
    rs.discard(9)
    assert str(rs) == "1-5"
    with pytest.raises(KeyError):
        rs.remove(9)


def test_rangeset_index_takes_ints():
    rs = RangeSet("1-5")
    assert rs.index(1) == 0 and rs.index("5") == 4
    assert rs.index(3, 1, 5) == cs_rangeset.RangeSet("1-5").index(3, 1, 5)
    with pytest.raises(ValueError):
        rs.index(3, 0, 2)


def test_negative_indexes_are_refused_at_once():
    # ClusterShell prints '-1-0', which no parser (its own included) reads back
    with pytest.raises(ec.RangeSetParseError, match="not an index"):
        RangeSet([-1, 0])
    with pytest.raises(ec.RangeSetParseError):
        RangeSet("1").add(-3)


def test_wildcard_group_is_an_error_not_a_recursion():
    res = GroupResolver(GroupSource("s", {"all": "a*"}))
    with pytest.raises(ec.NodeSetError, match="nested too deeply"):
        NodeSet("a*", resolver=res)


# -- differences resolved toward ClusterShell (item 3) ---------------------------------
def test_autostep_and_fold_axis_carry_over_a_copy():
    src = NodeSet("n[1,3,5,7]", autostep=3)
    assert str(NodeSet(src)) == str(
        cs_nodeset.NodeSet(cs_nodeset.NodeSet("n[1,3,5,7]", autostep=3))
    )
    assert str(NodeSet(NodeSet("r[1-2]n[1-3]", fold_axis=[1]))) == "r1n[1-3],r2n[1-3]"


def test_rangeset_in_rangeset_is_a_subset_test():
    assert RangeSet("2-3") in RangeSet("1-5")
    assert RangeSet("2-6") not in RangeSet("1-5")


def test_union_with_none_and_comparisons_with_strings():
    assert str(NodeSet("a").union(None)) == "a"
    assert (NodeSet("a") == "a") is False and (RangeSet("1") == "1") is False
    with pytest.raises(TypeError):
        NodeSet("a") < "b"  # noqa: B015 - the comparison is what is tested
    with pytest.raises(TypeError):
        NodeSet("a") | "b"  # noqa: B015


def test_range_too_large():
    with pytest.raises(ec.NodeSetParseRangeError, match="range too large"):
        NodeSet("n[1-10000000000000000000]")
    with pytest.raises(ec.RangeSetParseError, match="range too large"):
        RangeSet("0-99999999999999999999")


# -- the API, answer for answer with ClusterShell ---------------------------------------
def test_rangeset_api():
    ours, theirs = RangeSet("1-3,5,08-10"), cs_rangeset.RangeSet("1-3,5,08-10")
    assert list(ours.slices()) == list(theirs.slices())
    assert ours.padding == theirs.padding and ours.dim() == theirs.dim() == 1
    assert str(RangeSet.fromone(5, pad=3)) == str(cs_rangeset.RangeSet.fromone(5, pad=3))
    assert str(RangeSet.fromlist(["1-3", RangeSet("5")])) == "1-3,5"
    assert [str(p) for p in RangeSet("1-5").split(2)] == ["1-3", "4-5"]
    rs = RangeSet("1-5", autostep=3)
    assert rs.autostep == 3 and rs.get_autostep() == 3
    rs.autostep = AUTOSTEP_DISABLED
    assert rs.autostep is None
    rs.add_range(10, 13)
    rs.add(7, pad=2)
    rs.union_update("20")
    rs.updaten(["30", RangeSet("31")])
    assert str(rs) == "1-5,07,10-12,20,30-31"
    with pytest.raises(KeyError):
        rs.difference_update("99", strict=True)
    assert str(rs[1:3]) == str(theirs[1:3]) == "2-3"
    assert list(RangeSet("1-3").intiter()) == [1, 2, 3]


def test_rangesetnd_api():
    args = [["0-10", "1-2"], ["5", "3"]]
    ours, theirs = RangeSetND(args), cs_rangeset.RangeSetND(args)
    assert str(ours) == str(theirs) == "0-4,6-10; 1-2\n5; 1-3\n"
    assert len(ours) == len(theirs) and ours.dim() == theirs.dim() == 2
    assert list(ours) == list(theirs)
    assert ours[3] == theirs[3] and ours.index(("5", "2")) == theirs.index(("5", "2"))
    assert RangeSetND([["01-03", "2"]]).pads() == (2, 0)
    assert RangeSetND([(0, 4), (0, 5)]).dim() == 2
    small = RangeSetND([["1-3", "2"]])
    big = RangeSetND([["1-5", "2"]])
    assert small < big and small in big and small.issubset(big) and big.issuperset(small)
    merged = small | RangeSetND([["5", "2"]])
    assert str(merged) == "1-3,5; 2\n"
    merged.update(RangeSetND([["4", "2"]]))
    assert [[str(r) for r in v] for v in merged.vectors()] == [["1-5", "2"]]
    assert len(list(RangeSetND([["1-2,5", "1"]]).contiguous())) == 2
    assert pickle.loads(pickle.dumps(RangeSet("1-3"))) == RangeSet("1-3")


def test_nodeset_api():
    ns = NodeSet("n[1-5]")
    assert ns.index("n3") == cs_nodeset.NodeSet("n[1-5]").index("n3") == 2
    with pytest.raises(ValueError):
        ns.index("n[1-2]")
    with pytest.raises(KeyError):
        ns.difference_update("n6", strict=True)
    assert [str(x) for x in ns.nsiter()][:2] == ["n1", "n2"]
    assert str(NodeSetBase("n%s", RangeSet("1-3"))) == "n[1-3]"
    assert isinstance(ns, NodeSetBase) and isinstance(ns[1:], NodeSet)
    assert ec.fold("n1,n2") == "n[1-2]" and ec.expand("n[1-2]") == ["n1", "n2"]
    for axis in ([0], [1], [-1], [0, 1]):
        theirs = cs_nodeset.NodeSet("r[1-2]n[1-3]", fold_axis=axis)
        assert str(NodeSet("r[1-2]n[1-3]", fold_axis=axis)) == str(theirs), axis
    assert str(NodeSet("@a", resolver=RESOLVER_NOGROUP)) == "@a"
    copy = pickle.loads(pickle.dumps(NodeSet("r[1-2]n[1-3],x", autostep=3)))
    assert str(copy) == "r[1-2]n[1-3],x" and copy.autostep == 3


def test_exception_names_and_hierarchy():
    assert issubclass(ec.NodeSetParseRangeError, ec.NodeSetParseError)
    assert issubclass(ec.NodeSetParseError, ec.NodeSetException)
    assert issubclass(ec.RangeSetPaddingError, ec.RangeSetParseError)
    assert issubclass(ec.RangeSetParseError, ec.RangeSetException)
    assert issubclass(ec.GroupSourceNoUpcall, ec.GroupSourceError)
    assert issubclass(ec.GroupResolverConfigError, ec.GroupResolverError)
    with pytest.raises(ec.RangeSetPaddingError):
        RangeSet("01-100")
    with pytest.raises(ec.NodeSetParseRangeError):
        NodeSet("n[01-100]")


# -- groups: resolver API, regroup, groups ------------------------------------------------
RACKS = {"rack1": "n[1-4]", "rack2": "n[5-8]", "gpu": "n[3-4]", "all": "n[1-10]"}


def both_resolvers():
    cs_utils = pytest.importorskip("ClusterShell.NodeUtils")
    ours = GroupResolver(GroupSource("racks", dict(RACKS)))
    theirs = cs_utils.GroupResolver(cs_utils.GroupSource("racks", dict(RACKS)))
    return ours, theirs


@pytest.mark.parametrize(
    "text,kwargs",
    [
        ("n[1-10]", {}),
        ("n[1-9]", {}),
        ("n[1-9]", {"overlap": True}),
        ("n[1-8]", {"groupsource": "racks"}),
        ("n[1-8]", {"groupsource": "racks", "noprefix": True}),
        ("n[2-7]", {}),
    ],
)
def test_regroup_like_clustershell(text, kwargs):
    ours, theirs = both_resolvers()
    expected = cs_nodeset.NodeSet(text, resolver=theirs).regroup(**kwargs)
    assert NodeSet(text, resolver=ours).regroup(**kwargs) == expected


def test_groups_keys_like_clustershell():
    ours, theirs = both_resolvers()
    for kwargs in ({}, {"groupsource": "racks"}, {"groupsource": "racks", "noprefix": True}):
        mine = NodeSet("n[1-5]", resolver=ours).groups(**kwargs)
        cs = cs_nodeset.NodeSet("n[1-5]", resolver=theirs).groups(**kwargs)
        assert {k: (str(a), str(b)) for k, (a, b) in mine.items()} == {
            k: (str(a), str(b)) for k, (a, b) in cs.items()
        }
    assert ours.group_nodes("rack1") == theirs.group_nodes("rack1")
    assert ours.sources() == theirs.sources() and ours.default_source_name == "racks"


def test_regroup_uses_the_reverse_upcall(tmp_path):
    log = tmp_path / "calls"
    src = UpcallGroupSource(
        "r",
        map_upcall="echo n[1-2]",
        list_upcall=f"echo g h k; echo list >> {log}",
        reverse_upcall=f"echo g; echo rev >> {log}",
    )
    res = GroupResolver(src)
    # more groups than nodes: ClusterShell's rule picks the reverse upcall
    assert NodeSet("n[1-2]", resolver=res).regroup() == "@g"
    assert "rev" in log.read_text()


# -- groups.conf as ClusterShell users write it -------------------------------------------
@pytest.fixture
def cs_conf(tmp_path):
    (tmp_path / "groups.d").mkdir()
    (tmp_path / "groups.conf.d").mkdir()
    (tmp_path / "groups.d" / "local.cfg").write_text("rack1: n[1-4]\nrack2: n[5-8]\n")
    (tmp_path / "groups.d" / "cluster.yaml").write_text(
        textwrap.dedent("""\
        roles:
          login: 'login[1-2]'
          compute: 'n[1-8]'
          empty:
        """)
    )
    (tmp_path / "groups.conf.d" / "extra.conf").write_text(
        "[dyn]\nmapall: printf 'a: x[1-2]\\nb: x3\\n'\n"
    )
    conf = tmp_path / "groups.conf"
    conf.write_text(
        textwrap.dedent("""\
        [Main]
        default:
        confdir: $CFGDIR/groups.conf.d /nonexistent/groups.conf.d
        autodir: $CFGDIR/groups.d

        [local]
        map: sed -n 's/^$GROUP:\\(.*\\)/\\1/p' $CFGDIR/groups.d/local.cfg
        list: sed -n 's/^\\([0-9A-Za-z_-]*\\):.*/\\1/p' $CFGDIR/groups.d/local.cfg
        """)
    )
    return conf


def test_clustershell_groups_conf_unchanged(cs_conf):
    res = GroupResolverConfig([str(cs_conf)])
    # ClusterShell's order: confdir parts, YAML files, then groups.conf itself
    assert res.sources() == ["dyn", "roles", "local"]
    assert str(NodeSet("@local:rack1", resolver=res)) == "n[1-4]"  # '$GROUP' in quotes
    assert str(NodeSet("@roles:login,@dyn:a", resolver=res)) == "login[1-2],x[1-2]"
    assert str(NodeSet("@roles:empty", resolver=res)) == ""
    assert res.grouplist("dyn") == ["a", "b"]
    assert NodeSet("n[1-8]", resolver=res).regroup("local") == "@local:rack[1-2]"
    cs_utils = pytest.importorskip("ClusterShell.NodeUtils")
    theirs = cs_utils.GroupResolverConfig([str(cs_conf)])
    assert res.sources() == theirs.sources()
    for group in ("rack1", "rack2"):
        text = cs_nodeset.NodeSet("@local:" + group, resolver=theirs)
        assert str(NodeSet("@local:" + group, resolver=res)) == str(text)


def test_bad_default_source_is_a_config_error(tmp_path):
    conf = tmp_path / "groups.conf"
    conf.write_text("[Main]\ndefault: nope\n[a]\nmap: echo n1\n")
    with pytest.raises(ec.GroupResolverConfigError, match="nope"):
        GroupResolver.from_file(str(conf))


def test_group_names_never_inject_commands(tmp_path):
    src = UpcallGroupSource("s", map_upcall="echo n1 $GROUP")
    assert src.resolve("x;touch hacked") == "n1,x;touch,hacked"
    assert not os.path.exists("hacked")


def test_an_upcall_cut_off_at_its_timeout_says_what_it_printed():
    """audit68 #2: a SLURM command retrying a missing slurm.conf printed why on stderr,
    and the error said only that it timed out."""
    src = UpcallGroupSource(
        "s", map_upcall="echo 'cannot stat file /x/slurm.conf' >&2; sleep 5", timeout=0.5
    )
    with pytest.raises(ec.GroupSourceQueryFailed, match="it said: cannot stat file"):
        src.resolve("g")


def test_std_group_resolver_is_lazy_and_settable(cs_conf, monkeypatch):
    set_std_group_resolver(None)
    monkeypatch.setenv("EASYCLUSTER_GROUPS_CONF", str(cs_conf))
    assert str(NodeSet("n[1-2]")) == "n[1-2]"  # no group: nothing read
    assert str(NodeSet("@local:rack2")) == "n[5-8]"
    assert std_group_resolver() is std_group_resolver()
    other = GroupResolver(GroupSource("x", {"g": "y1"}))
    set_std_group_resolver(other)
    assert str(NodeSet("@g")) == "y1" and ec.grouplist() == ["g"]
    set_std_group_resolver_config(str(cs_conf))
    assert str(NodeSet.fromall("roles")) == "login[1-2],n[1-8]"


SCRIPT = """\
import sys
from {pkg} import NodeSet, RangeSet, RangeSetND, NodeSetParseError, fold, expand
from {pkg} import set_std_group_resolver_config, std_group_resolver
set_std_group_resolver_config(sys.argv[1])
ns = NodeSet("n[1-10],login[1-2]")
ns.difference_update("n[3-4]")
ns.update(NodeSet("@local:rack2"))
print(ns, len(ns), ns[0], ns[-1])
print([str(x) for x in ns.split(3)])
print([str(x) for x in ns.contiguous()])
print(ns.regroup("local"), sorted(ns.groups("local")))
print(RangeSet("1-5,9").striter().__next__(), list(RangeSet("1-5,9").slices()))
nd = RangeSetND([["0-3", "1-2"], ["5", "3"]])
print(nd, len(nd), nd.dim(), list(nd.pads()))
print(fold("a1,a2,a3"), expand("b[1-2]"))
print(sorted(std_group_resolver().grouplist("local")))
try:
    NodeSet("n[1-")
except NodeSetParseError as e:
    print("parse error", type(e).__name__)
"""


def test_a_clustershell_script_runs_after_changing_its_import(cs_conf, tmp_path):
    """The same script, once with ``from ClusterShell.NodeSet import ...`` and once with
    ``from easycluster.nodeset import ...``: the same output, line for line."""
    import subprocess
    import sys

    outputs = {}
    for pkg in ("ClusterShell.NodeSet", "easycluster.nodeset"):
        script = tmp_path / f"{pkg}.py"
        script.write_text(SCRIPT.format(pkg=pkg))
        run = subprocess.run(
            [sys.executable, str(script), str(cs_conf)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "EASYCLUSTER_GROUPS_CONF": str(cs_conf)},
        )
        assert run.returncode == 0, f"{pkg}: {run.stderr}"
        outputs[pkg] = run.stdout.splitlines()
    assert outputs["easycluster.nodeset"][-1] == "parse error NodeSetParseError"
    assert outputs["easycluster.nodeset"] == outputs["ClusterShell.NodeSet"]
