"""The code a connection process of ``easycluster -S`` runs, and a spare's warm-up.

``tcpserver.TCPServer`` imports this module once its port is open (not before: the port
opens sooner, and servers started together do not slow each other down loading it), in
the listener, so that every connection process forked from it inherits it loaded.
"""

from __future__ import annotations

import socket

from ..objects import definitions
from ..protocol import frames
from ..remote.connection import warm_up
from ..remote.process import serve_connection
from ..remote.rehearsal import rehearse
from ..transport.channel import Channel


def load() -> None:
    """Bind what every connection's definitions module binds, and rehearse a call so
    that every connection process starts with it specialized (once, in the listener,
    before the first fork: ``remote/rehearsal.py``)."""
    definitions.warm_up()
    rehearse()


def serve(sock: socket.socket, session: frames.Session, peer: str, verbosity: int) -> None:
    """Serve one authenticated connection (in its own process) until it ends."""
    serve_connection(Channel(sock, session), peer, verbosity)


def warm() -> None:
    """A spare's warm-up (``spare.py``): a connection's objects built and a ``hello``
    answered over a socketpair of its own, so the pages these touch are the spare's
    before its real connection needs them."""
    a, b = socket.socketpair()
    try:
        warm_up(Channel(a, _warm_session()), definitions.DEFAULT_MODULE)
    finally:
        a.close()
        b.close()


def _warm_session() -> frames.Session:
    """A session for the warm-up (keys nobody holds: nothing it sends is read)."""
    key = bytes(32)
    return frames.Session(key, key, frames.DIR_S2C, frames.DIR_C2S)
