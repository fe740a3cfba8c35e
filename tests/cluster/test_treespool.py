"""Copies' streams in tree mode (treespool.py) and the groomer's rcopy entries
(treegroom.py): a spooled stream gives every consumer all of it from the first byte in
bounded chunks; the engine's feed over it reads back at any offset and keeps nothing per
node; raw data is never split into lines and a void is a barrier."""

from __future__ import annotations

import os
import threading

import pytest

from easycluster.cluster.feed import CHUNK as FEED_CHUNK
from easycluster.cluster.treegroom import RAW, RESET, STDOUT, Groomer
from easycluster.cluster.treespool import CHUNK, SpoolFeed, SpoolStream


def test_a_spool_gives_each_follower_everything_from_the_start_in_bounded_chunks():
    spool = SpoolStream()
    data = os.urandom(2 * CHUNK + 5)
    spool.append(data[: CHUNK + 1])
    spool.append(data[CHUNK + 1 :], eof=True)
    for _ in range(2):  # (a rerouted share starts again from the first byte)
        got = list(spool.follow(lambda: False))
        assert b"".join(c for c, _ in got) == data
        assert max(len(c) for c, _ in got) <= CHUNK
        assert [last for _, last in got] == [False] * (len(got) - 1) + [True]
    spool.close()


def test_a_spool_over_a_complete_file_is_read_not_written(tmp_path):
    path = tmp_path / "src"
    path.write_bytes(b"abc" * 1000)
    closed = []
    f = open(path, "rb")
    spool = SpoolStream.over(f, 3000, lambda: (closed.append(1), f.close()))
    assert spool.eof and list(spool.follow(lambda: False)) == [(b"abc" * 1000, True)]
    with pytest.raises(ValueError):
        spool.append(b"late")
    spool.close()
    spool.close()
    assert closed == [1]  # (once)
    with pytest.raises(OSError):  # a consumer still reading gives up quietly
        spool.read(0)


def test_a_source_that_shrank_ends_the_followers_with_oserror(tmp_path):
    path = tmp_path / "src"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as f:
        spool = SpoolStream.over(f, 1000, f.close)
        with pytest.raises(OSError):
            list(spool.follow(lambda: False))


def test_a_follower_waits_for_more_and_stops_when_told():
    spool = SpoolStream()
    stop = threading.Event()
    got = []
    t = threading.Thread(target=lambda: got.extend(spool.follow(stop.is_set)))
    t.start()
    spool.append(b"first")
    stop.set()
    t.join(10)
    assert not t.is_alive()
    assert got in ([], [(b"first", False)])
    spool.close()


def test_the_feed_counts_what_the_engine_read_and_reads_it_back_at_any_offset():
    spool = SpoolStream()
    data = os.urandom(3 * FEED_CHUNK + 10)
    spool.append(data, eof=True)
    feed = SpoolFeed(spool, source=-1)
    feed.append(data[: FEED_CHUNK + 3])  # (what the engine read from the pipe so far)
    assert feed.total == FEED_CHUNK + 3 and feed.chunks == []  # (nothing kept)
    assert bytes(feed.view(0)) == data[:FEED_CHUNK]
    assert bytes(feed.view(FEED_CHUNK)) == data[FEED_CHUNK : FEED_CHUNK + 3]  # (partial)
    assert bytes(feed.view(FEED_CHUNK + 3)) == b""
    feed.append(data[FEED_CHUNK + 3 :])
    feed.trim(feed.total)  # (nothing to drop: a late node still reads from 0)
    assert bytes(feed.view(FEED_CHUNK + 1)) == data[FEED_CHUNK + 1 : 2 * FEED_CHUNK]
    assert bytes(feed.view(0)) == data[:FEED_CHUNK]
    feed.end()
    with pytest.raises(ValueError):
        feed.append(b"late")
    spool.close()


def test_raw_data_is_not_split_and_a_void_is_a_barrier():
    g = Groomer()
    g.raw("n1", b"head\nda")
    g.raw("n1", b"ta")
    g.line("n2", STDOUT, b"x")
    outputs, _, _, _ = g.take()
    assert ("n1", RAW, b"head\ndata") in outputs and ("n2", STDOUT, b"x\n") in outputs
    g.block("gwA", "n3", RAW, b"same")
    g.void("n3")
    g.block("gwB", "n3", RAW, b"same")  # (not merged into the entry before the void)
    outputs, _, _, _ = g.take()
    assert outputs == [("n3", RAW, b"same"), ("n3", RESET, b""), ("n3", RAW, b"same")]
