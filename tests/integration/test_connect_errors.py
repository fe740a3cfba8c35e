"""Connection errors a new user meets say which server and what to do (issue 17 item 7):
a TCP client pointed at an ssh port, a wrong key, nobody listening."""

from __future__ import annotations

import pytest
from sshd import free_port

import easycluster
from easycluster import AuthenticationError, ConnectError, ProtocolError

HOST = "127.0.0.1"


@pytest.mark.timeout(20)  # (connect_timeout is 30: the answer must not wait for it)
def test_a_tcp_client_at_an_ssh_port_is_told_at_once(sshd, key):
    with pytest.raises(ProtocolError, match="this port speaks ssh") as info:
        easycluster.Client(key, HOST, sshd.port, connect_timeout=30)
    assert f"{HOST}:{sshd.port}: " in str(info.value)
    assert "Client(host=HOST)" in str(info.value)


def test_a_wrong_key_names_host_and_port(tcp_server):
    with pytest.raises(AuthenticationError) as info:
        easycluster.Client(easycluster.generate_key(), HOST, tcp_server.port, connect_timeout=5)
    assert f"{HOST}:{tcp_server.port}" in str(info.value)


def test_nobody_listening_names_host_and_port(key):
    port = free_port()
    with pytest.raises(ConnectError, match=f"{HOST}:{port}"):
        easycluster.Client(key, HOST, port, connect_timeout=5)


def test_a_server_without_cloudpickle_says_so_before_listening(keyfile):
    """``python -m easycluster -S`` from a checkout, without the dependencies: a clear
    error at once, not a listening server whose connections then die."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r}); from easycluster.cli import main; "
        f"sys.exit(main(['-S', '-k', {keyfile!r}, '-b', '127.0.0.1', '-p', '0']))"
    )
    # -S: no site-packages, so no cloudpickle
    run = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 1
    assert "cloudpickle is not installed" in run.stderr
    assert "serving on" not in run.stderr
