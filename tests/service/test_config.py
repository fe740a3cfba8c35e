"""The configuration file parser and how it meets the command line (pure, no sockets)."""

from __future__ import annotations

import pytest

from easycluster.errors import ConfigError, KeyFileError
from easycluster.service import config


def write(tmp_path, text: str) -> str:
    path = tmp_path / "server.conf"
    path.write_text(text)
    return str(path)


def test_values_comments_and_where_they_came_from(tmp_path):
    path = write(
        tmp_path,
        "# a comment\n"
        "port = 12000   # trailing comment\n"
        "\n"
        "allow = 10.0.0.0/8, 192.168.1.0/24\n"
        "allow = 2001:db8::/32\n"
        "keyfile = keys/node.key\n"
        "grace = 2.5\n"
        "ipv6 = no\n",
    )
    got = config.read_config(path)
    assert got["port"] == (12000, f"{path}:2")
    assert got["allow"] == (["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"], f"{path}:5")
    assert got["keyfile"][0] == str(tmp_path / "keys" / "node.key")  # relative to the file
    assert got["grace"][0] == 2.5 and got["ipv6"][0] is False


def test_command_line_beats_file_beats_defaults(tmp_path):
    path = write(tmp_path, "port = 12000\nverbosity = 2\nmax_connections = 5\n")
    s = config.resolve(path, {"port": 13000, "verbosity": None, "allow": None})
    assert s["port"] == 13000 and s.origin("port") == "command line"
    assert s["verbosity"] == 2 and s.origin("verbosity") == f"{path}:2"
    assert s["max_connections"] == 5
    assert s["handshake_timeout"] == 10.0 and s.origin("handshake_timeout") == "default"


def test_default_bind_is_loopback_with_a_file_and_all_without(tmp_path):
    assert config.resolve(write(tmp_path, "port = 1\n"), {})["bind"] == "127.0.0.1"
    assert config.resolve(None, {})["bind"] is None
    assert config.resolve(write(tmp_path, "bind = *\n"), {})["bind"] is None
    assert config.resolve(None, {"bind": "*"})["bind"] is None
    assert config.resolve(write(tmp_path, "bind = 10.1.2.3\n"), {})["bind"] == "10.1.2.3"


def test_empty_allow_means_everyone(tmp_path):
    assert config.resolve(write(tmp_path, "allow =\n"), {})["allow"] == []


@pytest.mark.parametrize(
    "text,expect",
    [
        ("max_connections = -1\n", "bad max_connections '-1'"),
        ("max_pending = 0\n", "bad max_pending '0'"),
        ("handshake_timeout = 0\n", "bad handshake_timeout '0'"),
        ("ipv6 = maybe\n", "bad ipv6 'maybe': expected yes or no"),
        ("bind = \n", "bad bind ''"),
        ("= 3\n", "expected 'key = value'"),
        ("grace = nan\n", "bad grace 'nan'"),
        ("verbosity = 2\nmaxconnections = 3\n", "did you mean 'max_connections'"),
    ],
)
def test_each_mistake_names_line_and_value(tmp_path, text, expect):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.read_config(path)
    assert str(info.value).startswith(f"{path}:{text.count(chr(10))}: ")
    assert expect in str(info.value)


def test_key_file_errors_carry_the_config_line(tmp_path):
    path = write(tmp_path, "port = 0\nkeyfile = /nonexistent/k\n")
    with pytest.raises(KeyFileError, match=rf"{path}:2: keyfile '/nonexistent/k': key file"):
        config.load_key(config.resolve(path, {}))
    # From the command line the plain key-file message stays as it was.
    with pytest.raises(KeyFileError, match=r"^key file /nonexistent/k does not exist"):
        config.load_key(config.resolve(path, {"keyfile": "/nonexistent/k"}))
    assert config.load_key(config.resolve(None, {})) == b""


def test_server_options_from_settings(tmp_path):
    path = write(tmp_path, "port = 0\nallow = 127.0.0.1\nmax_connections = 3\ngrace = 1\n")
    opts = config.server_options(config.resolve(path, {}), b"k" * 32, pidfile="/p")
    assert (opts.port, opts.bind, opts.allow, opts.max_connections, opts.grace, opts.pidfile) == (
        0,
        "127.0.0.1",
        ("127.0.0.1",),
        3,
        1.0,
        "/p",
    )


def test_set_values_replaces_first_line_or_appends():
    text = "# port = 1\nport = 2\nbind = 127.0.0.1\n"
    out = config.set_values(text, {"port": "3", "grace": "4"})
    assert out == "# port = 1\nport = 3\nbind = 127.0.0.1\ngrace = 4\n"
