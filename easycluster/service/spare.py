"""A connection process forked ahead of time (the *spare*): the fork and the first
touches of memory leave the path of the next connection.

A freshly forked connection process spends most of its first two milliseconds in
copy-on-write page faults: its first write to any page it shares with the listener (the
reference counts of every object it touches) copies that page, some 700 of them before
its first reply. So the listener keeps one spare. Forked once the connection code is
loaded, it prepares itself as every connection process does (signals, descriptors, the
watch on the listener: the ``prepare`` function), warms up (a connection's objects and
a first request run over a socketpair of its own: the ``warm`` function) and waits on a
private SOCK_SEQPACKET socketpair. The listener hands it the next authenticated
connection there (``Spare.hand_over``): the socket, passed with SCM_RIGHTS, and what
derives that connection's session again (the key the handshake used, the server nonce
and the client hello: the server half of the handshake is a function of these,
``protocol.handshake``), the peer's name and the verbosity. The spare then serves it like
any connection process, and the listener forks the next spare.

A spare is not a connection: ``max_connections`` does not count it. While it waits it
ends (exit 0) on SIGUSR1 (the drain signal: it is idle) and when its socketpair ends
(the listener closed its end, or is gone). A spare that is gone when a connection comes
is replaced by a fork on the spot (``hand_over`` returns False).
"""

from __future__ import annotations

import os
import signal
import socket
import struct

from ..errors import ProtocolError
from ..protocol.frames import Session
from ..protocol.handshake import CLIENT_HELLO_SIZE, ServerHandshake, WireOptions
from ..transport.tcp import fork_linked

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Callable, Optional, Tuple

    Serve = Callable[[socket.socket, Session, str, int], None]

NONCE_SIZE = 32  # the server nonce: the last bytes of the server's hello
# server nonce, client hello, verbosity, the server's max_frame, key length; then the
# key and the peer's name (UTF-8)
HANDOFF = struct.Struct(f">{NONCE_SIZE}s{CLIENT_HELLO_SIZE}sBQI")
MAX_MESSAGE = 1 << 16  # a hand-over message is far smaller (a key and a peer's name)


def handoff_message(
    key: bytes,
    server_hello: bytes,
    client_hello: bytes,
    verbosity: int,
    options: WireOptions,
    peer: str,
) -> bytes:
    """The message that hands a connection over: ``key`` as its handshake used it,
    both hellos as they crossed the wire, ``options`` (the server's)."""
    return (
        HANDOFF.pack(
            server_hello[-NONCE_SIZE:],
            client_hello,
            min(max(verbosity, 0), 255),
            options.max_frame,
            len(key),
        )
        + key
        + peer.encode("utf-8", "surrogateescape")
    )


def read_handoff(msg: bytes) -> Tuple[Session, int, str]:
    """``(session, verbosity, peer)`` from a hand-over message; ProtocolError if it is
    short or its hello fails the handshake's checks (it cannot, as the listener sent
    it, but a session is never made without them)."""
    if len(msg) < HANDOFF.size:
        raise ProtocolError(f"hand-over message of {len(msg)} bytes")
    nonce, hello, verbosity, max_frame, key_len = HANDOFF.unpack_from(msg)
    key = msg[HANDOFF.size : HANDOFF.size + key_len]
    peer = msg[HANDOFF.size + key_len :].decode("utf-8", "surrogateescape")
    hs = ServerHandshake(key, WireOptions(max_frame=max_frame), nonce)
    _, session = hs.receive(hello)
    if session is None:
        raise ProtocolError(f"hand-over: {hs.failure}")
    return session, verbosity, peer


class Spare:
    """The listener's end of its spare: the spare's pid and the socketpair to it."""

    def __init__(self, pid: int, link: socket.socket):
        self.pid, self.link = pid, link

    @classmethod
    def fork(
        cls, prepare: Callable[[], None], serve: Serve, warm: Callable[[], None]
    ) -> Optional[Spare]:
        """Fork a spare; None if the fork failed. In the spare, ``prepare()`` runs first
        (as in any connection process), then ``warm()`` unless a connection is already
        there; then it waits, and serves the connection handed over with ``serve``."""

        def run(link: socket.socket) -> None:
            prepare()
            _wait(link, serve, warm)

        forked = fork_linked(run)
        return None if forked is None else cls(*forked)

    def hand_over(self, sock: socket.socket, msg: bytes) -> bool:
        """Give the spare its connection (``sock`` stays the caller's to close); False
        if the spare is gone. A spare serves one connection: the link closes either way."""
        try:
            socket.send_fds(self.link, [msg], [sock.fileno()])
            return True
        except OSError:
            return False
        finally:
            self.link.close()

    def close(self) -> None:
        """Tell the spare to end (end of file on its socketpair). Idempotent."""
        self.link.close()


def _wait(link: socket.socket, serve: Serve, warm: Callable[[], None]) -> None:
    """The spare's life: warm up, wait for the connection, serve it (never returns)."""
    signal.signal(signal.SIGUSR1, _exit_idle)  # (the connection's drain replaces it)
    if not _message_waiting(link):  # (ahead of a connection already here it only delays)
        try:
            warm()
        except Exception:  # a warm-up only: the connection meets any such error itself
            pass
    try:
        msg, fds, _flags, _addr = socket.recv_fds(link, MAX_MESSAGE, 1)
    except OSError:
        os._exit(0)
    link.close()
    if not fds:
        os._exit(0)  # the listener closed its end: stopping, or gone
    sock = socket.socket(fileno=fds[0])
    try:
        session, verbosity, peer = read_handoff(msg)
    except ProtocolError:
        os._exit(1)
    serve(sock, session, peer, verbosity)


def _message_waiting(link: socket.socket) -> bool:
    try:
        link.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        pass
    return True  # (or the end of file: no use warming up)


def _exit_idle(*_: object) -> None:
    os._exit(0)
