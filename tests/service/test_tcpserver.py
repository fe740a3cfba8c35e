"""``TCPServer`` in this process: what it holds is closed on its error paths."""

from __future__ import annotations

import socket
import threading

import pytest

import easycluster
from easycluster.service.tcpserver import ServerOptions, TCPServer


def test_serve_forever_outside_the_main_thread_fails_and_closes_the_port():
    # Signal handlers can only be set in the main thread: serve_forever fails at once,
    # and must not leave the listening socket and the wake-up pipe behind.
    server = TCPServer(ServerOptions(key=easycluster.generate_key(), port=0, bind="127.0.0.1"))
    port = server.address()[1]
    failed = []
    t = threading.Thread(target=lambda: failed.append(_failure(server.serve_forever)))
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert isinstance(failed[0], ValueError)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    server.close()  # idempotent


def _failure(func) -> BaseException:
    try:
        func()
    except BaseException as e:
        return e
    raise AssertionError(f"{func} returned")


def test_server_options_are_immutable_values_that_never_show_the_key():
    key = easycluster.generate_key()
    opts = ServerOptions(key, port=0, allow=("10.0.0.0/8",))
    assert (opts.port, opts.allow, opts.max_connections, opts.grace) == (
        0,
        ("10.0.0.0/8",),
        0,
        10.0,
    )
    with pytest.raises(AttributeError, match="replace"):
        opts.port = 5  # type: ignore[misc]
    other = opts.replace(max_connections=3)
    assert (other.max_connections, opts.max_connections) == (3, 0)
    assert other.replace(max_connections=0) == opts and hash(
        other.replace(max_connections=0)
    ) == hash(opts)
    assert other != opts
    assert key.hex() not in repr(opts) and repr(key) not in repr(opts)
    assert "max_connections=3" in repr(other)
    with pytest.raises(ValueError, match="empty"):
        opts.replace(key=b"")
