"""Key files and the key options: permissions, atomic writes, clear refusals, no empty key."""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import subprocess
import sys
import warnings

import pytest

import easycluster
from easycluster import keys
from easycluster.errors import KeyFileError
from easycluster.service.tcpserver import ServerOptions, TCPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=20):
    return subprocess.run(
        [sys.executable, "-m", "easycluster", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generate_key_is_random_and_32_bytes():
    a, b = keys.generate_key(), keys.generate_key()
    assert len(a) == len(b) == 32 and a != b


def test_write_then_read_round_trip_mode_0600(tmp_path):
    path = str(tmp_path / "k")
    key = os.urandom(32)
    assert keys.write_key_file(path, key) is True
    assert mode(path) == 0o600
    assert keys.read_key_file(path) == key
    assert (tmp_path / "k").read_text() == key.hex() + "\n"


def test_write_makes_a_new_key_when_none_given(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert keys.write_key_file(a) and keys.write_key_file(b)
    assert len(keys.read_key_file(a)) == 32
    assert keys.read_key_file(a) != keys.read_key_file(b)


def test_mode_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = str(tmp_path / "k")
        keys.write_key_file(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = str(tmp_path / "k")
    keys.write_key_file(path, b"\x01" * 32)
    before = (tmp_path / "k").read_bytes()
    assert keys.write_key_file(path, b"\x02" * 32) is False
    assert (tmp_path / "k").read_bytes() == before
    assert keys.write_key_file(path, b"\x02" * 32, overwrite=True) is True
    assert keys.read_key_file(path) == b"\x02" * 32
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["k"]  # no temporary files left behind


def test_refuses_to_overwrite_a_non_key_file_or_a_dangling_symlink(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("precious\n")
    assert keys.write_key_file(str(other)) is False
    assert other.read_text() == "precious\n"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert keys.write_key_file(str(link)) is False
    assert not (tmp_path / "nowhere").exists()


def test_write_is_atomic_no_temp_files_left(tmp_path):
    for i in range(5):
        keys.write_key_file(str(tmp_path / f"k{i}"))
    keys.write_key_file(str(tmp_path / "k0"), overwrite=True)
    keys.write_key_file(str(tmp_path / "k1"))  # refused
    assert sorted(os.listdir(tmp_path)) == [f"k{i}" for i in range(5)]


def test_write_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    def boom(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keys.os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        keys.write_key_file(str(tmp_path / "k"))
    assert os.listdir(tmp_path) == []


def test_refuses_empty_key_to_write(tmp_path):
    with pytest.raises(KeyFileError, match="empty"):
        keys.write_key_file(str(tmp_path / "k"), b"")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("perm", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610])
def test_refuses_group_or_world_readable(tmp_path, perm):
    path = str(tmp_path / "k")
    keys.write_key_file(path)
    os.chmod(path, perm)
    with pytest.raises(KeyFileError, match=f"chmod 600 {path}") as e:
        keys.read_key_file(path)
    assert f"{perm:04o}" in str(e.value)


def test_owner_only_modes_are_fine(tmp_path):
    path = str(tmp_path / "k")
    keys.write_key_file(path, b"\x05" * 32)
    os.chmod(path, 0o400)
    assert keys.read_key_file(path) == b"\x05" * 32


def test_missing_key_file_says_how_to_make_one(tmp_path):
    path = str(tmp_path / "nope")
    with pytest.raises(KeyFileError, match=f"does not exist.*easycluster -g {path}"):
        keys.read_key_file(path)


@pytest.mark.parametrize("content", ["", "\n", "   \n", "\nsecond line\n"])
def test_empty_key_file_is_refused(tmp_path, content):
    path = tmp_path / "k"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="empty.*-O"):
        keys.read_key_file(str(path))


def test_symlinked_key_file_is_refused(tmp_path):
    real = str(tmp_path / "real")
    keys.write_key_file(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(KeyFileError, match="symlink"):
        keys.read_key_file(str(link))


def test_directory_is_refused_with_a_clear_message(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        keys.read_key_file(str(d))


def test_fifo_is_refused(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo, 0o600)
    fd = os.open(fifo, os.O_RDWR)  # a writer exists, so opening it to read cannot block
    try:
        with pytest.raises(KeyFileError, match="not a regular file"):
            keys.read_key_file(fifo)
    finally:
        os.close(fd)


def test_hex_and_passphrase_decoding(tmp_path):
    key = os.urandom(32)
    assert keys.decode_key(key.hex()) == key
    assert keys.decode_key(key.hex().upper()) == key
    assert keys.decode_key(f"  {key.hex()}\n") == key
    phrase = "correct horse battery staple"
    expected = hashlib.pbkdf2_hmac("sha256", phrase.encode(), b"easycluster passphrase", 200_000)
    assert keys.decode_key(phrase) == expected
    with pytest.warns(keys.WeakKeyWarning, match="4 characters"):
        assert keys.decode_key("abcd") != bytes.fromhex("abcd")  # short hex is a passphrase
    assert len(keys.decode_key("a" * 33)) == 32  # odd-length hex too
    path = tmp_path / "pass"
    path.write_text(f"{phrase}\nignored second line\n")
    path.chmod(0o600)
    assert keys.read_key_file(str(path)) == expected
    crlf = tmp_path / "crlf"
    crlf.write_bytes(key.hex().encode() + b"\r\n")
    crlf.chmod(0o600)
    assert keys.read_key_file(str(crlf)) == key


def test_short_passphrases_are_warned_about_everywhere(tmp_path):
    """Item 9 of issue 17: -K, key files, key= in a spec and the service's configuration
    all go through decode_key; 15 characters warn, 16 do not."""
    with pytest.warns(keys.WeakKeyWarning, match="at least 16 characters"):
        keys.decode_key("x" * 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keys.decode_key("x" * 16)
    p = argparse.ArgumentParser()
    keys.add_key_options(p)
    with pytest.warns(keys.WeakKeyWarning):
        keys.key_from_options(p.parse_args(["-K", "sekrit"]), warn=False)


def test_empty_text_key_is_refused():
    for text in ("", "   ", "\n"):
        with pytest.raises(KeyFileError, match="empty"):
            keys.decode_key(text)


def test_argparse_options_keyfile(tmp_path, capsys):
    path = str(tmp_path / "k")
    keys.write_key_file(path, b"\x07" * 32)
    p = argparse.ArgumentParser()
    keys.add_key_options(p)
    assert keys.key_from_options(p.parse_args(["-k", path])) == b"\x07" * 32
    assert keys.key_from_options(p.parse_args(["--keyfile", path])) == b"\x07" * 32
    assert keys.key_from_options(p.parse_args([])) == b""
    assert capsys.readouterr().err == ""


def test_argparse_key_on_command_line_warns(capsys):
    p = argparse.ArgumentParser()
    keys.add_key_options(p)
    key = os.urandom(32)
    assert keys.key_from_options(p.parse_args(["-K", key.hex()])) == key
    err = capsys.readouterr().err
    assert "SECURITY WARNING" in err and "-k FILE" in err
    assert key.hex() not in err  # the key itself is never echoed
    assert keys.key_from_options(p.parse_args(["--key", key.hex()]), warn=False) == key
    assert capsys.readouterr().err == ""


def test_argparse_bad_keyfile_raises_keyfileerror(tmp_path):
    p = argparse.ArgumentParser()
    keys.add_key_options(p)
    with pytest.raises(KeyFileError):
        keys.key_from_options(p.parse_args(["-k", str(tmp_path / "missing")]))


def test_optparse_is_supported_too():
    import optparse

    p = optparse.OptionParser()
    keys.add_key_options(p, "-X", "-x")
    opts, _ = p.parse_args(["-X", "ab" * 16])
    assert keys.key_from_options(opts, warn=False) == bytes.fromhex("ab" * 16)


# -- the command line ------------------------------------------------------------------


def test_cli_generate_refuse_then_overwrite(tmp_path):
    path = str(tmp_path / "cli.key")
    r = run_cli("-g", path)
    assert r.returncode == 0, r.stderr
    assert mode(path) == 0o600
    first = keys.read_key_file(path)
    assert len(first) == 32

    r = run_cli("-g", path)
    assert r.returncode == 2
    assert "already exists" in r.stderr and "-O" in r.stderr
    assert keys.read_key_file(path) == first

    r = run_cli("-g", path, "-O")
    assert r.returncode == 0, r.stderr
    assert keys.read_key_file(path) != first
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["cli.key"]


def test_cli_serve_without_key_refuses_to_start():
    r = run_cli("-S", "-p", "0", "-b", "127.0.0.1", timeout=20)
    assert r.returncode == 2
    assert "refusing to serve without a key" in r.stderr
    assert "easycluster -g" in r.stderr and "-k KEYFILE" in r.stderr
    assert "serving on" not in r.stderr


def test_cli_serve_with_loose_key_file_refuses(tmp_path):
    path = str(tmp_path / "k")
    keys.write_key_file(path)
    os.chmod(path, 0o644)
    r = run_cli("-S", "-p", "0", "-b", "127.0.0.1", "-k", path)
    assert r.returncode == 2
    assert f"chmod 600 {path}" in r.stderr
    assert "serving on" not in r.stderr


def test_cli_serve_with_missing_key_file_refuses(tmp_path):
    path = str(tmp_path / "missing")
    r = run_cli("-S", "-p", "0", "-b", "127.0.0.1", "-k", path)
    assert r.returncode == 2
    assert f"easycluster -g {path}" in r.stderr


# -- no empty key anywhere -------------------------------------------------------------


def test_client_refuses_empty_key_before_connecting():
    # Port 1 on loopback: nothing listens there; the key check must come first.
    with pytest.raises(ValueError, match="empty or missing key"):
        easycluster.Client(b"", "127.0.0.1", 1)
    with pytest.raises(TypeError):
        easycluster.Client("a str key", "127.0.0.1", 1)


def test_a_host_name_as_first_argument_is_refused_with_a_hint():
    """Client('node1') (RPyC's and Fabric's habit) made an unconnected client silently."""
    with pytest.raises(TypeError, match=r"Client\(host='node1'\)"):
        easycluster.Client("node1")


def test_tcp_server_refuses_empty_key():
    with pytest.raises(ValueError, match="empty or missing key"):
        TCPServer(ServerOptions(key=b"", port=0, bind="127.0.0.1"))


def test_server_options_refuse_empty_key():
    with pytest.raises(ValueError):
        ServerOptions(key=b"")
