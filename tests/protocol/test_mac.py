"""``easycluster.mac`` computes exactly the standard HMAC-SHA256 tags."""

import hmac
import os

import pytest

from easycluster.protocol.mac import Mac


@pytest.mark.parametrize("key_len", [1, 16, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("msg_len", [0, 1, 55, 56, 64, 80, 1000, 70000])
def test_matches_stdlib_hmac(key_len, msg_len):
    key, msg = os.urandom(key_len), os.urandom(msg_len)
    expected = hmac.digest(key, msg, "sha256")
    mac = Mac(key)
    assert mac.digest(msg) == expected
    assert mac.digest(memoryview(msg)) == expected
    h = mac.start()
    for i in range(0, msg_len, 777):  # piece by piece gives the same tag
        h.update(memoryview(msg)[i : i + 777])
    assert h.digest() == expected


def test_tags_differ_by_key_and_message_and_do_not_interfere():
    a, b = Mac(b"k" * 32), Mac(b"K" * 32)
    assert a.digest(b"m") != b.digest(b"m")
    assert a.digest(b"m") != a.digest(b"n")
    first = a.start()
    first.update(b"abc")
    a.digest(b"something else")  # other uses of the same Mac leave a started tag alone
    assert first.digest() == hmac.digest(b"k" * 32, b"abc", "sha256")
