"""The plain-data path of ``objects/serialize.py``: the C pickler alone, for large plain
data too; large bytes still leave it so that they travel out of band."""

from __future__ import annotations

import pickle

import pytest

from easycluster.objects import serialize


@pytest.mark.parametrize(
    "obj",
    [
        5,
        "small",
        [1, 2.5, "x", b"y", None, True],
        list(range(100_000)),  # many 64 KiB frames
        {"a": list(range(50_000)), "b": ("s" * 1000,) * 100},
        [b"m" * 60_000 for _ in range(5)],  # bytes below the out-of-band size, framed
    ],
)
def test_plain_data_takes_the_plain_path_whole(obj):
    data = serialize.dumps_plain(obj)
    assert data is not None
    assert pickle.loads(data) == obj
    assert serialize.dumps_plain(obj) == data  # the sink is emptied between pickles


@pytest.mark.parametrize(
    "obj", [[b"x" * 200_000, 1], (1, b"z" * 70_000), [bytearray(70_000)], ["y" * 200_000]]
)
def test_large_payloads_leave_the_plain_path(obj):
    assert serialize.dumps_plain(obj) is None
    main, buffers = serialize.dumps(obj, None, 2)
    assert pickle.loads(main, buffers=buffers) == obj
    after = serialize.dumps_plain([1, 2, 3])  # nothing left over from the bail-out
    assert after is not None and pickle.loads(after) == [1, 2, 3]


def test_large_bytes_travel_out_of_band():
    blob = b"q" * 200_000
    main, buffers = serialize.dumps((1, blob), None, 2)
    assert len(buffers) == 1 and len(main) < 1000
    assert pickle.loads(main, buffers=buffers) == (1, blob)


def test_is_frame_reads_the_header():
    body = b"\x4b\x01" * 10
    frame = b"\x95" + len(body).to_bytes(8, "little") + body
    assert serialize._is_frame(frame)
    assert not serialize._is_frame(frame + b"x")  # the length must match
    assert not serialize._is_frame(b"x" * 70_000)
