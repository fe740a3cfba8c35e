"""How a server process runs: serve one connection, then end the process.

Entry points: ``serve_connection`` (a forked ``easycluster -S`` child, a zygote child,
the ssh stage 1), ``main_socket`` (a local server's socket: handshake, then serve),
``main_session`` (a zygote child's socket, its handshake run in memory by the master) and
``main_spawned`` (a fresh interpreter started by ``spawn_local``: ``--fd N``, the key in
hex on stdin).
"""

from __future__ import annotations

import _signal  # (the C module: signal.py's enums cost a remote server's start-up)
import os
import sys
import threading

from ..errors import ConnectionLost
from ..protocol.frames import Session
from ..protocol.handshake import WireOptions
from ..transport.channel import Channel
from ..transport.handshake import server_handshake
from . import commands
from .connection import ServerConnection, log
from .output import flush_output

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Sequence


def serve_connection(channel: Channel, peer: str, verbosity: int = 0) -> None:
    """Serve one connection in this process, then end the process (os._exit)."""
    code = 0

    def gone(reason: str) -> None:
        commands.kill_all()  # (the RPC backend's commands end with their connection)
        if threading.current_thread() is not threading.main_thread():
            flush_output()  # the main thread may be stuck in a call: nobody wants its result
            os._exit(0)

    conn = ServerConnection(channel, peer, verbosity, on_end=gone)
    if threading.current_thread() is threading.main_thread():
        # The listener asks connections to drain (SIGUSR1) when it is told to stop.
        _signal.signal(_signal.SIGUSR1, lambda *_: conn.drain())
    try:
        conn.serve()
    except BaseException:
        log.exception("%s: server failed", peer)
        code = 1
    finally:
        commands.kill_all()
        flush_output()
    os._exit(code)


def main_socket(sock: Any, key: bytes, verbosity: int = 0) -> int:
    """Serve one local connection on ``sock`` (handshake with ``key``); ends the process."""
    _log_to_stderr(verbosity)
    try:
        channel = server_handshake(sock, key, WireOptions(), timeout=30)
    except (ConnectionLost, OSError) as e:
        print(f"easycluster local server: handshake failed: {e}", file=sys.stderr)
        return 1
    serve_connection(channel, "local", verbosity)
    return 0


def main_session(sock: Any, session: Session, verbosity: int = 0) -> None:
    """Serve one local connection on ``sock`` whose handshake the master already ran in
    memory (a zygote child: ``protocol.control``); ends the process."""
    _log_to_stderr(verbosity)
    serve_connection(Channel(sock, session), "local", verbosity)


def _log_to_stderr(verbosity: int) -> None:
    if verbosity:
        import logging

        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="easycluster[%(process)d]: %(message)s"
        )


def main_spawned(argv: Sequence[str]) -> int:
    """Entry of a process started by ``spawn_local``: ``--fd N``, key in hex on stdin."""
    fd = int(argv[argv.index("--fd") + 1])
    verbosity = int(argv[argv.index("--verbosity") + 1]) if "--verbosity" in argv else 0
    key = bytes.fromhex(sys.stdin.readline().strip())
    sys.stdin.close()
    import socket  # (a local server's: not loaded by servers over ssh)

    return main_socket(socket.socket(fileno=fd), key, verbosity)
