"""The opt-in remote cache of the ssh bootstrap (``remote_cache``), against the real sshd:
the first connection sends the server's code and leaves it on the remote host, the next
ones send its digest only; a cached file that does not hash to its name is never used;
a folder others may write is not cached in; a Python of another bytecode version gets
the source as without the cache."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from typing import List

import pytest
from helpers import other_magic_python

import easycluster
from easycluster import ConfigError, define_common
from easycluster.launch import payload, ssh
from easycluster.remote import stage1

define_common("""
def cache_apply(f, x):
    return f(x)
""")


@pytest.fixture
def statuses(monkeypatch: pytest.MonkeyPatch) -> List[bytes]:
    """The status lines stage 1 answered, connection after connection."""
    seen: List[bytes] = []
    real = ssh._Bootstrap._status

    def spy(self: ssh._Bootstrap, out: bytearray, source: bytes, code: bytes) -> object:
        got = real(self, out, source, code)
        if got is not None:
            seen.append(got)
        return got

    monkeypatch.setattr(ssh._Bootstrap, "_status", spy)
    return seen


def cached_files(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n.startswith(stage1.CACHE_PREFIX))


def connect_and_call(sshd, **kw: object) -> None:
    with easycluster.Client(**sshd.client_kw(rpython=sys.executable, **kw)) as c:
        assert c.cache_apply(lambda x: x * 2, 21) == 42  # (a lambda: cloudpickle there too)


def test_the_code_is_sent_once_then_named_by_its_digest(sshd, statuses):
    folder = os.path.join(sshd.home, ".cache", "easycluster")
    assert cached_files(folder) == []
    connect_and_call(sshd, remote_cache=True)
    assert statuses == [stage1.WANT_CODE]
    (name,) = cached_files(folder)
    path = os.path.join(folder, name)
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() in name
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    connect_and_call(sshd, remote_cache=True)
    connect_and_call(sshd, remote_cache=True)
    assert statuses == [stage1.WANT_CODE, stage1.READY, stage1.READY]
    assert cached_files(folder) == [name]  # (no temporary file left beside it)


def test_off_by_default_nothing_is_written(sshd, statuses):
    before = sshd.home_listing()
    connect_and_call(sshd)
    assert statuses == [stage1.READY]  # (the code came with the script)
    assert sshd.home_listing() == before


def test_a_cached_file_that_does_not_match_its_digest_is_replaced(sshd, statuses, tmp_path):
    folder = str(tmp_path / "cache")
    connect_and_call(sshd, remote_cache=folder)
    (name,) = cached_files(folder)
    path = os.path.join(folder, name)
    with open(path, "r+b") as f:  # altered on the remote host: one byte flipped
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    connect_and_call(sshd, remote_cache=folder)
    with open(path, "r+b") as f:  # cut short
        f.truncate(100)
    connect_and_call(sshd, remote_cache=folder)
    assert statuses == [stage1.WANT_CODE] * 3
    with open(path, "rb") as f:  # each time stored anew, whole
        assert hashlib.sha256(f.read()).hexdigest() in name
    connect_and_call(sshd, remote_cache=folder)
    assert statuses[-1] == stage1.READY


def test_a_folder_others_may_write_is_neither_read_nor_written(sshd, statuses, tmp_path):
    private = tmp_path / "private"
    connect_and_call(sshd, remote_cache=private)  # (a pathlib path will do)
    (name,) = cached_files(str(private))
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    connect_and_call(sshd, remote_cache=str(folder))
    assert os.listdir(folder) == []
    (folder / name).write_bytes((private / name).read_bytes())  # the right bytes, planted
    connect_and_call(sshd, remote_cache=str(folder))
    assert statuses == [stage1.WANT_CODE] * 3  # (the planted file was not even read)


def test_a_cached_name_that_is_not_a_regular_file_is_passed_over(sshd, statuses, tmp_path):
    folder = tmp_path / "cache"
    connect_and_call(sshd, remote_cache=str(folder))
    (name,) = cached_files(str(folder))
    path = folder / name
    path.unlink()
    os.mkfifo(path)  # (reading a pipe would block the bootstrap)
    connect_and_call(sshd, remote_cache=str(folder))
    assert statuses == [stage1.WANT_CODE, stage1.WANT_CODE]
    assert path.is_file()  # replaced by the code, whole
    connect_and_call(sshd, remote_cache=str(folder))
    assert statuses[-1] == stage1.READY


@pytest.mark.parametrize("bad", [0, 1.5, "a\0b", "two\nlines", "\udc80"])
def test_a_bad_remote_cache_setting_is_refused_before_ssh_runs(sshd, bad):
    with pytest.raises(ConfigError, match="remote_cache"):
        easycluster.Client(**sshd.client_kw(rpython=sys.executable, remote_cache=bad))


def test_a_python_of_another_bytecode_version_gets_the_source(sshd, statuses, tmp_path):
    other = other_magic_python(tmp_path)  # (a stand-in: see helpers)
    folder = str(tmp_path / "cache")
    kw = sshd.client_kw(rpython=other, remote_cache=folder)
    with easycluster.Client(**kw) as c:
        assert c.cache_apply(len, "abc") == 3
    assert statuses == [stage1.WANT_SOURCE]
    assert cached_files(folder) == []


def test_not_with_a_bundle_handed_in(sshd):
    with pytest.raises(ConfigError, match="remote_cache"):
        ssh.open_channel(
            "sshtest0",
            extra_args=["-F", sshd.config],
            payload_data=payload.build("server"),
            remote_cache="",
        )


def test_the_script_carries_the_cache_part_only_when_asked():
    import zlib

    plain = zlib.decompress(payload.stage1_script()).decode()
    cached = zlib.decompress(payload.stage1_script(True)).decode()
    assert "def _store(" in cached and "def _store(" not in plain
    assert len(plain) < len(cached)
    compile(plain, "stage1", "exec")
    compile(cached, "stage1", "exec")
