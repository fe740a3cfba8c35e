"""Connection specs: table-driven parsing, EasyCluster 0.22's bugs B1-B3 fixed, from_spec."""

from __future__ import annotations

import pytest

import easycluster
from easycluster import ConfigError, SpecError
from easycluster.client.spec import KEY_WARNING, client_from_spec, parse_connection_spec

K = bytes(range(32))
HEXKEY = K.hex()


def P(host, port=None, key=None, ssh=True, user=None, compress=False, **more):
    return {
        "host": host,
        "port": port,
        "key": key,
        "ssh": ssh,
        "user": user,
        "enable_compression": compress,
        **more,
    }


GOOD = [
    # spec, expected (default_key=None unless the spec brings one)
    ("bob@node1", P("node1", user="bob")),
    ("bob@node1:2222", P("node1", 2222, user="bob")),
    ("node1:ssh=yes", P("node1")),
    ("node1:ssh=1", P("node1")),
    ("node1:ssh=on", P("node1")),
    ("node1:ssh=/opt/bin/ssh", P("node1", ssh="/opt/bin/ssh")),
    ("node1:user=bob", P("node1", user="bob")),
    ("node1:22:user=bob:compress=1", P("node1", 22, user="bob", compress=True)),
    ("bob@node1:compress=0", P("node1", user="bob")),
    (
        "bob@node1:rpython=/usr/bin/python3.11",
        P("node1", user="bob", rpython="/usr/bin/python3.11"),
    ),
    # B2: extra= used to raise NameError (shlex was not imported)
    (
        "bob@node1:extra=-F cfg -o 'ProxyJump=gw'",
        P("node1", user="bob", extra_args=["-F", "cfg", "-o", "ProxyJump=gw"]),
    ),
    ("bob@node1::", P("node1", user="bob")),  # empty fields are skipped
    ("node1:ssh=yes:::compress=yes", P("node1", compress=True)),
    # B3: bracketed IPv6 anywhere
    ("[2001:db8::2]:ssh=yes", P("2001:db8::2")),
    ("user@[2001:db8::2]:22", P("2001:db8::2", 22, user="user")),
    ("user@[2001:db8::2]", P("2001:db8::2", user="user")),
    ("[::1]:2200:ssh=yes", P("::1", 2200)),
    ("[fe80::1%eth0]:ssh=yes", P("fe80::1%eth0")),
    ("10.0.0.7:ssh=yes", P("10.0.0.7")),
    # TCP: no user, no ssh=, and a key
    (f"node1:key={HEXKEY}", P("node1", key=K, ssh=False)),
    (f"node1:11999:key={HEXKEY}", P("node1", 11999, key=K, ssh=False)),
    (f"[::1]:key={HEXKEY}:compress=1", P("::1", key=K, ssh=False, compress=True)),
    (f"node1:ssh=no:key={HEXKEY}", P("node1", key=K, ssh=False)),
]


@pytest.mark.parametrize("spec,expected", GOOD)
def test_good_specs(spec, expected):
    assert parse_connection_spec(spec, warn=False) == expected


BAD = [
    # spec, words the SpecError must contain
    ("", "no host"),
    ("bob@", "no host"),
    ("@node1", "empty user"),
    ("node1:ssh=yes:bogus", "malformed option 'bogus'"),
    ("node1:ssh=yes:=x", "malformed option '=x'"),
    ("node1:ssh=yes:color=red", "unknown option 'color'"),
    ("node1:ssh=yes:compress=1:compress=0", "duplicate option 'compress'"),
    (f"node1:kf=/x:key={HEXKEY}", "duplicate option 'key' in connection spec"),
    ("node1:kf=/x:keyfile=/y", "duplicate option 'keyfile'"),
    ("node1:ssh=yes:compress=maybe", "bad value 'maybe' for compress="),
    ("node1:ssh=", "empty ssh="),
    ("node1:70000:ssh=yes", "port 70000 out of range"),
    ("node1:0:ssh=yes", "port 0 out of range"),
    ("node1:22:23:ssh=yes", "malformed option '23'"),
    ("2001:db8::2", "IPv6 address in brackets"),
    ("[2001:db8::2", "unclosed '['"),
    ("[2001:db8::2]x:ssh=1", "unexpected 'x:ssh=1' after [2001:db8::2]"),
    ("[]:ssh=1", "bad bracketed address"),
    ("bob@node1:user=ann", "user twice"),
    ("bob@node1:ssh=no", "ssh=no"),
    ("bob@node1:extra='unclosed", "cannot split extra="),
    (f"node1:key={HEXKEY}:rpython=python3", "rpython= and extra= are for ssh"),
    (f"node1:key={HEXKEY}:extra=-v", "rpython= and extra= are for ssh"),
    ("node1", "needs a key"),
    ("node1:compress=1", "needs a key"),
    ("-oProxyCommand=sh:ssh=yes", "bad host"),
    ("bob@node1:rpython=", "empty rpython="),
]


