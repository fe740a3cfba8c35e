"""The gathering engine (cluster/gather.py) and its keys (cluster/slots.py): pure code,
driven with in-memory streams."""

from __future__ import annotations

import io
import random

import pytest

from easycluster.cluster import gather as gather_module
from easycluster.cluster.events import Piece
from easycluster.cluster.gather import (
    HEADER_WIDTH,
    MODES,
    Block,
    Gatherer,
    LineGatherer,
    LineWriter,
    describe,
    header_line,
    reference_block,
    write_gathered,
)
from easycluster.cluster.slots import (
    fold_keys,
    natural_key,
    natural_sorted,
    node_of_key,
    slot_keys,
)
from easycluster.cluster.terminal import Palette

pytestmark = pytest.mark.timeout(30)


def make(records):
    """A Gatherer fed ``(key, line)`` pairs in order (lines as str for readability)."""
    g = Gatherer()
    for key, line in records:
        g.add(key, line.encode())
    return g


def render(g, mode, **kw):
    out = io.BytesIO()
    write_gathered(out, g, mode, **kw)
    return out.getvalue().decode()


def hdr(text):
    line = f"--- {text} "
    return line + "-" * max(3, HEADER_WIDTH - len(line)) + "\n"


# -- keys ---------------------------------------------------------------------------


def test_natural_order_numbers_compare_as_numbers():
    names = ["n10", "n2", "n1", "a", "n01", "n1#2", "r2n1", "r10n1", "r1n10", "r1n9"]
    assert natural_sorted(names) == [
        "a",
        "n01",
        "n1",
        "n1#2",
        "n2",
        "n10",
        "r1n9",
        "r1n10",
        "r2n1",
        "r10n1",
    ]


def test_natural_order_is_total_and_deterministic():
    rng = random.Random(7)
    names = [
        f"{rng.choice('abn')}{rng.randint(0, 30)}{rng.choice(['', 'x', '#2'])}" for _ in range(300)
    ]
    names = list(dict.fromkeys(names))
    shuffled = names[:]
    rng.shuffle(shuffled)
    assert natural_sorted(shuffled) == natural_sorted(names)
    # distinct names never compare equal, so the order does not depend on input order
    assert len({natural_key(n) for n in names}) == len(names)


def test_slot_keys_keep_every_slot():
    assert slot_keys(["n1", "n2", "n1", "n1", "n3"]) == ["n1", "n2", "n1#2", "n1#3", "n3"]
    assert [node_of_key(k) for k in slot_keys(["n1", "n1"])] == ["n1", "n1"]
    assert node_of_key("weird#name") == "weird#name"
    assert node_of_key("#3") == "#3"


FOLDS = [
    (["n1", "n2", "n3"], "n[1-3]"),
    (["n3", "n1"], "n[1,3]"),
    (["n1", "n1#2", "n2#2"], "n1,n[1-2]#2"),
    (["n01", "n1"], "n[1,01]"),
    ([], ""),
    # not node names: printed as they are, after the folded ones, never parsed
    (["n[1-2]", "n1"], "n1,n[1-2]"),
    (["foo bar", "x@y", "n2", "n3"], "n[2-3],foo bar,x@y"),
    (["a,b"], "a,b"),
    (["", "n1"], "n1,"),
]


@pytest.mark.parametrize("keys,text", FOLDS)
def test_fold_keys(keys, text):
    assert fold_keys(keys) == text


# -- blocks -------------------------------------------------------------------------


def test_identical_outputs_share_a_block_in_natural_order():
    g = make(
        [
            ("n10", "b"),
            ("n2", "a"),
            ("n1", "a"),
            ("n3", "c"),
            ("n2", "x"),
            ("n1", "x"),
            ("n10", "x"),
            ("n3", "x"),
        ]
    )
    blocks = g.blocks()
    assert [(b.keys, b.lines, b.nodes) for b in blocks] == [
        (("n1", "n2"), (b"a", b"x"), "n[1-2]"),
        (("n3",), (b"c", b"x"), "n3"),
        (("n10",), (b"b", b"x"), "n10"),
    ]


def test_line_order_matters_and_a_prefix_is_not_equal():
    g = make([("n1", "a"), ("n1", "b"), ("n2", "b"), ("n2", "a"), ("n3", "a")])
    assert [b.keys for b in g.blocks()] == [("n1",), ("n2",), ("n3",)]


def test_slots_of_one_host_are_never_merged():
    g = Gatherer()
    for key in slot_keys(["n1", "n1", "n2"]):
        g.add(key, b"same")
    g.add("n1#2", b"more")
    blocks = g.blocks()
    assert [(b.keys, b.lines) for b in blocks] == [
        (("n1", "n2"), (b"same",)),
        (("n1#2",), (b"same", b"more")),
    ]


