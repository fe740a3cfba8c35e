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


@pytest.mark.parametrize("body_len", [0, 1, 19, 20, 27, 28, 100, 5000])
def test_frame_is_header_tag_body_and_mac(body_len):
    # Mac.frame (the packing of every small frame) against the definition, via stdlib hmac
    key, head, body = os.urandom(32), os.urandom(20), os.urandom(body_len)
    tag = hmac.digest(key, head, "sha256")[:16]
    mac = hmac.digest(key, head + tag + body, "sha256")
    out = Mac(key).frame(head, body)
    assert out == head + tag + body + mac
    assert Mac(key).frame(head, memoryview(body)) == out
    assert Mac(key).tag(head) == tag
