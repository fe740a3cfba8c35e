"""The stdin stream of tree mode (treestdin.py): every consumer gets it all, in order,
from the first byte; a pump into a pipe ends when the reader goes away."""

from __future__ import annotations

import os
import threading

import pytest

from easycluster.cluster.treestdin import StdinStream, pump, read_into


def test_each_follower_gets_every_chunk_from_the_start_and_the_end_once():
    stream = StdinStream()
    stream.append(b"a")
    stream.append(b"b", eof=True)
    for _ in range(2):  # (a rerouted share starts again from the first byte)
        assert list(stream.follow(lambda: False)) == [(b"a", False), (b"b", True)]


def test_the_end_comes_with_the_last_chunk_or_alone_when_nothing_came():
    stream = StdinStream()
    stream.append(b"x")
    stream.append(b"", eof=True)
    assert list(stream.follow(lambda: False)) == [(b"x", True)]
    empty = StdinStream()
    empty.append(b"", eof=True)
    assert list(empty.follow(lambda: False)) == [(b"", True)]


def test_bytes_after_the_end_are_refused():
    stream = StdinStream()
    stream.append(b"", eof=True)
    with pytest.raises(ValueError):
        stream.append(b"late")


def test_a_follower_waits_for_more_and_stops_when_told():
    stream = StdinStream()
    stop = threading.Event()
    got = []
    reader = threading.Thread(target=lambda: got.extend(stream.follow(stop.is_set)))
    reader.start()
    stream.append(b"one")
    stop.set()
    reader.join(10)
    assert not reader.is_alive()
    assert got in ([], [(b"one", False)])


def test_pump_and_read_into_carry_a_stream_through_pipes_whole():
    data = os.urandom(300_000)  # (more than a pipe holds: the pump waits for the reader)
    src_r, src_w = os.pipe()
    out_r, out_w = os.pipe()
    stream = StdinStream()
    try:
        feeder = threading.Thread(target=read_into, args=(stream, src_r, lambda: False))
        pumper = threading.Thread(target=pump, args=(stream, out_w, lambda: False))
        feeder.start()
        pumper.start()
        writer = threading.Thread(target=lambda: (os.write(src_w, data), os.close(src_w)))
        writer.start()
        got = bytearray()
        while True:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            got += chunk
        for t in (writer, feeder, pumper):
            t.join(10)
        assert bytes(got) == data and stream.eof
    finally:
        os.close(src_r)
        os.close(out_r)


def test_pump_ends_quietly_when_nobody_reads():
    out_r, out_w = os.pipe()
    stream = StdinStream()
    stream.append(b"x" * 200_000, eof=True)
    os.close(out_r)
    pumper = threading.Thread(target=pump, args=(stream, out_w, lambda: False))
    pumper.start()
    pumper.join(10)
    assert not pumper.is_alive()  # (EPIPE taken quietly; the pump closed out_w)
