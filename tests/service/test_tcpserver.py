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
