"""A socket-like object over two pipe fds, so ``transport.Channel`` runs over pipes.

Over ssh both ends talk through pipes: the client through the ``ssh`` process's stdin
and stdout, the remote server through its own fds 0 and 1 (moved away from 0 and 1).
``PipeSocket`` offers the part of the socket API that ``transport`` uses (``Stream``):
``recv``, ``recv_into``, ``sendall``, ``sendmsg``, ``settimeout``, ``fileno`` (the read
fd, for ``select``), ``shutdown`` and ``close``. It is shipped to the remote host by the
ssh bootstrap, so it imports only the standard library.
"""

from __future__ import annotations

import _socket  # (the C module: socket.py's enums cost a remote server ~1.4 ms of start-up)
import errno
import math
import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: at run time this module needs only the stdlib
    from typing import Optional, Protocol, Sequence, Union

    from ..protocol.frames import Buffer

    class Stream(Protocol):
        """A connected stream as ``transport`` uses it (handshakes and ``Channel``): what
        ``socket.socket`` and ``PipeSocket`` both offer. Arguments are positional, as the
        socket methods take them."""

        def fileno(self) -> int: ...
        def settimeout(self, timeout: Optional[float], /) -> None: ...
        def recv(self, n: int, /) -> bytes: ...
        def recv_into(self, buf: Union[bytearray, memoryview], nbytes: int = ..., /) -> int: ...
        def sendall(self, data: Buffer, /) -> None: ...
        def sendmsg(self, buffers: Sequence[Buffer], /) -> int: ...
        def shutdown(self, how: int, /) -> None: ...
        def close(self) -> None: ...


_CHUNK = 1 << 16


class PipeSocket:
    """Reads from ``rfd``, writes to ``wfd``; owns both (``close`` closes them).

    Contract as for a blocking socket: ``recv``/``recv_into`` return 0 bytes at end of
    stream and raise ``socket.timeout`` when a timeout set with ``settimeout`` passes;
    ``sendall`` writes everything or raises ``OSError``; ``sendmsg`` may write part of
    the buffers and returns the byte count. After ``close`` every call raises
    ``OSError(EBADF)``. ``pending``
    is data already taken from ``rfd`` (the ssh client reads past the bootstrap greeting);
    it is returned first, and must be consumed before anything waits on ``fileno()``.
    """

    def __init__(self, rfd: int, wfd: int, pending: bytes = b""):
        self.rfd = rfd
        self.wfd = wfd
        self._pending = pending  # bytes already read from rfd by someone else, served first
        self._timeout: Optional[float] = None
        self._rclosed = False
        self._wclosed = False

    def __repr__(self) -> str:
        return f"<PipeSocket read={self.rfd} write={self.wfd}>"

    def fileno(self) -> int:
        if self._rclosed:
            return -1
        return self.rfd

    def settimeout(self, timeout: Optional[float]) -> None:
        self._timeout = timeout

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def _check_read(self) -> None:
        if self._rclosed:
            raise OSError(errno.EBADF, "pipe closed")
        if self._timeout is not None:
            poller = select.poll()
            poller.register(self.rfd, select.POLLIN)
            if not poller.poll(max(0, math.ceil(self._timeout * 1000))):
                raise _socket.timeout("timed out")

    def recv(self, n: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        self._check_read()
        return os.read(self.rfd, n)

    def recv_into(self, buf: bytearray | memoryview, nbytes: int = 0) -> int:
        view = memoryview(buf).cast("B")
        if nbytes:
            view = view[:nbytes]
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        self._check_read()
        return os.readv(self.rfd, [view])

    def sendall(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self._wclosed:
                raise OSError(errno.EBADF, "pipe closed")
            n = os.write(self.wfd, view[: _CHUNK * 16])
            view = view[n:]

    def sendmsg(self, buffers: Sequence[Buffer]) -> int:
        if self._wclosed:
            raise OSError(errno.EBADF, "pipe closed")
        return os.writev(self.wfd, buffers)

    def shutdown(self, how: int) -> None:
        """``SHUT_WR``/``SHUT_RDWR`` close the write end at once, so the peer sees the
        end of the stream; a pipe's read end cannot be shut down, only closed."""
        if how in (_socket.SHUT_WR, _socket.SHUT_RDWR) and not self._wclosed:
            self._wclosed = True
            os.close(self.wfd)

    def close(self) -> None:
        """Close the write fd, and end the read side; idempotent.

        Another thread may be about to read (a reader thread owns the reads), so the read
        fd is not closed at once: its number could be reused by an unrelated file before
        that thread's ``read``. It is pointed at ``/dev/null`` instead (reads see the end
        of the stream) and closed when this object is collected.
        """
        if not self._wclosed:
            self._wclosed = True
            os.close(self.wfd)
        if not self._rclosed:
            self._rclosed = True
            null = os.open(os.devnull, os.O_RDONLY)
            try:
                os.dup2(null, self.rfd, inheritable=False)
            finally:
                os.close(null)

    def __del__(self) -> None:
        if not hasattr(self, "_rclosed"):
            return
        if not self._wclosed:
            self._wclosed = True
            os.close(self.wfd)
        if self.rfd >= 0:
            rfd, self.rfd, self._rclosed = self.rfd, -1, True
            try:
                os.close(rfd)
            except OSError:
                pass
