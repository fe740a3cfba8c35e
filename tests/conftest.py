"""Shared fixtures: a key file, a real TCP server, ``rmt`` over every transport,
``closing`` for sockets and channels a test opens by hand, and ``groups_cfg`` (a
copy of the node-group configuration in tests/nodeset/groups_cfg)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import ServerProcess, connect, live_children  # noqa: E402
from netns import netns  # noqa: E402,F401 - the network-namespace fixture (tree mode)
from slurm import healed, inside, slurm, slurm_cluster  # noqa: E402,F401 - real SLURM fixtures
from sshd import sshd  # noqa: E402,F401 - the real sshd fixture

import easycluster  # noqa: E402

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
    with ServerProcess("-k", keyfile, "-b", "127.0.0.1", "-v") as srv:
        yield srv


@pytest.fixture
def no_leftover_children(request):
    """Fails the test if it leaves a child process of this one running (the session's
    sshd, and spawn_local's zygote when the test uses ``rpc_task``, are not leftovers:
    they are made before the count). Use it with ``pytest.mark.usefixtures``."""
    if "sshd" in request.fixturenames:
        request.getfixturevalue("sshd")
    if "rpc_task" in request.fixturenames:
        from easycluster.server import spawn_local

        spawn_local().close()  # (the zygote it starts is kept for the process)
    before = live_children()
    yield
    left = live_children() - before
    assert not left, f"child processes left behind: {sorted(left)}"


@pytest.fixture
def closing():
    """``closing(thing)`` returns ``thing`` and closes it after the test, however the test
    ends (last opened, first closed): for sockets, channels and listeners opened by hand."""
    with contextlib.ExitStack() as stack:
        yield lambda thing: stack.enter_context(contextlib.closing(thing))


@pytest.fixture
def groups_cfg(tmp_path):
    """A private copy of tests/nodeset/groups_cfg; returns its groups.conf path.

    A copy, so upcalls run (and log to ``calls.log``) outside the source tree and a
    test may add sections of its own."""
    here = os.path.join(os.path.dirname(__file__), "nodeset", "groups_cfg")
    shutil.copytree(here, tmp_path / "cfg")
    return tmp_path / "cfg" / "groups.conf"


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
