"""Connected streams: TCP connect, the blocking handshakes, and ``Channel``.

``Channel`` carries authenticated frames over a connected socket using a
``wire.Session``. ``client_handshake``/``server_handshake`` run the fixed-size handshake
with a deadline. Socket I/O lives here and in ``listener.py`` only.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from typing import List, Optional, Sequence, Tuple

from . import wire
from .errors import ConnectError, ConnectionLost, ProtocolError

log = logging.getLogger("easycluster.server")

_IOV_MAX = 512


def nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect_tcp(host: str, port: int, timeout: Optional[float]) -> socket.socket:
    """Open a TCP connection (IPv4 or IPv6), or raise ConnectError naming the host."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise ConnectError(f"connecting to {host}:{port} timed out after {timeout} s")
    except OSError as e:
        raise ConnectError(f"cannot connect to {host}:{port}: {e.strerror or e}")
    nodelay(sock)
    return sock


def _recv_exact(sock: socket.socket, n: int, deadline: Optional[float], what: str) -> bytes:
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
    return bytes(buf)


def client_handshake(sock: socket.socket, key: bytes, options: wire.WireOptions,
                     timeout: Optional[float]) -> Channel:
    """Run the client side of the handshake on a connected socket; return a Channel."""
    deadline = None if timeout is None else time.monotonic() + timeout
    hs = wire.ClientHandshake(key, options)
    try:
        hello = _recv_exact(sock, wire.SERVER_HELLO_SIZE, deadline, "server greeting")
        sock.sendall(hs.receive_hello(hello))
        accept = _recv_exact(sock, wire.ACCEPT_SIZE, deadline, "server's handshake reply")
    except OSError as e:
        if isinstance(e, ConnectionLost):
            raise
        raise ConnectionLost(f"connection failed during the handshake: {e}")
    session = hs.receive_accept(accept)
    sock.settimeout(None)
    return Channel(sock, session)


def server_handshake(sock: socket.socket, key: bytes, options: wire.WireOptions,
                     timeout: Optional[float]) -> Channel:
    """Run the server side of the handshake on one socket (used by ``spawn_local``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    hs = wire.ServerHandshake(key, options)
    sock.sendall(hs.hello)
    reply, session = hs.receive(_recv_exact(sock, wire.CLIENT_HELLO_SIZE, deadline,
                                            "client greeting"))
    sock.sendall(reply)
    if session is None:
        raise ProtocolError(f"handshake failed: {hs.failure}")
    sock.settimeout(None)
    return Channel(sock, session)


class Channel:
    """Authenticated frames over one connected socket.

    ``send`` may be called from any thread (a lock keeps frames whole and in sequence);
    ``recv`` must be called by one thread at a time (the owner of the reads).
    """

    def __init__(self, sock: socket.socket, session: wire.Session):
        self.sock = sock
        self.session = session
        self._reader = session.reader
        self._send_lock = threading.Lock()
        self.closed = False
        self.close_reason = ""

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, ftype: int, main: wire.Buffer, buffers: Sequence[wire.Buffer] = ()) -> None:
        """Send one frame, whole. Raises ConnectionLost if the connection is gone."""
        with self._send_lock:
            if self.closed:
                raise ConnectionLost(self.close_reason or "connection closed")
            parts = self.session.pack(ftype, main, buffers)
            try:
                if len(parts) == 1:
                    self.sock.sendall(parts[0])
                else:
                    self._sendmsg_all(parts)
            except OSError as e:
                raise ConnectionLost(f"connection lost while sending: {e.strerror or e}")

    def _sendmsg_all(self, parts: List[wire.Buffer]) -> None:
        views = [memoryview(p).cast("B") for p in parts]
        while views:
            sent = self.sock.sendmsg(views[:_IOV_MAX])
            while sent and views:
                n = len(views[0])
                if sent >= n:
                    sent -= n
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    def recv(self, timeout: Optional[float] = None) -> List[wire.Frame]:
        """Block until at least one frame is complete; ``[]`` if ``timeout`` passed first.

        Raises ConnectionLost at end of stream (IntegrityError if a frame was cut off)
        and ProtocolError subclasses for frames that fail the checks.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not _wait_readable(self.sock, left):
                    return []
            try:
                n = self.sock.recv_into(self._reader.buffer())
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                raise ConnectionLost(f"connection lost: {e.strerror or e}")
            if n == 0:
                self._reader.check_eof()
                raise ConnectionLost("the peer closed the connection")
            frames = self._reader.advance(n)
            if frames:
                return frames

    def close(self, reason: str = "connection closed") -> None:
        """Close the socket; later sends raise ConnectionLost(reason). Idempotent."""
        with self._send_lock:
            if self.closed:
                return
            self.closed = True
            self.close_reason = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(timeout))


def socketpair() -> Tuple[socket.socket, socket.socket]:
    return socket.socketpair()
