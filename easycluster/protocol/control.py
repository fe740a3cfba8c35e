"""The local zygote's control messages (drawn in the package docstring), and a local
server's handshake, run in memory.

A local server's socket is one end of a socketpair whose other end only the master holds,
and its key travels with the request, over the zygote's private control socket. So the
master runs both halves of the handshake itself (``spawn_request``): it picks the
server's nonce, makes the server's hello, its own answer and checks the server's accept,
all in memory. The request carries the key, that nonce and the client hello; the server
runs the server half on them (``read_spawn``, the same code as over a wire) and reaches
the same session keys. No byte crosses the new socket before the first frame, so the
master waits for nobody: every frame is still authenticated under keys made for this one
session.
"""

from __future__ import annotations

import os
import struct
from typing import Tuple

from ..errors import ProtocolError
from .frames import Session
from .handshake import CLIENT_HELLO_SIZE, ClientHandshake, ServerHandshake, WireOptions

KEY_SIZE = 32
NONCE_SIZE = 32
# session key, server nonce, client hello, verbosity; the working directory follows
SPAWN = struct.Struct(f">{KEY_SIZE}s{NONCE_SIZE}s{CLIENT_HELLO_SIZE}sB")
SPAWNED = struct.Struct(">i")  # pid of the new server, or -errno


def spawn_request(
    key: bytes, options: WireOptions, verbosity: int, cwd: str
) -> Tuple[bytes, Session]:
    """The SPAWN message for a server under ``key`` (fresh random bytes, for this one
    session), and the master's session with that server (``options``: the master's
    own). The server states no options of its own (``WireOptions()``, as over a wire)."""
    nonce = os.urandom(NONCE_SIZE)
    server = ServerHandshake(key, WireOptions(), nonce)
    client = ClientHandshake(key, options)
    hello = client.receive_hello(server.hello)
    accept, _ = server.receive(hello)
    session = client.receive_accept(accept)  # (raises if the two halves disagreed)
    msg = SPAWN.pack(key, nonce, hello, min(max(verbosity, 0), 255))
    return msg + cwd.encode("utf-8", "surrogateescape"), session


def read_spawn(msg: bytes) -> Tuple[Session, int, str]:
    """The server's half of a SPAWN message: ``(session, verbosity, working directory)``.
    Raises ProtocolError when the message is short or its hello fails the server's
    checks (a wrong proof: it was not made with this key)."""
    if len(msg) < SPAWN.size:
        raise ProtocolError(f"spawn request of {len(msg)} bytes, expected {SPAWN.size} or more")
    key, nonce, hello, verbosity = SPAWN.unpack_from(msg)
    server = ServerHandshake(key, WireOptions(), nonce)
    _, session = server.receive(hello)
    if session is None:
        raise ProtocolError(f"local handshake failed: {server.failure}")
    return session, verbosity, msg[SPAWN.size :].decode("utf-8", "surrogateescape")
