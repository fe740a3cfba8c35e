"""What the ssh bootstrap ships, against the real sshd: compiled code to a Python of this
one's bytecode version, source to any other, the bundle handed in by a caller (tree
mode), and what the remote server loads only on first need.

The one stand-in: an interpreter that reports a magic number no Python has (this
machine may have no Python of another version; test_ssh.py's ``test_real_other_pythons_
serve`` runs the real ones where there are).
"""

from __future__ import annotations

import sys

import pytest
from helpers import OTHER_MAGIC, other_magic_python

import easycluster
from easycluster import ConfigError, define_common
from easycluster.client.client import Client
from easycluster.launch import payload
from easycluster.launch.ssh import open_channel

define_common("""
def payload_apply(f, x):
    return f(x)
""")

SOURCE_OF = (
    "__import__('sys').modules['easycluster.errors'].__loader__.get_source('easycluster.errors')"
)
LOADED = "sorted(m for m in ('cloudpickle', 'dataclasses') if m in __import__('sys').modules)"


def test_same_python_gets_code_and_loads_cloudpickle_on_first_need(sshd):
    with easycluster.Client(**sshd.client_kw(rpython=sys.executable)) as c:
        assert c.eval(SOURCE_OF) is None  # code objects came, not source
        assert c.eval("__import__('sys').modules['easycluster.errors'].__spec__.origin") == (
            "<easycluster-ssh>/easycluster/errors.py"
        )
        assert c.eval(LOADED) == []
        assert c.payload_apply(lambda x: x * 3, 14) == 42  # a lambda: cloudpickle, both ends
        assert "cloudpickle" in c.eval(LOADED)


def test_a_python_of_another_bytecode_version_gets_the_source(sshd, tmp_path):
    other = other_magic_python(tmp_path)  # (a stand-in: see helpers)
    with easycluster.Client(**sshd.client_kw(rpython=other)) as c:
        assert c.eval("__import__('_frozen_importlib_external').MAGIC_NUMBER") == OTHER_MAGIC
        source = c.eval(SOURCE_OF)
        assert isinstance(source, str) and "class ConnectionLost" in source
        assert c.payload_apply(lambda x: x + 1, 41) == 42
        with pytest.raises(ZeroDivisionError):
            c.eval("1 / 0")


def test_a_bundle_handed_in_is_sent(sshd):
    """Tree mode hands a bundle built elsewhere to ``open_channel(payload_data=...)``."""
    bundle = payload.build("server")
    client = Client(connect_timeout=20)
    channel, closer, name = open_channel(
        "sshtest0",
        extra_args=["-F", sshd.config],
        options=client.wire_options(),
        timeout=20,
        payload_data=bundle,
    )
    client.attach(channel, name, closer)
    try:
        assert client.payload_apply(len, "abc") == 3
    finally:
        client.close()


def test_a_payload_that_is_not_a_bundle_is_refused_before_ssh_runs(sshd):
    with pytest.raises(ConfigError, match="bad payload_data"):
        open_channel("sshtest0", extra_args=["-F", sshd.config], payload_data=b"print(1)")
