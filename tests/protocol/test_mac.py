"""``protocol/mac.py`` computes exactly the standard HMAC-SHA256 tags, with either
SHA-256 (the interpreter's own until its budget is spent, then OpenSSL's)."""

import hmac
import os

import pytest
from helpers import run_fresh

from easycluster.protocol import mac as mac_module
from easycluster.protocol.mac import BUILTIN_BUDGET, Mac

OPENSSL = type(__import__("hashlib").sha256())


@pytest.fixture(autouse=True, params=["builtin", "openssl"])
def impl(request, monkeypatch):
    """Every test twice: as a process that has not loaded OpenSSL yet, and one that has
    (this one has: pytest's own imports load hashlib)."""
    if request.param == "builtin":
        if mac_module._BUILTIN is None:
            pytest.skip("this Python has no SHA-256 of its own")
        monkeypatch.setattr(mac_module, "_OPENSSL_MODULE", "_no_such_module")
        monkeypatch.setattr(mac_module, "_left", [BUILTIN_BUDGET])  # a fresh process's
    return request.param


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


def test_macs_use_the_builtin_sha256_until_the_process_spent_its_budget(impl):
    key = os.urandom(32)
    mac, other = Mac(key), Mac(key)
    if impl == "openssl":
        assert not mac.builtin and type(mac.inner) is OPENSSL
        return
    assert mac.builtin and type(mac.inner) is not OPENSSL
    msg = os.urandom(10_000)
    n = 0
    while mac.builtin:  # each tag right, on either side of the move
        assert mac.digest(msg) == hmac.digest(key, msg, "sha256")
        n += 1
    assert n == -(-BUILTIN_BUDGET // (len(msg) + 64))  # the message and a block each
    assert type(mac.inner) is OPENSSL and type(mac.outer) is OPENSSL
    assert mac.digest(msg) == hmac.digest(key, msg, "sha256")
    assert mac.frame(b"h" * 20, msg)[-32:] == Mac(key).frame(b"h" * 20, msg)[-32:]
    # the budget is the process's: another Mac moves at its next message, a new one too
    for later in (other, Mac(key)):
        assert later.builtin and type(later.inner) is not OPENSSL
        assert later.digest(b"m") == hmac.digest(key, b"m", "sha256")
        assert not later.builtin and type(later.inner) is OPENSSL


def test_a_large_message_moves_to_openssl_at_once(impl):
    key = os.urandom(32)
    mac = Mac(key)
    h = mac.start()  # (a tag computed piece by piece: for large frames only)
    assert not mac.builtin and type(mac.inner) is OPENSSL
    h.update(b"x" * 100_000)
    assert h.digest() == hmac.digest(key, b"x" * 100_000, "sha256")
    later = Mac(key)  # the budget was the process's: spent for every Mac
    assert later.digest(b"m") == hmac.digest(key, b"m", "sha256")
    assert not later.builtin and type(later.inner) is OPENSSL


def test_a_process_hashes_a_handshake_and_small_frames_without_loading_openssl():
    code = """
        import sys
        from helpers import session_pair
        from easycluster.protocol import frames
        c, s = session_pair(b"k" * 32, b"k" * 32)
        data = b"".join(c.pack(frames.FT_REQUEST, b"x" * 100))
        view = s.reader.buffer(); view[: len(data)] = data
        [f] = s.reader.advance(len(data))
        assert bytes(f.payload) == b"x" * 100
        print(sorted(m for m in ("hmac", "hashlib", "_hashlib") if m in sys.modules))
        big = b"".join(bytes(p) for p in c.pack(frames.FT_REQUEST, b"y" * 100_000))
        print("_hashlib" in sys.modules)
    """
    assert run_fresh(code).split("\n")[:2] == ["[]", "True"]


def test_ends_on_different_sha256s_understand_each_other(impl, monkeypatch):
    from easycluster.protocol import frames

    k1, k2 = os.urandom(32), os.urandom(32)
    patched = mac_module._openssl_loaded
    monkeypatch.setattr(mac_module, "_openssl_loaded", lambda: True)
    server = frames.Session(k2, k1, frames.DIR_S2C, frames.DIR_C2S)  # on OpenSSL's
    monkeypatch.setattr(mac_module, "_openssl_loaded", patched)
    client = frames.Session(k1, k2, frames.DIR_C2S, frames.DIR_S2C)  # as the fixture says
    client_macs = (client._send_mac, client.reader._mac)
    assert [m.builtin for m in client_macs] == [impl == "builtin"] * 2
    bodies = [os.urandom(10_000) for _ in range(30)] + [os.urandom(100_000), b"end"]
    on_builtin = []  # the client's sending Mac, after each of its frames
    for sender, receiver in ((client, server), (server, client)):
        got = []
        for body in bodies:  # (30 x 10 kB: past the budget, mid-stream)
            data = b"".join(bytes(memoryview(p).cast("B")) for p in sender.pack(1, body))
            if sender is client:
                on_builtin.append(client._send_mac.builtin)
            pos = 0
            while pos < len(data):
                view = receiver.reader.buffer()
                n = min(len(view), len(data) - pos)
                view[:n] = data[pos : pos + n]
                pos += n
                got += [bytes(f.parts()[0]) for f in receiver.reader.advance(n)]
        assert got == bodies
    assert not any(m.builtin for m in client_macs)  # (moved to OpenSSL's on the way)
    if impl == "builtin":  # the move came between two small frames, not at the large one
        assert on_builtin[:20] == [True] * 20 and on_builtin[29] is False