@pytest.mark.parametrize("spec,words", BAD)
def test_bad_specs(spec, words):
    with pytest.raises(SpecError, match=None) as ei:
        parse_connection_spec(spec, warn=False)
    assert words in str(ei.value)
    assert isinstance(ei.value, ConfigError) and isinstance(ei.value, ValueError)


def test_keyfile_options(keyfile, key):
    assert parse_connection_spec(f"node1:kf={keyfile}")["key"] == key
    assert parse_connection_spec(f"node1:keyfile={keyfile}")["key"] == key
    with pytest.raises(easycluster.KeyFileError, match="does not exist"):
        parse_connection_spec("node1:kf=/nonexistent/key")


def test_key_option_warns(capsys):
    assert parse_connection_spec(f"node1:key={HEXKEY}")["key"] == K
    assert KEY_WARNING in capsys.readouterr().err
    parse_connection_spec(f"node1:key={HEXKEY}", warn=False)
    assert capsys.readouterr().err == ""


def test_defaults():
    p = parse_connection_spec(
        "node1", default_port=4000, default_key=K, default_enable_compression=True
    )
    assert p == P("node1", 4000, key=K, ssh=False, compress=True)
    assert (
        parse_connection_spec("node1:5:compress=0", default_port=4000, default_key=K)["port"] == 5
    )
    assert parse_connection_spec("bob@node1", default_key=K)["key"] == K  # unused over ssh


def test_custom_options():
    params, custom = parse_connection_spec("bob@node1:slots=4:compress=1", custom_options=["slots"])
    assert custom == {"slots": "4"} and params["enable_compression"] is True
    params, custom = parse_connection_spec("bob@node1:a=1:b=2", custom_options=True)
    assert custom == {"a": "1", "b": "2"}
    assert parse_connection_spec("bob@node1", custom_options=True) == (P("node1", user="bob"), {})
    with pytest.raises(SpecError, match="duplicate option 'a'"):
        parse_connection_spec("bob@node1:a=1:a=2", custom_options=True)
    with pytest.raises(SpecError, match="unknown option 'b'"):
        parse_connection_spec("bob@node1:a=1:b=2", custom_options=["a"])


def test_params_build_a_client_tcp(tcp_server, keyfile):
    """B1: Client.from_spec used to raise TypeError; the params also fit Client(**p)."""
    spec = f"127.0.0.1:{tcp_server.port}:kf={keyfile}:compress=1"
    with easycluster.Client(**parse_connection_spec(spec)) as c:
        assert c.eval("6 * 7") == 42
    with client_from_spec(easycluster.Client, spec) as c:
        assert c.eval("6 * 7") == 42
        assert c._channel.session.compress
    if hasattr(easycluster.Client, "from_spec"):
        with easycluster.Client.from_spec(spec) as c:
            assert c.eval("1 + 1") == 2


def test_from_spec_over_ssh_with_compression(sshd):
    spec = f"sshtest3:ssh=yes:compress=1:extra=-F {sshd.config}"
    with client_from_spec(easycluster.ThreadedClient, spec, connect_timeout=20) as c:
        assert c._channel.session.compress
        data = b"spec " * 200_000
        assert c.eval("len") is len
        assert c.call("len", data) == len(data)
        assert c.peername == "sshtest3"
    with client_from_spec(easycluster.Client, f"{sshd.user}@sshtest4:extra=-F {sshd.config}") as c:
        assert c.peername == f"{sshd.user}@sshtest4"
        assert c.eval("6 * 7") == 42
