"""``Channel``: authenticated frames over one connected socket (or ``PipeSocket``).

It carries a ``protocol.frames.Session``'s frames; the socket I/O of a connection lives
in this package only (the service's listener and the cluster engine wait on descriptors
too, for their own reasons).
"""

from __future__ import annotations

import _socket  # (the C module: socket.py's enums cost a remote server ~1.4 ms of start-up)
import select
import struct
import threading
from time import monotonic as _monotonic

from ..errors import ConnectionLost
from ..protocol import frames
from .outbox import Outbox
from .sending import Sending

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

    from .pipes import Stream

_INTERRUPTED, _QUIET = -2, -1  # _read_kept's results other than a byte count
_MSG_DONTWAIT = _socket.MSG_DONTWAIT
_PADS = (0, 1 << 10, 1 << 14, 1 << 16)  # a ping's padding, by pings unanswered so far
_PAD_MAX = 1 << 20


class KeepAlive(tuple[float, float, float]):
    """How the waiting end of a connection (the client's) makes sure a wait ends.

    While a read waits and nothing arrives for ``first`` seconds, the channel pings the
    peer (FT_PING; the server echoes the body in its FT_PONG from its reading thread, even
    while calls run), then again after twice as long, up to every ``most`` seconds, until
    a frame other than a pong arrives. A ping that goes unanswered makes the next one
    bigger (padding of up to 64 KiB, or the bytes still missing from a frame begun, up to
    1 MiB). That is what turns a corrupted stream into an error instead of a wait: bytes
    lost on the way leave a receiver waiting for the rest of a frame, and the pings (one
    way) or pongs (the other) fill the hole with bytes that fail the MAC. Nothing at all
    for ``limit`` seconds (a stopped peer, a dead link) is ``ConnectionLost``.

    A named tuple written out, as ``protocol.handshake.WireOptions`` is (a server over
    ssh neither imports ``typing`` nor compiles a generated class at start-up).
    """

    __slots__ = ()

    def __new__(cls, first: float = 1.0, most: float = 8.0, limit: float = 60.0) -> KeepAlive:
        return tuple.__new__(cls, (first, most, limit))

    @property
    def first(self) -> float:
        return self[0]

    @property
    def most(self) -> float:
        return self[1]

    @property
    def limit(self) -> float:
        return self[2]

    def __getnewargs__(self) -> tuple[float, float, float]:
        return (self[0], self[1], self[2])

    def __repr__(self) -> str:
        return f"KeepAlive(first={self[0]!r}, most={self[1]!r}, limit={self[2]!r})"


DEFAULT_KEEPALIVE = KeepAlive()


