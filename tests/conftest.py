"""Shared fixtures: a key file, a real TCP server, and ``rmt`` over every transport."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import ServerProcess  # noqa: E402
from sshd import sshd  # noqa: E402,F401 - the real sshd fixture

import easycluster  # noqa: E402
from easycluster.server import spawn_local  # noqa: E402

TRANSPORTS = ["local", "tcp", "ssh"]


@pytest.fixture(scope="session")
def keyfile(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("keys") / "secret.key")
    assert easycluster.write_key_file(path)
    return path


@pytest.fixture(scope="session")
def key(keyfile):
    return easycluster.read_key_file(keyfile)


@pytest.fixture(scope="session")
def tcp_server(keyfile):
    srv = ServerProcess("-k", keyfile, "-b", "127.0.0.1", "-v")
    yield srv
    srv.stop()


def connect(transport, request, **kw):
    if transport == "local":
        return spawn_local(**kw)
    if transport == "tcp":
        srv = request.getfixturevalue("tcp_server")
        k = request.getfixturevalue("key")
        return easycluster.Client(k, "127.0.0.1", srv.port, **kw)
    if transport == "ssh":  # this venv's Python as the remote one: the tests use numpy
        cls = kw.pop("clientclass", None) or easycluster.Client
        return cls(**request.getfixturevalue("sshd").client_kw(rpython=sys.executable), **kw)
    raise ValueError(transport)


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture
def rmt(transport, request):
    """A connected Client over each transport, closed after the test."""
    c = connect(transport, request)
    yield c
    c.close()


@pytest.fixture
def make_client(transport, request):
    """Factory for extra clients over the test's transport; all closed afterwards."""
    made = []

    def make(**kw):
        c = connect(transport, request, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
