"""Per-slot results without processes: slot keys, bounded buffers, the getters."""

from __future__ import annotations

from easycluster.cluster.feed import StdinFeed
from easycluster.cluster.results import TAIL_MAX, Results, message


def run(results: Results, key: str, out: bytes = b"", err: bytes = b"", rc=0):
    slot = results.slot(key)
    slot.state.start()
    if out:
        slot.state.read()
        slot.keep("stdout", out, None, False)
    if err:
        slot.state.read()
        slot.keep("stderr", err, None, True)
    if rc is None:
        slot.state.timeout()
    else:
        slot.state.exit(rc)


def test_a_node_listed_twice_gets_two_slots_never_merged():
    r = Results()
    keys = [r.new_slot(n, i).key for i, n in enumerate(["n1", "n2", "n1", "n1"])]
    assert keys == ["n1", "n2", "n1#2", "n1#3"]
    assert [r.slot(k).node for k in keys] == ["n1", "n2", "n1", "n1"]
    assert [r.slot(k).rank for k in keys] == [0, 1, 2, 3]


def test_a_node_literally_named_like_a_slot_key_is_not_overwritten():
    r = Results()
    assert r.new_slot("x#2", 0).key == "x#2"
    assert r.new_slot("x", 1).key == "x"
    assert r.new_slot("x", 2).key == "x#3"  # (x#2 is taken by the other node)
    assert len(r.slots) == 3


def test_getters_gather_identical_outputs_and_codes_in_slot_order():
    r = Results()
    for i, n in enumerate(["a", "b", "c", "a", "d"]):
        r.new_slot(n, i)
    run(r, "a", b"same\n", b"warn\n", 0)
    run(r, "b", b"other\n", rc=2)
    run(r, "c", b"same\n", b"warn\n", 0)
    run(r, "a#2", b"same\n", rc=0)
    run(r, "d", rc=None)  # timed out
    assert list(r.iter_buffers()) == [(b"same", ["a", "c", "a#2"]), (b"other", ["b"])]
    assert list(r.iter_errors()) == [(b"warn", ["a", "c"])]
    assert list(r.iter_retcodes()) == [(0, ["a", "c", "a#2"]), (2, ["b"])]
    assert r.max_retcode() == 2
    assert list(r.iter_keys_timeout()) == ["d"] and r.num_timeout() == 1
    assert list(r.iter_status()) == [("hup", ["a", "b", "c", "a#2"]), ("timeout", ["d"])]
    assert r.succeeded() == ["a", "c", "a#2"]


def test_max_retcode_is_none_when_every_node_timed_out():
    r = Results()
    r.new_slot("a", 0)
    run(r, "a", rc=None)
    assert r.max_retcode() is None and list(r.iter_retcodes()) == []


def test_buffers_keep_at_most_the_limit_and_count_the_rest():
    r = Results()
    slot = r.new_slot("flood", 0)
    for _ in range(100):
        slot.keep("stdout", b"x" * 1000, 4096, False)
    slot.keep("stderr", b"e" * 10, 4096, True)
    assert len(slot.stdout) == 4096 and slot.dropped == 100 * 1000 - 4096
    assert bytes(slot.stderr) == b"e" * 10
    empty = r.new_slot("quiet", 1)
    empty.keep("stdout", b"abc", 0, False)
    assert empty.stdout == b"" and empty.dropped == 3


def test_the_tail_kept_for_classifying_is_bounded():
    r = Results()
    slot = r.new_slot("n", 0)
    for _ in range(10):
        slot.keep("stderr", b"y" * 1000, 0, True)
    slot.keep("stderr", b"Connection refused", 0, True)
    assert len(slot.tail) == TAIL_MAX and slot.tail.endswith(b"Connection refused")


def test_message_drops_one_final_newline():
    assert message(b"a\nb\n") == b"a\nb"
    assert message(b"a\n\n") == b"a\n"
    assert message(b"a") == b"a"


def test_the_stdin_feed_shares_chunks_and_drops_what_everyone_passed():
    feed = StdinFeed(b"hello ", eof=False)
    feed.append(b"world")
    assert bytes(feed.view(0)) == b"hello " and bytes(feed.view(3)) == b"lo "
    assert bytes(feed.view(6)) == b"world" and bytes(feed.view(11)) == b""
    feed.trim(5)  # someone still needs byte 5
    assert feed.base == 0
    feed.trim(6)
    assert feed.base == 6 and bytes(feed.view(8)) == b"rld"
    feed.end()
    assert feed.eof
    try:
        feed.append(b"more")
    except ValueError as e:
        assert "after set_write_eof" in str(e)
    else:
        raise AssertionError("append after end")
