"""The blocking handshakes over a connected stream (a socket or a ``PipeSocket``), each
with a deadline; they return a ``Channel``. The bytes are ``protocol.handshake``'s.

``open_tcp_channel`` connects to an ``easycluster -S`` server and runs the handshake,
trying again when the server dropped the connection before the handshake was done.
"""

from __future__ import annotations

import _socket  # (the C module: socket.py costs a server over ssh ~1.4 ms to import)
import time

from ..errors import ConnectError, ConnectionLost, ProtocolError
from ..protocol import handshake
from .channel import Channel
from .tcp import connect_tcp

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only
    from typing import Callable, Optional

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
        except _socket.timeout:
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
    return _client_handshake(sock, key, options, timeout, _Progress())


class _Progress:
    """How far a client handshake got (to tell a refusal from a dropped handshake)."""

    __slots__ = ("greeted",)

    def __init__(self) -> None:
        self.greeted = False  # the server's greeting came: it took us as a handshake


def _client_handshake(
    sock: Stream,
    key: bytes,
    options: handshake.WireOptions,
    timeout: Optional[float],
    progress: _Progress,
) -> Channel:
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
        progress.greeted = True
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


RETRY_FIRST = 0.02  # seconds before the first new try; doubles up to RETRY_MAX
RETRY_MAX = 0.5
TRIES_WITHOUT_TIMEOUT = 10  # how often to try when there is no connect timeout


def open_tcp_channel(
    host: str,
    port: int,
    key: bytes,
    options: handshake.WireOptions,
    timeout: Optional[float],
    source: Optional[str] = None,
) -> Channel:
    """Connect to the ``easycluster -S`` server at ``host:port`` (from the local address
    ``source``, if given) and run the handshake; return a Channel.

    A server drops handshakes that have not finished when unauthenticated sockets pile up
    (a flood). So when the server closes or resets the connection after its greeting, or
    resets it at any point, before the handshake is done, this tries again: nothing ran,
    so it is safe. The pause between tries grows (with jitter) from ``RETRY_FIRST`` to
    ``RETRY_MAX`` seconds; the tries stop when ``timeout`` (counted from the start for the
    whole) is spent, or after ``TRIES_WITHOUT_TIMEOUT`` tries if it is None, with a
    ConnectError that says what happened and what to do.

    Raised at once, without a new try: ConnectError when the port cannot be reached
    (refused, unreachable) or the time is up; ConnectionLost when the server closes
    without a greeting (its allow list refused us); AuthenticationError for a wrong key;
    ProtocolError when the port is not an EasyCluster server.
    """
    name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    pause = RETRY_FIRST
    drops = 0
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        try:
            sock = connect_tcp(host, port, left, source)
        except ConnectError as e:
            if not drops:
                raise
            raise ConnectError(f"{e}, after {_dropped(name, drops, start)}") from e
        progress = _Progress()
        try:
            return _client_handshake(sock, key, options, left, progress)
        except ConnectionLost as e:
            sock.close()
            if type(e) is not ConnectionLost or not (progress.greeted or _was_reset(e)):
                if drops and isinstance(e, ConnectError):  # the time ran out meanwhile
                    raise ConnectError(f"{e}, after {_dropped(name, drops, start)}") from e
                raise
            drops += 1
            last = e
        except BaseException:
            sock.close()
            raise
        import random  # (only after a dropped handshake)

        wait = pause * random.uniform(0.5, 1.0)
        pause = min(pause * 2, RETRY_MAX)
        spent = deadline is not None and time.monotonic() + wait >= deadline
        if spent or (deadline is None and drops >= TRIES_WITHOUT_TIMEOUT):
            raise ConnectError(
                f"{_dropped(name, drops, start)} (the last time: {last}); nothing ran. "
                "It is likely flooded with unauthenticated connections (its log says "
                "'too many unauthenticated sockets') or restarting: try again later, give "
                "a longer connect timeout, or keep the flood off its port (the server's "
                "allow list, a firewall)"
            ) from last
        time.sleep(wait)


def _dropped(name: str, drops: int, start: float) -> str:
    times = "once" if drops == 1 else f"{drops} times"
    return (
        f"{name}: the server closed the connection before the handshake was done, "
        f"{times} in {time.monotonic() - start:.1f} s"
    )


def _was_reset(e: BaseException) -> bool:
    """True if ``e`` came from a connection reset (never a polite refusal)."""
    while e.__context__ is not None:
        e = e.__context__
        if isinstance(e, ConnectionResetError):
            return True
    return False
