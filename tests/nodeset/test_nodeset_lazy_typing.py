"""A script that parses and folds node sets without a groups file never loads ``typing``
(~2-3 ms of its start-up): the node-set modules keep their annotations and type
aliases under ``TYPE_CHECKING = False``, and ``GroupsConfig`` is a named tuple written
out, not a ``typing.NamedTuple``. Each check runs in a fresh interpreter."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest
from helpers import ROOT

from easycluster.nodeset.groupsconf import GroupsConfig
from easycluster.nodeset.groupsources import GroupSource

TOP_LEVEL = """
import sys
import easycluster

ns = easycluster.NodeSet("node[1-10,12]")
ns.update("x[1-3]")
assert str(ns) == "node[1-10,12],x[1-3]", str(ns)
assert str(easycluster.RangeSet("1-5")) == "1-5"
print("typing" in sys.modules)
"""

FROM_NODESET = """
import sys
from easycluster.nodeset import NodeSet, RangeSet

ns = NodeSet("da[1-2]c[1-3]")
ns.update("da3c[1-3]")
assert str(ns) == "da[1-3]c[1-3]" and len(ns) == 9, str(ns)
assert str(NodeSet.fromlist(["a1b2", "a2b2", "a1b3"])) == "a1b[2-3],a2b2"
assert str(RangeSet("1,3,5-7")) == "1,3,5-7"
print("typing" in sys.modules)
"""

# every module of easycluster/nodeset, SLURM's included (none loads typing at import;
# the files are listed with os: pkgutil itself loads typing)
EVERY_MODULE = """
import os, sys
import easycluster.nodeset as package

names = [n[:-3] for n in os.listdir(package.__path__[0]) if n.endswith(".py")]
assert "slurm" in names and "groupsconf" in names, names
for name in names:
    __import__(f"easycluster.nodeset.{name}")
print("typing" in sys.modules)
"""


@pytest.mark.parametrize("script", [TOP_LEVEL, FROM_NODESET, EVERY_MODULE])
def test_node_sets_do_not_load_typing(script):
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]


def test_groups_config_is_a_named_tuple():
    source = GroupSource("local", {"a": "n[1-2]"})
    assert GroupsConfig() == ((), None)
    config = GroupsConfig((source,), "local")
    assert config.sources == (source,) and config.default == "local"
    assert config == GroupsConfig(sources=(source,), default="local") == ((source,), "local")
    assert hash(GroupsConfig()) == hash(((), None))
    assert repr(GroupsConfig()) == "GroupsConfig(sources=(), default=None)"
    with pytest.raises(AttributeError):
        config.default = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.other = 1  # type: ignore[attr-defined]
    plain = GroupsConfig((), "x")
    assert pickle.loads(pickle.dumps(plain)) == plain
    assert type(copy.copy(plain)) is GroupsConfig and copy.deepcopy(plain) == plain


def test_the_nodeset_command_does_not_load_typing():
    out = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "easycluster",
            "nodeset",
            "-f",
            "n1",
            "n2",
            "n3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "n[1-3]"
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()]
    assert "easycluster.nodeset.nodeset" in imported  # (the listing is there)
    assert "typing" not in imported
