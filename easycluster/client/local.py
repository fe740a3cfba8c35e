"""``spawn_local``: a Client on a fresh local server process (see ``launch.local``)."""

from __future__ import annotations

from typing import Any, Optional

from ..launch.local import reap, start_local
from ..objects import definitions
from .client import Client


def spawn_local(
    clientclass: Optional[type] = None,
    *,
    verbosity: int = 0,
    definitions: str = definitions.DEFAULT_MODULE,
    enable_compression: bool = False,
    timeout: float = 30.0,
    fresh_interpreter: bool = False,
    **client_kw: Any,
) -> Any:
    """Start a local server process and return ``clientclass`` (default Client) on it.

    The server is never a fork of this script: it is forked from a clean zygote
    interpreter (a few milliseconds), or with ``fresh_interpreter=True`` started as a new
    interpreter, and linked by a socketpair under a random key made for this one
    session. ``client.process`` is a handle on the server process (``pid``, ``kill()``,
    ``wait()``). Closing the client ends the process: it exits when its end of the
    socketpair closes. ``client.reconnect()`` closes it and starts a fresh server.
    """
    cls = clientclass or Client
    client = cls(definitions=definitions, enable_compression=enable_compression, **client_kw)

    def start() -> None:  # (again for reconnect(): a fresh server, started the same way)
        channel, proc = start_local(client.wire_options(), verbosity, timeout, fresh_interpreter)
        client.process = proc
        client.attach(channel, f"local:{proc.pid}", closer=lambda: reap(proc))

    start()
    client._respawn = start
    return client
