"""Huge ranges (audit 49, F5): set algebra on plain ranges works on their ends, and
what must list indexes one by one refuses above ``EXPAND_LIMIT`` with one clear
error, never a MemoryError or a hang (pytest-timeout would catch a hang)."""

from __future__ import annotations

import random

import pytest

from easycluster.errors import RangeSetTooLarge
from easycluster.nodeset import NodeSet, RangeSet, RangeSetND
from easycluster.nodeset.indexes import EXPAND_LIMIT, combine_runs

pytestmark = pytest.mark.timeout(30)

BIG = "1-1000000000"  # 100 times the limit


def test_combine_runs_table():
    a, b = [(1, 5), (10, 12)], [(4, 10), (20, 20)]
    assert combine_runs(a, b, "|") == [(1, 12), (20, 20)]
    assert combine_runs(a, b, "&") == [(4, 5), (10, 10)]
    assert combine_runs(a, b, "-") == [(1, 3), (11, 12)]
    assert combine_runs(a, b, "^") == [(1, 3), (6, 9), (11, 12), (20, 20)]
    assert combine_runs([], b, "|") == b and combine_runs(a, [], "&") == []


def _random_ranges(rng: random.Random) -> str:
    items = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.3:  # padded, same width at both ends
            lo = rng.randint(0, 5000)
            items.append(f"{lo:05d}-{lo + rng.randint(0, 9000):05d}")
        else:  # may cross index lengths (95-10500)
            lo = rng.randint(0, 20000)
            items.append(f"{lo}-{lo + rng.randint(0, 9000)}")
    for _ in range(rng.randint(0, 5)):
        items.append(str(rng.randint(0, 30000)))
    return ",".join(items)


@pytest.mark.parametrize("seed", range(40))
def test_algebra_on_span_ends_agrees_with_code_sets(seed):
    rng = random.Random(seed)
    left, right = RangeSet(_random_ranges(rng)), RangeSet(_random_ranges(rng))
    mine, theirs = set(left), set(right)  # index strings: the reference
    if rng.random() < 0.5:
        right = RangeSet(sorted(theirs))  # a set held as codes, not spans
    expected = {
        "union": mine | theirs,
        "intersection": mine & theirs,
        "difference": mine - theirs,
        "symmetric_difference": mine ^ theirs,
    }
    for name, names in expected.items():
        got = getattr(left, name)(right)
        assert (str(got), len(got)) == (str(RangeSet(sorted(names))), len(names)), name
        copy = left.copy()
        getattr(copy, name.replace("union", "update") + ("_update" if name != "union" else ""))(
            right
        )
        assert copy == got, name
    assert left.issubset(right) == (mine <= theirs)
    assert left.issuperset(right) == (mine >= theirs)
    assert (left == right) == (mine == theirs)
    assert (left | right).issuperset(left) and (left & right) <= left


SET_OPERATIONS = [
    (f"n[{BIG}]!n5", "n[1-4,6-1000000000]", 999999999),
    (f"n[{BIG}],n5", f"n[{BIG}]", 1000000000),
    (f"n[{BIG}]&n[999999990-2000000000]", "n[999999990-1000000000]", 11),
    (f"n[{BIG}]^n[500000000-2000000000]", "n[1-499999999,1000000001-2000000000]", 1499999999),
    (f"n[{BIG}]!n[1-1000000000]", "", 0),
]


@pytest.mark.parametrize("text,folded,size", SET_OPERATIONS)
def test_set_operations_on_huge_ranges_list_nothing(text, folded, size):
    ns = NodeSet(text)
    assert (str(ns), len(ns)) == (folded, size)


def test_huge_sets_compare_and_cut_without_listing():
    ns = NodeSet(f"n[{BIG}]")
    assert ns == NodeSet(f"n[{BIG}]") and ns != NodeSet(f"n[{BIG}]!n7")
    assert NodeSet("n[5-10]") < ns and ns.issuperset("n[3-1000]") and "n999999999" in ns
    assert ns.index("n999999999") == 999999998 and ns[999999998] == "n999999999"
    assert [str(p) for p in NodeSet(f"n[{BIG}]!n5").contiguous()] == [
        "n[1-4]",
        "n[6-1000000000]",
    ]
    assert RangeSet(BIG).index(1000000000) == 999999999


LISTINGS = [
    lambda: NodeSet(f"n[{BIG}]").expand(),
    lambda: list(NodeSet(f"n[{BIG}]").split(2)),
    lambda: NodeSet(f"n[{BIG}]")[1:3],
    lambda: str(NodeSet(f"n[{BIG}]", autostep=3)),
    lambda: RangeSet("1-1000000000/2") | RangeSet("5"),  # stepped: listed
    lambda: NodeSet("r[1-100000]n[1-100000]") - NodeSet("r1n1"),  # a product: listed
    lambda: RangeSetND([["1-100000", "1-100000"]]).elems(),
]


@pytest.mark.parametrize("listing", LISTINGS)
def test_what_must_list_a_huge_set_refuses_at_once(listing):
    with pytest.raises(RangeSetTooLarge) as info:
        listing()
    assert info.value.limit == EXPAND_LIMIT and info.value.count > EXPAND_LIMIT
    assert str(info.value).startswith("range too large: ") and str(EXPAND_LIMIT) in str(info.value)
    assert isinstance(info.value, ValueError)  # a NodeSetError, as every node-set error


def test_the_limit_itself_is_listed():
    ns = NodeSet("n[1-20000]")
    assert len(ns.expand()) == 20000  # far below: unchanged
    assert len(RangeSet(f"1-{EXPAND_LIMIT * 2}/2") - RangeSet("1")) == EXPAND_LIMIT - 1