def test_codes_split_blocks_and_show_in_headers():
    g = make([("n1", "out"), ("n2", "out"), ("n3", "out")])
    blocks = g.blocks(codes={"n1": 0, "n2": 3, "n3": 0})
    assert [(b.keys, b.code) for b in blocks] == [(("n1", "n3"), 0), (("n2",), 3)]
    assert describe(blocks[0]) == "n[1,3] (2 nodes)"
    assert describe(blocks[1]) == "n2 (exit code 3)"
    assert describe(Block(("a", "b"), (), "a,b", 2)) == "a,b (2 nodes, exit code 2)"


def test_ungathered_blocks_are_one_per_key():
    g = make([("n2", "a"), ("n1", "a")])
    assert [b.keys for b in g.blocks(gather=False)] == [("n1",), ("n2",)]


def test_bytes_pass_through_unchanged():
    g = Gatherer()
    g.add("n\udcff1", b"\xff\xfe bad utf-8")
    g.add("n2", b"\xff\xfe bad utf-8")
    out = io.BytesIO()
    write_gathered(out, g, "lines")
    assert out.getvalue() == b"n2: \xff\xfe bad utf-8\nn\xff1: \xff\xfe bad utf-8\n"


def test_any_text_key_can_be_written():
    g = make([("\ud800odd", "a"), ("n1", "a")])
    out = render(g, "blocks")
    assert out.startswith("--- n1,\\ud800odd (2 nodes) ---") and out.endswith("---\na\n")


def test_reference_is_the_biggest_block_then_the_first():
    a = Block(("n1",), (b"a",), "n1")
    b = Block(("n2", "n3"), (b"b",), "n[2-3]")
    c = Block(("n4", "n5"), (b"c",), "n[4-5]")
    assert reference_block([a, b, c]) is b
    assert reference_block([]) is None


def test_gatherer_bookkeeping():
    g = Gatherer()
    g.extend("n2", [b"a", b"b"])
    g.add_key("n1")
    assert g.sorted_keys() == ["n1", "n2"]
    assert list(g.lines("n2")) == [b"a", b"b"]
    assert list(g.lines("nope")) == []
    assert len(g) == 2 and "n1" in g and "n9" not in g


# -- formats ------------------------------------------------------------------------

SAMPLE = [("n1", "a"), ("n2", "a"), ("n3", "b"), ("n1", "x"), ("n2", "x"), ("n3", "x")]

RENDERED = [
    ("blocks", True, hdr("n[1-2] (2 nodes)") + "a\nx\n" + hdr("n3") + "b\nx\n"),
    ("blocks", False, "a\nx\nb\nx\n"),
    ("per-key", True, hdr("n1") + "a\nx\n" + hdr("n2") + "a\nx\n" + hdr("n3") + "b\nx\n"),
    ("lines", True, "n1: a\nn1: x\nn2: a\nn2: x\nn3: b\nn3: x\n"),
    ("lines", False, "a\nx\na\nx\nb\nx\n"),
    ("block-lines", True, "n[1-2]: a\nn[1-2]: x\nn3: b\nn3: x\n"),
    (
        "diff",
        True,
        "--- n[1-2] (2 nodes)\n+++ n3\n@@ -1,2 +1,2 @@\n-a\n+b\n x\n",
    ),
]


@pytest.mark.parametrize("mode,label,expected", RENDERED)
def test_formats(mode, label, expected):
    assert render(make(SAMPLE), mode, label=label) == expected


def test_every_mode_is_covered_by_the_table():
    assert {mode for mode, _, _ in RENDERED} == set(MODES)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown display mode"):
        render(make(SAMPLE), "fancy")


def test_header_is_padded_but_long_sets_are_not_cut():
    short = header_line(Block(("n1",), (b"",), "n1"))
    assert short == hdr("n1").encode() and len(short) == HEADER_WIDTH + 1
    long_nodes = ",".join(f"host-{i}.example" for i in range(10))
    long = header_line(Block(tuple(long_nodes.split(",")), (b"",), long_nodes)).decode()
    assert long.startswith(f"--- {long_nodes} (10 nodes) ---") and long.endswith("---\n")


def test_blocks_without_lines_are_not_printed_but_diffed():
    g = make([("n1", "a"), ("n2", "a")])
    g.add_key("n3")
    assert render(g, "blocks") == hdr("n[1-2] (2 nodes)") + "a\n"
    assert render(g, "diff") == "--- n[1-2] (2 nodes)\n+++ n3\n@@ -1 +0,0 @@\n-a\n"


def test_diff_of_one_output_is_empty_and_code_only_difference_is_shown():
    assert render(make([("n1", "a"), ("n2", "a")]), "diff") == ""
    g = make([("n1", "a"), ("n2", "a"), ("n3", "a")])
    out = io.BytesIO()
    write_gathered(out, g, "diff", codes={"n1": 0, "n2": 0, "n3": 1})
    assert out.getvalue() == b"--- n[1-2] (2 nodes)\n+++ n3 (exit code 1)\n"


