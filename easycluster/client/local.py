"""``spawn_local``: a Client on a fresh local server process (see ``launch.local``)."""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Tuple

from ..launch.local import reap, start_local
from ..objects import definitions
from ..objects.definitions import blocks_since
from .client import Client
from .connect import ConnectionSetup

# Names "local:N" in the order started (as 0.22's): the pid is not known yet when the
# connection is made (see spawn_local); ``client.process.pid`` and ``server_pid`` have it.
_numbers = itertools.count(1)

# define_common blocks that ran on a local server, by the client's definitions module
# (compared whole: cheap, the strings are the same objects). Local servers are forked
# from one clean interpreter in the same directory, so blocks that ran on one run on the
# next: the hello of a later spawn need not be waited for (it can only fail with the
# connection; a block failing after all fails the first call, saying why).
_proven: Dict[str, List[Tuple[str, str]]] = {}


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

    This returns without waiting for the server, nor for the zygote's answer (the pid,
    read when ``client.process`` needs it): the handshake was run in memory
    (``protocol.control``) and the hello's answer is read with the first reply, unless
    the hello carries ``define_common`` blocks no local server has run yet (then a
    failing block raises DefinitionsError here; see ``_proven``) or ``clientclass``
    hooks ``attach``. A server that could not start fails the first call
    (ConnectionLost). ``timeout``: seconds for the zygote to
    take the request and answer it (a fresh interpreter: for the handshake).
    """
    cls = clientclass or Client
    client = cls(definitions=definitions, enable_compression=enable_compression, **client_kw)

    def start() -> None:  # (again for reconnect(): a fresh server, started the same way)
        channel, proc = start_local(client.wire_options(), verbosity, timeout, fresh_interpreter)
        client.process = proc
        name, closer = f"local:{next(_numbers)}", lambda: reap(proc)
        if type(client).attach is not ConnectionSetup.attach:
            client.attach(channel, name, closer)  # (a class hooking attach: 0.22's arguments)
            return
        blocks = blocks_since(0)[1]
        proven = not blocks or _proven.get(client.definitions) == blocks
        client.attach(channel, name, closer, wait=not proven)  # (raises if a block fails)
        if not proven:
            _proven[client.definitions] = blocks

    start()
    client._respawn = start
    return client
