"""``easycluster nodeset`` with a full group configuration (tests/nodeset/groups_cfg):
every node of a source, listing groups (audit 49: F1, F2, F6, F11)."""

from __future__ import annotations

import pytest
from helpers import run_main

from easycluster.cli.nodeset import main

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def cfg(groups_cfg, monkeypatch):
    monkeypatch.setenv("EASYCLUSTER_GROUPS_CONF", str(groups_cfg))
    return groups_cfg


def run(argv, capsys, monkeypatch, stdin=""):
    return run_main(main, argv, capsys, monkeypatch, stdin)


ALL_CASES = [
    (["-f", "-a", "-s", "cpu"], "example[32-159]\n"),
    (["-f", "@cpu:*"], "example[32-159]\n"),
    (["-f", "-a", "-s", "up"], "n[1-4,6-10]\n"),
    (["-c", "-a", "-s", "ws"], "9\n"),
]


@pytest.mark.parametrize("argv,expected", ALL_CASES)
def test_every_node_is_the_union_of_the_groups(argv, expected, cfg, capsys, monkeypatch):
    assert run(argv, capsys, monkeypatch) == (0, expected, "")


def test_listing_reads_a_group_in_its_own_source(cfg, capsys, monkeypatch):
    # roles:all is '@io,@compute' (roles' own io and compute), racks:new '@rack[2,4]'
    code, out, err = run(["-LL"], capsys, monkeypatch)
    assert code == 0
    assert "@roles:all example[2,4-5,32-159]\n" in out
    assert "@racks:new example[4-5,156-159]\n" in out
    assert "@cpu:hsw example[64-159]\n" in out
    # naming another source with -s changes nothing of that
    for argv in (["-L", "-s", "racks"], ["-LL", "-s", "racks"], ["-LLL", "-s", "roles"]):
        code, other, _ = run(argv, capsys, monkeypatch)
        assert code == 0 and sorted(other.splitlines()) == sorted(
            run(argv[:1], capsys, monkeypatch)[1].splitlines()
        ), argv


LIST_CASES = [
    # -l -s SOURCE names the groups @SOURCE:group, as ClusterShell (feed them back as is)
    (
        ["-l", "-s", "racks"],
        "@racks:new\n@racks:old\n@racks:rack1\n@racks:rack2\n"
        "@racks:rack3\n@racks:rack4\n@racks:rack5\n",
    ),
    (["-l", "-s", "racks", "-G"], "@new\n@old\n@rack1\n@rack2\n@rack3\n@rack4\n@rack5\n"),
    (["-ll", "-s", "roles", "example2"], "@roles:all example2\n@roles:io example2\n"),
    (["-ll", "-s", "cpu"], "@cpu:hsw example[64-159]\n@cpu:ivy example[32-63]\n"),
    (["-lll", "-s", "cpu"], "@cpu:hsw example[64-159] 96\n@cpu:ivy example[32-63] 32\n"),
    # with node sets given: in the set / in the group, as ClusterShell
    (
        ["-lll", "n[3-4]", "login1"],
        "@all login1,n[3-4] 3/26\n@compute n[3-4] 2/10\n"
        "@gpu n[3-4] 2/3\n@login login1 1/2\n@nested login1,n[3-4] 3/5\n",
    ),
    (["-l", "@ws:f"], ""),  # nodes given that no group of local holds
]


@pytest.mark.parametrize("argv,expected", LIST_CASES)
def test_listing_forms(argv, expected, cfg, capsys, monkeypatch):
    assert run(argv, capsys, monkeypatch) == (0, expected, "")


def test_listing_with_only_an_operation_reads_no_stdin(cfg, capsys, monkeypatch):
    # ClusterShell's -l reads stdin only for '-'; -x alone filters from an empty set
    code, out, err = run(["-l", "-x", "n1"], capsys, monkeypatch, stdin="n[1-10]\n")
    assert (code, out) == (0, "") and "empty left operand" in err
    code, out, err = run(["-l", "-"], capsys, monkeypatch, stdin="n1\n")
    assert (code, out, err) == (0, "@all\n@compute\n", "")


def calls(cfg):
    log = cfg.parent / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_names_only_runs_no_map_upcall(cfg, capsys, monkeypatch):
    code, out, err = run(["-l", "-s", "ext"], capsys, monkeypatch)
    assert (code, out, err) == (0, "@ext:db\n@ext:empty\n@ext:gog\n@ext:mixed\n@ext:web\n", "")
    assert calls(cfg) == ["list"]
    code, out, _ = run(["-L"], capsys, monkeypatch)
    assert code == 0 and "@ext:gog\n" in out and "@ex:web\n" in out
    assert all(call == "list" for call in calls(cfg))
    code, out, _ = run(["-ll", "-s", "ext"], capsys, monkeypatch)  # nodes: map needed
    assert code == 0 and "@ext:gog db[01-03],web[1-4]\n" in out
    assert "map gog" in calls(cfg)


def test_a_source_without_list_upcall(cfg, capsys, monkeypatch):
    code, out, err = run(["-l", "-s", "maponly"], capsys, monkeypatch)
    assert code == 1 and out == "" and "'maponly' has no 'list' upcall" in err
    code, out, err = run(["-L"], capsys, monkeypatch)  # -L: a warning, the rest listed
    assert code == 0 and "@local:adm\n" in out and "@ws:f\n" in out
    assert "source 'maponly' cannot list groups" in err and "'extra'" in err
    code, out, err = run(["-q", "-L"], capsys, monkeypatch)
    assert code == 0 and err == ""
    # @@source asks for its group names: an error, not an empty set (as ClusterShell)
    code, out, err = run(["-f", "@@maponly"], capsys, monkeypatch)
    assert code == 1 and out == "" and "'maponly' has no 'list' upcall" in err


@pytest.fixture
def failing(cfg):
    """The configuration with a source whose map upcall fails, listed before others."""
    text = cfg.read_text().replace(
        "[local]", "[failing]\nmap: echo oops >&2; exit 3\nlist: echo a; echo b\n\n[local]"
    )
    cfg.write_text(text)
    return cfg


def test_a_failing_source_does_not_hide_the_others(failing, capsys, monkeypatch):
    code, out, err = run(["-L"], capsys, monkeypatch)  # names only: no map, no failure
    assert code == 0 and "@failing:a\n@failing:b\n" in out
    for argv in (["-LL"], ["-LLL"], ["-LL", "n1", "example2"]):
        code, out, err = run(argv, capsys, monkeypatch)
        assert code == 1, argv
        assert "@local:compute " in out and "@roles:all " in out, argv
        assert "@failing:" not in out, argv
        assert "'failing'" in err and "exited with 3: oops" in err, argv
        errors = [line for line in err.splitlines() if ": warning: " not in line]
        assert len(errors) == 1 and err.endswith(errors[0] + "\n"), argv  # one, at the end
    code, out, err = run(["-ll", "-s", "failing"], capsys, monkeypatch)  # -l: that source
    assert code == 1 and out == "" and "exited with 3: oops" in err


def test_output_format_resolves_no_group(cfg, capsys, monkeypatch):
    # '@%s' used to make group names out of node names, and run their upcalls
    assert run(["-f", "-O", "@%s", "compute"], capsys, monkeypatch) == (0, "@compute\n", "")
    code, out, err = run(["-f", "-s", "ext", "-O", "@%s", "web[1-2]"], capsys, monkeypatch)
    assert (code, out, err) == (0, "@web[1-2]\n", "") and calls(cfg) == []
