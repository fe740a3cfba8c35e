"""Where the commands' default topology comes from (``cluster/treeconfig.py``)."""

from __future__ import annotations

import pytest

from easycluster.cluster.topology import Topology
from easycluster.cluster.treeconfig import default_topology_path, topology_for
from easycluster.cluster.treerelay import as_topology
from easycluster.errors import ConfigError

TEXT = "admin: gw1\ngw1: node[1-2]\n"


def test_the_environment_variable_wins_and_empty_means_flat(tmp_path):
    cfg = tmp_path / "cfg" / "easycluster"
    cfg.mkdir(parents=True)
    (cfg / "topology.conf").write_text(TEXT)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    assert default_topology_path(env) == str(cfg / "topology.conf")
    assert default_topology_path({**env, "EASYCLUSTER_TOPOLOGY": "/x/t.conf"}) == "/x/t.conf"
    assert default_topology_path({**env, "EASYCLUSTER_TOPOLOGY": ""}) is None


def test_home_config_then_clustershell_dir_then_none(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "easycluster").mkdir(parents=True)
    env = {"HOME": str(home), "CLUSTERSHELL_CFGDIR": str(tmp_path / "clush")}
    if default_topology_path({"HOME": str(home), "XDG_CONFIG_HOME": str(home)}) is not None:
        pytest.skip("this machine has a system-wide topology.conf")
    assert default_topology_path(env) is None  # the directory exists, the file does not
    (tmp_path / "clush").mkdir()
    (tmp_path / "clush" / "topology.conf").write_text(TEXT)
    assert default_topology_path(env) == str(tmp_path / "clush" / "topology.conf")
    (home / ".config" / "easycluster" / "topology.conf").write_text(TEXT)
    assert default_topology_path(env) == str(home / ".config" / "easycluster" / "topology.conf")


def test_given_then_flat_then_default():
    env = {"EASYCLUSTER_TOPOLOGY": "/default.conf"}
    assert topology_for("/given.conf", False, env) == "/given.conf"
    assert topology_for(None, True, env) is None
    assert topology_for(None, False, env) == "/default.conf"


def test_as_topology_takes_an_object_a_path_or_the_text(tmp_path):
    path = tmp_path / "t.conf"
    path.write_text(TEXT)
    built = Topology.build(TEXT)
    assert as_topology(built) is built
    for value in (str(path), path, TEXT, {"admin": "gw1", "gw1": "node[1-2]"}):
        assert as_topology(value).to_text() == built.to_text()
    with pytest.raises(ConfigError):
        as_topology("admin gw1\n:")
