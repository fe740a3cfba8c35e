"""The blocking handshakes over a connected stream (a socket or a ``PipeSocket``), each
with a deadline; they return a ``Channel``. The bytes are ``protocol.handshake``'s."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import ConnectError, ConnectionLost, ProtocolError
from ..protocol import handshake
from .channel import Channel

if TYPE_CHECKING:  # annotations only
    from .pipes import Stream


def _recv_exact(
    sock: Stream,
    n: int,
    deadline: Optional[float],
    what: str,
    check: Optional[Callable[[bytes], None]] = None,
) -> bytes:
    """``n`` bytes, or ConnectError/ConnectionLost; ``check`` sees what came so far
    after each read (and may raise)."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectError(f"timed out waiting for the {what}")
            sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            raise ConnectError(f"timed out waiting for the {what}")
        except OSError as e:
            raise ConnectionLost(f"connection failed during the {what}: {e}")
        if not chunk:
            raise ConnectionLost(f"the peer closed the connection during the {what}")
        buf += chunk
        if check is not None:
            check(bytes(buf))
    return bytes(buf)


def client_handshake(
    sock: Stream, key: bytes, options: handshake.WireOptions, timeout: Optional[float]
) -> Channel:
    """Run the client side of the handshake on a connected socket; return a Channel."""
    deadline = None if timeout is None else time.monotonic() + timeout
    hs = handshake.ClientHandshake(key, options)
    try:
        hello = _recv_exact(
            sock,
            handshake.SERVER_HELLO_SIZE,
            deadline,
            "server greeting",
            handshake.ClientHandshake.check_greeting_start,
        )
        sock.sendall(hs.receive_hello(hello))
        accept = _recv_exact(sock, handshake.ACCEPT_SIZE, deadline, "server's handshake reply")
    except OSError as e:
        if isinstance(e, ConnectionLost):
            raise
        raise ConnectionLost(f"connection failed during the handshake: {e}")
    session = hs.receive_accept(accept)
    sock.settimeout(None)
    # Channel runs over any Stream; channel.py still annotates a socket.socket (to widen)
    return Channel(sock, session)


def server_handshake(
    sock: Stream, key: bytes, options: handshake.WireOptions, timeout: Optional[float]
) -> Channel:
    """Run the server side of the handshake on one socket (used by ``spawn_local``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    hs = handshake.ServerHandshake(key, options)
    sock.sendall(hs.hello)
    reply, session = hs.receive(
        _recv_exact(sock, handshake.CLIENT_HELLO_SIZE, deadline, "client greeting")
    )
    sock.sendall(reply)
    if session is None:
        raise ProtocolError(f"handshake failed: {hs.failure}")
    sock.settimeout(None)
    # Channel runs over any Stream; channel.py still annotates a socket.socket (to widen)
    return Channel(sock, session)
