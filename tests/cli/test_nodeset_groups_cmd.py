"""``easycluster nodeset`` with a full group configuration (tests/nodeset/groups_cfg):
every node of a source, listing groups (audit 49: F1, F2, F6, F11)."""

from __future__ import annotations

import io
import sys

import pytest

from easycluster.cli.nodeset import main

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def cfg(groups_cfg, monkeypatch):
    monkeypatch.setenv("EASYCLUSTER_GROUPS_CONF", str(groups_cfg))
    return groups_cfg


def run(argv, capsys, monkeypatch, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


ALL_CASES = [
    (["-f", "-a", "-s", "cpu"], "example[32-159]\n"),
    (["-f", "@cpu:*"], "example[32-159]\n"),
    (["-f", "-a", "-s", "up"], "n[1-4,6-10]\n"),
    (["-c", "-a", "-s", "ws"], "9\n"),
]


@pytest.mark.parametrize("argv,expected", ALL_CASES)
def test_every_node_is_the_union_of_the_groups(argv, expected, cfg, capsys, monkeypatch):
    assert run(argv, capsys, monkeypatch) == (0, expected, "")
