"""TCP and socket pairs: connecting, and the socket options our connections use.

``socket`` loads on first use: a server over ssh ships this module (through
``transport.handshake``) and never opens a socket, and socket.py costs ~1.4 ms to import.
"""

from __future__ import annotations

from ..errors import ConnectError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Callable, Optional, Tuple

LOCAL_BUFFER = 1 << 20  # socket buffer sizes of a local server's socket pair


def nodelay(sock: socket.socket) -> None:
    import socket

    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_tcp(
    host: str, port: int, timeout: Optional[float], source: Optional[str] = None
) -> socket.socket:
    """Open a TCP connection (IPv4 or IPv6), or raise ConnectError naming the host.

    ``source``: the local address to connect from (None: the system chooses)."""
    import socket

    try:
        sock = socket.create_connection(
            (host, port), timeout=timeout, source_address=None if source is None else (source, 0)
        )
    except socket.timeout:
        raise ConnectError(f"connecting to {host}:{port} timed out after {timeout} s")
    except OSError as e:
        raise ConnectError(f"cannot connect to {host}:{port}: {e.strerror or e}")
    nodelay(sock)
    return sock


def socketpair() -> Tuple[socket.socket, socket.socket]:
    """A connected pair for a local server, with room for a pipelined burst.

    The default buffers of a Unix socket pair (~200 KiB) fill after a few thousand
    small replies, and a server blocked writing stops reading until its standby takes
    over: 1 MiB each way doubled pipelined throughput here. Memory is only used while
    bytes are in flight; the kernel caps the size at net.core.wmem_max/rmem_max.
    """
    import socket

    pair = socket.socketpair()
    for sock in pair:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, LOCAL_BUFFER)
            except OSError:
                pass
    return pair


def fork_linked(
    child: Callable[[socket.socket], object], *close_in_child: socket.socket
) -> Optional[Tuple[int, socket.socket]]:
    """Fork a process linked to this one by a fresh SOCK_SEQPACKET socket pair (messages
    keep their bounds, and descriptors can ride along); return ``(pid, our end)``, or None
    if the fork failed (nothing is left open then).

    The child closes our end and ``close_in_child``, runs ``child(its end)`` and exits
    with status 1 if that returns or raises: it is meant never to return (``os._exit``)."""
    import os
    import socket

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        mine.close()
        theirs.close()
        return None
    if pid == 0:
        try:
            mine.close()
            for sock in close_in_child:
                sock.close()
            child(theirs)
        finally:
            os._exit(1)
    theirs.close()
    return pid, mine