def test_diff_against_the_most_common_output():
    g = make([("n1", "a"), ("n2", "b"), ("n3", "b"), ("n4", "c")])
    assert render(g, "diff") == (
        "--- n[2-3] (2 nodes)\n+++ n1\n@@ -1 +1 @@\n-b\n+a\n"
        "--- n[2-3] (2 nodes)\n+++ n4\n@@ -1 +1 @@\n-b\n+c\n"
    )


def test_colours_only_when_the_palette_has_them():
    palette = Palette.ansi()
    coloured = render(make(SAMPLE), "blocks", palette=palette)
    assert "\x1b[34m--- n[1-2]" in coloured and "\x1b[0m" in coloured
    assert "\x1b" not in render(make(SAMPLE), "blocks", palette=Palette.plain())
    lines = render(make(SAMPLE), "lines", palette=palette)
    assert lines.startswith("\x1b[36mn1:\x1b[0m a\n")
    diff = render(make(SAMPLE), "diff", palette=palette)
    assert "\x1b[31m-a\x1b[0m" in diff and "\x1b[32m+b\x1b[0m" in diff


def test_line_writer_streams_in_arrival_order():
    out = io.BytesIO()
    writer = LineWriter(out)
    writer.write("n2", b"first")
    writer.write("n1", b"second")
    writer.write("n2", b"\xffthird")
    assert out.getvalue() == b"n2: first\nn1: second\nn2: \xffthird\n"
    bare = io.BytesIO()
    LineWriter(bare, label=False).write("n1", b"x")
    assert bare.getvalue() == b"x\n"


def test_line_writer_joins_the_pieces_of_a_long_line(monkeypatch):
    monkeypatch.setattr(gather_module, "JOIN_MAX", 6)
    out = io.BytesIO()
    writer = LineWriter(out)
    writer.write("n1", Piece(b"ab"))
    writer.write("n2", b"other")  # another node's line comes between the pieces
    writer.write("n1", Piece(b"cd"))
    writer.write("n1", b"e")
    writer.write("n1", Piece(b"fgh"))
    writer.write("n1", Piece(b"ijk"))  # JOIN_MAX reached: written as a line of its own
    writer.write("n1", Piece(b"l"))
    writer.end(["n1", "n2"])  # n1 was killed mid-line: what came is still written
    assert out.getvalue() == b"n2: other\nn1: abcde\nn1: fghijk\nn1: l\n"


def test_line_gatherer_writes_each_row_once_every_key_sent_it():
    out = io.BytesIO()
    g = LineGatherer(out, ["n10", "n2", "n1", "n1#2"])
    for key in ("n10", "n2", "n1"):
        g.write(key, b"same")
    assert out.getvalue() == b""  # n1#2 has not sent its first line yet
    g.write("n1#2", b"same")
    assert out.getvalue() == b"n[1-2,10],n1#2: same\n"
    out.seek(0), out.truncate()
    g.write("n10", b"b")
    g.write("n2", b"a")
    g.end(["n1"])  # ended after one line: the next rows do without it
    g.write("n1#2", Piece(b"a"))  # a piece: its line is not whole yet
    assert out.getvalue() == b""
    g.write("n1#2", b"")
    g.write("n2", b"last")
    assert out.getvalue() == b"n2,n1#2: a\nn10: b\n"  # by the first key's natural order
    g.end(["n10", "n1#2"])
    assert out.getvalue().endswith(b"n10: b\nn2: last\n")
    g.end(["n2"])
    bare = io.BytesIO()
    quiet = LineGatherer(bare, ["n1", "n2"], label=False)
    quiet.write("n1", b"x")
    quiet.end(["n2"])
    assert bare.getvalue() == b"x\n"


def test_line_gatherer_bounds_what_waits_for_a_silent_key(monkeypatch):
    monkeypatch.setattr(LineGatherer, "WAITING_MAX", 100)
    out = io.BytesIO()
    g = LineGatherer(out, ["flood", "stopped"])
    for i in range(30):  # 30 lines of 10 bytes: past 100, the oldest rows go without it
        g.write("flood", b"line %5d" % i)
    written = out.getvalue().splitlines()
    assert written[0] == b"flood: line     0" and 18 <= len(written) <= 21
    g.write("stopped", b"late")  # its first line comes in a later row
    g.end(["flood", "stopped"])
    lines = out.getvalue().splitlines()
    assert len(lines) == 31 and b"stopped: late" in lines
    flood = [x for x in lines if x.startswith(b"flood")]
    assert flood == [b"flood: line %5d" % i for i in range(30)]


def test_many_keys_and_lines_gather_to_few_blocks():
    g = Gatherer()
    for j in range(50):
        for i in range(1, 201):
            g.add(f"node{i}", b"odd" if i % 2 and j == 7 else b"line %d" % j)
    blocks = g.blocks()
    assert len(blocks) == 2
    assert blocks[0].nodes.startswith("node[1,3,5,") and blocks[0].nodes.endswith(",199]")
    assert blocks[0].keys[0] == "node1" and len(blocks[0].keys) == 100
    assert blocks[1].keys[0] == "node2" and blocks[1].lines[7] == b"line 7"
