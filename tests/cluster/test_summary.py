"""The final summary and the run's exit code (cluster/summary.py)."""

from __future__ import annotations

import re

import pytest

from easycluster.cli import exitcodes
from easycluster.cluster import summary
from easycluster.cluster.summary import (
    EXIT_FAILED,
    EXIT_HOSTKEY,
    EXIT_INTERRUPTED,
    EXIT_NOSTART,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    Kind,
    Outcome,
    Summary,
)

pytestmark = pytest.mark.timeout(30)

OK = Outcome.ok()
TIMEOUT = Outcome.timeout()
UNREACHABLE = Outcome.unreachable()
HOSTKEY = Outcome.hostkey()
INTERRUPTED = Outcome.interrupted()
NOSTART = Outcome.nostart()


def fail(code):
    return Outcome.failed(code)


def test_every_failing_key_appears_exactly_once_grouped_and_folded():
    outcomes = {
        "n1": OK,
        "n2": fail(3),
        "n3": fail(3),
        "n4": fail(1),
        "n5": TIMEOUT,
        "n6": UNREACHABLE,
        "n7": UNREACHABLE,
        "n8": HOSTKEY,
        "n9": OK,
        "n10": fail(3),
        "n1#2": fail(1),
    }
    s = Summary(outcomes)
    assert s.lines("easycluster shell") == [
        "easycluster shell: n4,n1#2 (2 nodes): exit code 1",
        "easycluster shell: n[2-3,10] (3 nodes): exit code 3",
        "easycluster shell: n5: timed out",
        "easycluster shell: n[6-7] (2 nodes): unreachable",
        "easycluster shell: n8: host key unknown or changed",
        "easycluster shell: 9 of 11 did not succeed",
    ]
    listed = [k for g in s.groups for k in g.keys]
    assert sorted(listed) == sorted(k for k, o in outcomes.items() if not o.succeeded)
    assert len(listed) == len(set(listed))
    assert s.succeeded == ["n1", "n9"]
    assert s.max_code == 3


def test_all_succeeded_prints_nothing_and_exits_0():
    s = Summary({"n1": OK, "n2": Outcome.from_exit(0)})
    assert s.lines("x") == [] and s.exit_code() == 0 and s.exit_code(maxrc=True) == 0
    assert Summary({}).exit_code() == EXIT_OK and Summary({}).lines() == []


# outcomes -> (exit code without -S, with -S)
EXIT_TABLE = [
    ({"a": OK}, 0, 0),
    ({"a": OK, "b": fail(3)}, EXIT_FAILED, 3),
    ({"a": fail(1), "b": fail(7), "c": fail(3)}, EXIT_FAILED, 7),
    ({"a": fail(255)}, EXIT_FAILED, 255),
    ({"a": Outcome.failed(-9)}, EXIT_FAILED, 137),
    ({"a": TIMEOUT, "b": OK}, EXIT_TIMEOUT, EXIT_TIMEOUT),
    ({"a": TIMEOUT, "b": fail(3)}, EXIT_TIMEOUT, EXIT_TIMEOUT),
    ({"a": UNREACHABLE, "b": TIMEOUT, "c": fail(9)}, EXIT_UNREACHABLE, EXIT_UNREACHABLE),
    ({"a": UNREACHABLE, "b": HOSTKEY}, EXIT_HOSTKEY, EXIT_HOSTKEY),
    ({"a": HOSTKEY, "b": INTERRUPTED, "c": OK}, EXIT_INTERRUPTED, EXIT_INTERRUPTED),
    ({"a": NOSTART, "b": fail(3)}, EXIT_NOSTART, EXIT_NOSTART),
    ({"a": NOSTART, "b": HOSTKEY, "c": UNREACHABLE}, EXIT_NOSTART, EXIT_NOSTART),
    ({"a": NOSTART, "b": INTERRUPTED}, EXIT_INTERRUPTED, EXIT_INTERRUPTED),
]


@pytest.mark.parametrize("outcomes,plain,maxrc", EXIT_TABLE)
def test_exit_codes(outcomes, plain, maxrc):
    s = Summary(outcomes)
    assert (s.exit_code(), s.exit_code(maxrc=True)) == (plain, maxrc)


def test_never_0_when_a_node_did_not_succeed():
    for outcome in (fail(1), fail(255), TIMEOUT, UNREACHABLE, HOSTKEY, NOSTART, INTERRUPTED):
        s = Summary({"ok": OK, "bad": outcome})
        assert s.exit_code() != 0 and s.exit_code(maxrc=True) != 0


def test_codes_agree_with_the_cli_table_and_do_not_collide():
    assert EXIT_OK == exitcodes.OK
    assert EXIT_INTERRUPTED == exitcodes.INTERRUPTED
    assert summary.RESERVED_CODES == {
        exitcodes.OK: "success",
        exitcodes.FAILURE: "failure",
        exitcodes.USAGE: "usage",
        exitcodes.INTERRUPTED: "interrupted",
    }
    own = [EXIT_FAILED, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_HOSTKEY, EXIT_NOSTART]
    assert len(set(own)) == len(own)
    assert not set(own) & set(summary.RESERVED_CODES)
    assert not set(own) & {124, 126, 127, 255}  # timeout(1), the shell's, ssh's
    assert all(0 < code < 256 for code in own)


def test_docstring_table_lists_every_code():
    doc = summary.__doc__ or ""
    table = dict(re.findall(r"^(\d+)\s+(\S.*)$", doc, re.M))
    for code in (0, 1, 2, 130, EXIT_FAILED, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_HOSTKEY, 254):
        assert str(code) in table


def test_groups_follow_severity_order():
    s = Summary(
        {"a": INTERRUPTED, "b": HOSTKEY, "c": UNREACHABLE, "d": TIMEOUT, "e": fail(2), "f": NOSTART}
    )
    assert [g.kind for g in s.groups] == [
        Kind.FAILED,
        Kind.TIMEOUT,
        Kind.UNREACHABLE,
        Kind.HOSTKEY,
        Kind.NOSTART,
        Kind.INTERRUPTED,
    ]
    assert s.lines()[-2] == "a: interrupted before it finished"


def test_odd_keys_are_listed_verbatim():
    s = Summary({"foo bar": UNREACHABLE, "n[1]": UNREACHABLE, "n2": UNREACHABLE})
    assert s.lines()[0] == "n2,foo bar,n[1] (3 nodes): unreachable"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Outcome(Kind.FAILED, 0),
        lambda: Outcome(Kind.FAILED, 256),
        lambda: Outcome(Kind.TIMEOUT, 3),
        lambda: Outcome.failed(0),
    ],
)
def test_inconsistent_outcomes_are_refused(build):
    with pytest.raises(ValueError):
        build()


def test_from_exit():
    assert Outcome.from_exit(0) == OK
    assert Outcome.from_exit(2) == Outcome(Kind.FAILED, 2)
    assert Outcome.failed(-15).code == 143
    # a command that could not start here is its own class, not a remote exit code
    assert Outcome.of_slot("failed", 127) == NOSTART and Outcome.of_slot("hup", 127) == fail(127)
