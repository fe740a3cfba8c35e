"""Connected streams: TCP connect, the blocking handshakes, and ``Channel``.

``Channel`` carries authenticated frames over a connected socket using a
``wire.Session``. ``client_handshake``/``server_handshake`` run the fixed-size handshake
with a deadline. Socket I/O lives here and in ``listener.py`` only.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import List, Optional, Sequence, Tuple, Union

from . import wire
from .errors import ConnectError, ConnectionLost, ProtocolError

_IOV_MAX = 512
_BATCH_MAX = 512  # frames in one batch
_BATCH_BYTES = 1 << 18
POST_MAX = 1 << 15  # bodies up to this size may be batched
BURST_GAP = 50e-6  # posts closer together than this are batched


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

    Sending may happen from any thread: a lock keeps frames whole and in sequence.
    Small bodies can be ``post``-ed: they wait in an outbox and leave together as one
    FT_BATCH frame (one MAC, one system call), either when a poster asks to flush or
    from a writer thread started on first use, so a burst of non-blocking calls costs
    few frames while a lone call still leaves at once. ``recv`` must be called by one
    thread at a time (the owner of the reads); it unpacks batches.
    """

    def __init__(self, sock: socket.socket, session: wire.Session):
        self.sock = sock
        self.session = session
        self._reader = session.reader
        self._send_lock = threading.Lock()
        self._wake = threading.Condition(self._send_lock)
        self._outbox: List[Tuple[int, bytes]] = []
        self._outbox_bytes = 0
        self._writer: Optional[threading.Thread] = None
        self._last_post = 0.0
        self.closed = False
        self.close_reason = ""

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, ftype: int, main: Union[wire.Buffer, Sequence[wire.Buffer]],
             buffers: Sequence[wire.Buffer] = ()) -> None:
        """Send one frame, whole, after anything posted before it.

        Raises ConnectionLost if the connection is gone, FrameTooLarge if the peer's
        limit is exceeded (nothing sent).
        """
        with self._send_lock:
            self._check_open()
            if self._outbox:
                self._flush_locked()
            self._write(self.session.pack(ftype, main, buffers))

    def post(self, ftype: int, body: bytes, flush: bool) -> None:
        """Queue a small frame body; send it (and all queued) now if ``flush``.

        Even without ``flush`` a body leaves at once unless it is part of a burst (the
        previous post was less than ``BURST_GAP`` seconds ago): waking the writer
        thread costs more than a send, so only bursts are worth batching.
        """
        now = time.monotonic()
        size = len(body) + wire.BATCH_ITEM_OVERHEAD
        with self._send_lock:
            self._check_open()
            cap = min(_BATCH_BYTES, self.session.max_send)
            if size > cap:
                if len(body) > self.session.max_send:
                    raise wire.FrameTooLarge(f"message of {len(body)} bytes exceeds the peer's "
                                             f"limit of {self.session.max_send} bytes")
                flush = True  # too big to batch: it leaves alone, right after the queue
            if self._outbox and self._outbox_bytes + size > cap:
                self._flush_locked()  # a batch never grows past what the peer accepts
            self._outbox.append((ftype, body))
            self._outbox_bytes += size
            burst = now - self._last_post < BURST_GAP
            self._last_post = now
            if flush or not burst or len(self._outbox) >= _BATCH_MAX:
                self._flush_locked()
            elif self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                                name="easycluster-writer")
                self._writer.start()
            elif len(self._outbox) == 1:
                self._wake.notify()

    def send_message(self, ftype: int, head: bytes, main: bytes,
                     buffers: Sequence[wire.Buffer], flush: bool) -> None:
        """Send ``head + main`` (+ buffers): small bodies go through ``post`` (batched
        unless ``flush``), large ones or ones with buffers as a frame of their own."""
        if buffers or len(main) > POST_MAX:
            self.send(ftype, [head, main], buffers)
        else:
            self.post(ftype, head + main, flush)

    def flush(self) -> None:
        """Send whatever is waiting in the outbox now."""
        with self._send_lock:
            if self._outbox and not self.closed:
                self._flush_locked()

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionLost(self.close_reason or "connection closed")

    def _write_loop(self) -> None:
        with self._send_lock:
            while not self.closed:
                if self._outbox:
                    try:
                        self._flush_locked()
                    except Exception as e:  # the stream is unusable: say so to everyone
                        self._broken(f"sending failed: {e}")
                        return
                self._wake.wait()

    def _flush_locked(self) -> None:
        items, self._outbox, self._outbox_bytes = self._outbox, [], 0
        if not items:
            return
        if len(items) == 1:
            self._write(self.session.pack(items[0][0], items[0][1]))
        else:
            self._write(self.session.pack(wire.FT_BATCH, wire.pack_batch(items)))

    def _write(self, parts: List[wire.Buffer]) -> None:
        try:
            if len(parts) == 1:
                self.sock.sendall(parts[0])
            else:
                self._sendmsg_all(parts)
        except OSError as e:  # part of a frame may have left: nothing more can follow it
            reason = f"connection lost while sending: {e.strerror or e}"
            self._broken(reason)
            raise ConnectionLost(reason)

    def _broken(self, reason: str) -> None:
        """Mark the channel dead (send lock held) and wake its reader and writer."""
        if not self.closed:
            self.closed, self.close_reason = True, reason
            self._wake.notify_all()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
                try:
                    if not _wait_readable(self.sock, left if left > 0 else 0):
                        return []
                except (ValueError, OSError):  # closed under us by another thread
                    raise ConnectionLost(self.close_reason or "connection closed")
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
                if any(f.type == wire.FT_BATCH for f in frames):
                    frames = _expand(frames)
                return frames

    def close(self, reason: str = "connection closed") -> None:
        """Close the socket; later sends raise ConnectionLost(reason). Idempotent.

        The socket is shut down before the send lock is taken, so a sender blocked on a
        peer that stopped reading is woken (with an error) instead of holding us up.
        """
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._send_lock:
            if not self.closed:
                self.closed, self.close_reason = True, reason
                self._wake.notify_all()
        self.sock.close()  # also after _broken(), which only shut the socket down


def _expand(frames: List[wire.Frame]) -> List[wire.Frame]:
    out: List[wire.Frame] = []
    for f in frames:
        if f.type == wire.FT_BATCH:
            out.extend(wire.split_batch(f))
        else:
            out.append(f)
    return out


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    # poll, not a selector: this runs on every timed read, and a selector opens an epoll fd.
    fd = sock.fileno()
    if fd < 0:
        raise ValueError("socket closed")
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def socketpair() -> Tuple[socket.socket, socket.socket]:
    return socket.socketpair()