class Channel(Sending):
    """Authenticated frames over one connected socket.

    Sending may happen from any thread. Small bodies are ``post``-ed to an outbox and
    leave together as FT_BATCH frames (one MAC, one system call for many). What waits
    and who sends it is decided by an ``Outbox`` (``outbox.py``, where the states are
    drawn); the channel does the locking and the writing. Two locks: ``_lock`` guards
    the outbox and is only held for a moment; ``_write_lock`` is held while frames are
    numbered and written, so frames stay whole and in sequence. Whoever holds the write
    lock sends the outbox, and a poster that finds it taken leaves its body there for
    the holder (who looks again before letting go) instead of waiting behind a write
    that may be blocked. A poster that finds it free writes itself; a thread that must
    never wait for the socket (the reader, answering a ping) uses ``post_later``, which
    sends at once only what the socket takes without waiting, and leaves the rest of the
    writing to a writer thread. That thread also sends bursts of posts nobody flushes; a
    lone post leaves at once.
    ``recv``/``recv_frames`` must be called by one thread at a time (the owner of the
    reads).
    """

    def __init__(
        self,
        sock: Stream,
        session: frames.Session,
        keepalive: Optional[KeepAlive] = DEFAULT_KEEPALIVE,
    ):
        """``keepalive`` applies to the client's end only (the server's reads wait for
        requests, which may never come); ``None`` turns it off."""
        self.sock = sock
        self.session = session
        self._reader = session.reader
        self._keepalive = keepalive if session.is_client else None
        self._pings = 0  # pings sent since the last frame other than a pong
        self._timed_recv = False  # a blocking recv on sock ends after keepalive.first
        if self._keepalive is not None and isinstance(sock, _socket.socket):
            sec = self._keepalive.first
            try:  # the kernel ends a quiet recv, so a plain read needs no poll first
                sock.setsockopt(
                    _socket.SOL_SOCKET,
                    _socket.SO_RCVTIMEO,
                    struct.pack("@ll", int(sec), int(sec % 1 * 1e6)),
                )
                self._timed_recv = True
            except (OSError, AttributeError):
                pass
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer thread sleeps on it
        self._box = Outbox(session.max_send)
        # (see ``post_later``; a socket with a timeout would wait for room before sending)
        self._send_now = isinstance(sock, _socket.socket) and not sock.gettimeout()
        self._poll_in = _unix_poll_in(sock) if self._keepalive is None else None

    @property
    def closed(self) -> bool:
        """True once the channel is closed or broken; later sends raise ConnectionLost."""
        return self._box.closed

    @property
    def close_reason(self) -> str:
        """Why the channel closed ("" while open)."""
        return self._box.reason

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, timeout: Optional[float] = None) -> List[frames.Frame]:
        """Block until at least one frame is complete; ``[]`` if ``timeout`` passed first.

        Batches come unpacked into their frames. Raises ConnectionLost at end of stream
        (IntegrityError if a frame was cut off) and ProtocolError subclasses for frames
        that fail the checks.
        """
        got = self.recv_frames(timeout)
        if any(f.type == frames.FT_BATCH for f in got):
            return _expand(got)
        return got

    def recv_frames(self, timeout: Optional[float] = None) -> List[frames.Frame]:
        """``recv`` with FT_BATCH frames left whole (see ``frames.batch_items``): the readers
        on the hot paths walk batches themselves instead of making a Frame per item."""
        ka = self._keepalive
        if ka is not None and timeout is None and self._timed_recv:
            # The client's usual wait (a reply, no time limit) takes one plain read: the
            # kernel's receive timeout (SO_RCVTIMEO = ka.first) ends a quiet one, so no
            # poll and no clock is needed until a read times out or brings only part of a
            # frame (a reply is nearly always whole, or already waiting). That saves the
            # keep-alive's bookkeeping on every call (a little under 1 us here).
            reader = self._reader
            try:  # (``_read_kept`` written out: this runs for every reply)
                n = self.sock.recv_into(reader.buffer())
            except InterruptedError:
                n = _INTERRUPTED
            except BlockingIOError:
                n = _QUIET
            except OSError as e:
                raise self._read_failed(e)
            if n > 0:
                got = reader.advance(n)
                if got:
                    return self._heard(got) if self._pings else got
                return self._recv_kept(None, ka, _monotonic())  # bytes came just now
            if n == 0:
                raise self._read_failed()
            # Interrupted, or timed out (ka.first of silence): the wait goes on as if it
            # had begun when it did.
            return self._recv_kept(None, ka, _monotonic() - (ka.first if n == _QUIET else 0))
        deadline = None if timeout is None else _monotonic() + timeout
        if ka is not None:
            return self._recv_kept(deadline, ka, _monotonic())
        reader, sock = self._reader, self.sock
        while True:
            if deadline is not None:
                left = deadline - _monotonic()
                try:
                    if not _wait_readable(sock, left if left > 0 else 0):
                        return []
                except (ValueError, OSError):  # closed under us by another thread
                    raise ConnectionLost(self.close_reason or "connection closed")
            elif self._poll_in is not None:
                self._poll_in.poll()  # (see ``_unix_poll_in``; a closed socket: POLLNVAL)
            try:
                n = sock.recv_into(reader.buffer())
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                raise self._read_failed(e)
            if n == 0:
                raise self._read_failed()
            got = reader.advance(n)
            if got:
                return got

    @property
    def spins(self) -> bool:
        """Whether ``poll_frames`` may be used: the client's end of a socket."""
        return self._timed_recv

    def poll_frames(self, spin: float) -> List[frames.Frame]:
        """The frames completed within about ``spin`` seconds, read without blocking: a
        busy wait. ``[]`` if none completed in time; ``recv_frames`` then goes on from
        what was read. For the client's end of a socket only (``spins``).

        A thread that blocks in a read is put to sleep and woken when bytes come; on a
        virtual machine that costs a round trip about as much as the peer's work (here a
        socketpair ping-pong takes 35 us a round with a blocking read, 20 us polling).
        The caller bounds the spin and spins only when replies come that fast.
        """
        deadline = 0.0
        while True:
            n = self._read_ready()
            if n:
                got = self._reader.advance(n)
                if got:
                    return self._heard(got) if self._pings else got
                continue  # (part of a frame: the rest is on its way)
            now = _monotonic()
            if not deadline:
                deadline = now + spin
            elif now >= deadline:
                return []

    def _read_ready(self) -> int:
        """Read what is there into the frame reader without waiting: the byte count, 0 if
        nothing came yet. A socket's only (``spins``); raises as a read does."""
        sock: _socket.socket = self.sock  # type: ignore[assignment]  # (``spins``: a socket)
        try:
            n = sock.recv_into(self._reader.buffer(), 0, _MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            raise self._read_failed(e)
        if n == 0:
            raise self._read_failed()
        return n

    def _read_kept(self) -> int:
        """One read into the frame reader for the keep-alive paths: the byte count, or
        ``_INTERRUPTED`` (a signal) or ``_QUIET`` (the kernel's receive timeout: a quiet
        spell); raises ConnectionLost when the peer closed or the read failed."""
        try:
            n = self.sock.recv_into(self._reader.buffer())
        except InterruptedError:
            return _INTERRUPTED
        except BlockingIOError:
            return _QUIET
        except OSError as e:
            raise self._read_failed(e)
        if n == 0:
            raise self._read_failed()
        return n

    def _read_failed(self, error: Optional[OSError] = None) -> ConnectionLost:
        """What ends a read: the read's ``error``, or (None) the end of the stream, which
        raises ``IntegrityError`` here instead if it cut a frame off part-way."""
        if error is not None:
            return ConnectionLost(f"connection lost: {error.strerror or error}")
        self._reader.check_eof()
        return ConnectionLost("the peer closed the connection")

    def _heard(self, got: List[frames.Frame]) -> List[frames.Frame]:
        """``got``, having reset the keep-alive's ping count if a frame other than a pong
        came (the peer is alive and talking)."""
        if self._pings and any(f.type != frames.FT_PONG for f in got):
            self._pings = 0
        return got

    def _recv_kept(
        self, deadline: Optional[float], ka: KeepAlive, since: float
    ) -> List[frames.Frame]:
        """``recv_frames`` with the keep-alive (see ``KeepAlive``), for a wait in which no
        bytes have come since the ``since`` (a ``monotonic`` time)."""
        reader, sock = self._reader, self.sock
        heard = quiet = since  # when bytes last came; when bytes came or we pinged
        unanswered = 0  # pings sent in this wait (any frame ends the wait)
        poll = deadline is not None or not self._timed_recv
        while True:
            due = quiet + min(ka.first * (1 << min(self._pings, 16)), ka.most)
            ready = True
            if poll:
                until = due if deadline is None else min(due, deadline)
                left = until - _monotonic()
                try:
                    ready = _wait_readable(sock, left if left > 0 else 0)
                except (ValueError, OSError):  # closed under us by another thread
                    raise ConnectionLost(self.close_reason or "connection closed")
            if ready:
                n = self._read_kept()
                if n == _INTERRUPTED:
                    continue
                if n > 0:
                    got = reader.advance(n)
                    if got:
                        return self._heard(got)
                    heard = quiet = _monotonic()
                    continue
            now = _monotonic()
            if deadline is not None and now >= deadline:
                return []
            if now - heard >= ka.limit:
                raise ConnectionLost(
                    f"no sign of life from the peer for {ka.limit:g} s (keep-alive)"
                )
            if now >= due:
                pad = _PADS[min(unanswered, len(_PADS) - 1)]
                pad = max(pad, min(reader.missing(), _PAD_MAX))
                self.post_later(frames.FT_PING, bytes(pad))
                self._pings += 1
                unanswered += 1
                quiet = now  # (the next ping: after the next interval)

    def finish(self, timeout: float, read_out: bool = True) -> None:
        """For a process about to exit: send everything queued (waiting at most
        ``timeout`` for a write in progress), close the sending side, then, if
        ``read_out``, read and discard until the peer closes or ``timeout`` passes.

        Exiting with unread input makes the kernel reset the connection, and a reset
        throws away replies still on their way to the peer; reading it out lets them
        arrive. Only the thread that owns the reads may ``read_out``.
        """
        deadline = _monotonic() + timeout
        if not self._write_lock.acquire(timeout=timeout):
            return  # a write blocked all along: the peer is not reading; give up
        try:
            self._write_outbox()  # (raises ConnectionLost once closed)
            self.sock.shutdown(_socket.SHUT_WR)
        except (ConnectionLost, OSError):
            return
        finally:
            self._write_lock.release()
        if not read_out:
            return
        scratch = bytearray(1 << 16)
        while True:
            left = deadline - _monotonic()
            try:
                if left <= 0 or not _wait_readable(self.sock, left):
                    return
                if not self.sock.recv_into(scratch):
                    return
            except (OSError, ValueError):
                return

    def shutdown(self) -> None:
        """Shut the socket down both ways without closing it: a thread waiting to read
        wakes at once and sees the end. ``close`` still has to follow."""
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self, reason: str = "connection closed") -> None:
        """Close the socket; later sends raise ConnectionLost(reason). Idempotent.

        The socket is shut down first, so a thread blocked writing to a peer that stopped
        reading is woken (with an error) instead of holding us up.
        """
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        with self._lock:
            if self._box.close(reason):
                self._wake.notify_all()
        self.sock.close()  # also after _broken(), which only shut the socket down


def _expand(got: List[frames.Frame]) -> List[frames.Frame]:
    out: List[frames.Frame] = []
    for f in got:
        if f.type == frames.FT_BATCH:
            out.extend(frames.split_batch(f))
        else:
            out.append(f)
    return out


def _unix_poll_in(sock: Stream) -> Optional[select.poll]:
    """For the reads of a Unix socket's waiting end without a time limit (a server's): a
    poll object for its input, to wait in before each read. Linux wakes a reader blocked
    in ``recv`` on a Unix socket each time the peer reads what this end sent (the space
    freed, ``unix_write_space``), although nothing came: one wake-up for nothing per call
    answered, a switch into the server and back (and the client's work to wake it). A
    ``poll`` for input alone is woken by input only. None for other sockets (TCP wakes a
    sender only when it waited for room) and for pipes."""
    if not isinstance(sock, _socket.socket) or sock.family != _socket.AF_UNIX:
        return None
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    return p


def _wait_readable(sock: Stream, timeout: float) -> bool:
    # poll, not a selector: this runs on every timed read, and a selector opens an epoll fd.
    fd = sock.fileno()
    if fd < 0:
        raise ValueError("socket closed")
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(timeout * 1000))
