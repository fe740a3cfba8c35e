"""The TCP listener of the standalone server: allow list, handshakes without threads.

``Listener`` accepts TCP connections, checks the allow list before anything else (before
a single handshake byte is sent), runs many handshakes at once in one thread (each with a
deadline, and caps on how many may be pending) and hands each authenticated socket to a
callback. Being single-threaded, the process it runs in may fork safely.

Floods of unauthenticated sockets: pending handshakes are counted per *source* (an IPv4
address, or the /64 network of an IPv6 address, since one IPv6 host commonly holds a
whole /64). One source may hold at most ``max_pending_per_source`` of them (by default
half of ``max_pending``); past that its own oldest is dropped. When all ``max_pending``
are taken, the oldest of the *largest* source is dropped. So a flood from one source
churns through its own slots, and clients from elsewhere keep completing their
handshakes. Refusals are logged through ``RefusalLog``: a few lines per reason and
interval, then one line counting what was not logged.

The listening socket, the allow list and the sources are ``addresses.py``'s.

The owner may pause accepting (connection limit), change the key and allow list while
serving (SIGHUP reload) and register a wake-up descriptor (a signal self-pipe) so that
``poll`` returns as soon as a signal arrives.
"""

from __future__ import annotations

import os
import selectors
import socket
import time

from ..protocol import handshake

# (lazy_logger re-exported: its home was this module; tcpserver and daemon use it)
from ..remote.serverlog import lazy_logger as lazy_logger
from ..remote.serverlog import log as log
from ..transport.tcp import nodelay

# (re-exported: their home was this module; config.py and tests import them from here)
from .addresses import allowed as allowed
from .addresses import bind_tcp as bind_tcp
from .addresses import parse_allow as parse_allow
from .addresses import source_of as source_of

# ``logging`` loads on first use (``remote/serverlog.py``): the port of ``easycluster -S``
# opens without it (``ipaddress``, the allow list's, likewise: ``addresses.py``; and
# ``typing``: annotations only).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Callable, Dict, List, Optional, Sequence, Tuple

    from ..protocol.frames import Session
    from .addresses import Network

    Handler = Callable[[socket.socket, Session, str], None]


class RefusalLog:
    """Rate-limited warnings about refused connections, so that a flood cannot grow the
    log without limit.

    For each reason, at most ``burst`` lines are written per ``interval`` seconds; the
    refusals past that are counted, and the count is written as one line (``N more ...
    not logged``) when the interval is over (at the next refusal, ``flush`` or
    ``close``). ``clock`` returns seconds (``time.monotonic``; a test may pass its own).
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 5,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger, self.burst, self.interval, self.clock = logger, burst, interval, clock
        # reason -> [start of the interval, lines written in it, refusals not logged]
        self._windows: Dict[str, List[float]] = {}

    def refused(self, reason: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` as a warning unless ``reason`` already had its ``burst``
        lines in this interval (then it is only counted)."""
        now = self.clock()
        w = self._windows.get(reason)
        if w is not None and now - w[0] >= self.interval:
            self._summary(reason, w)
            w = None
        if w is None:
            w = self._windows[reason] = [now, 0, 0]
        if w[1] < self.burst:
            w[1] += 1
            self.logger.warning(msg, *args)
        else:
            w[2] += 1

    def flush(self) -> None:
        """Write the counts of intervals that are over (call it now and then)."""
        now = self.clock()
        for reason, w in list(self._windows.items()):
            if now - w[0] >= self.interval:
                self._summary(reason, w)
                del self._windows[reason]

    def close(self) -> None:
        """Write every count not written yet (at stop: the log tells the whole story)."""
        for reason, w in self._windows.items():
            self._summary(reason, w)
        self._windows.clear()

    def _summary(self, reason: str, w: List[float]) -> None:
        if w[2]:
            self.logger.warning(
                "%d more connection(s) %s in %.0f s, not logged one by one",
                w[2],
                reason,
                max(self.clock() - w[0], 0.0),
            )


class _Pending:
    __slots__ = ("sock", "addr", "source", "peer", "key", "hs", "buf", "deadline")

    def __init__(
        self,
        sock: socket.socket,
        addr: str,
        peer: str,
        key: bytes,
        hs: handshake.ServerHandshake,
        deadline: float,
    ):
        self.sock, self.addr, self.peer, self.hs, self.deadline = sock, addr, peer, hs, deadline
        self.key = key  # (the one this handshake uses, even if a reload changes it)
        self.source = source_of(addr)
        self.buf = bytearray()


_WAKE = object()  # selector data of the wake-up descriptor


class Listener:
    """Accept loop with non-blocking handshakes; single-threaded so forking is safe.

    ``handler(sock, session, peer)`` is called for each authenticated connection.
    Unauthenticated sockets get ``handshake_timeout`` seconds; at most ``max_pending``
    wait at once, and at most ``max_pending_per_source`` from one source (None: half of
    ``max_pending``, at least 1); see the module docstring for which one is dropped to
    make room. So idle or slow sockets cannot exhaust the server, and a flood from one
    source cannot keep other sources out. ``refusals`` rate-limits the warnings about
    refused connections (the owner may log its own refusals through it too).

    While ``handler`` runs, ``handshake`` holds that connection's handshake as it went:
    ``(key, server hello, client hello)``, from which another process can derive the
    same session (``spare.py`` hands connections over so); None otherwise.
    """

    def __init__(
        self,
        sock: socket.socket,
        key: bytes,
        handler: Handler,
        allow: Sequence[Network] = (),
        options: handshake.WireOptions = handshake.WireOptions(),
        handshake_timeout: float = 10.0,
        max_pending: int = 64,
        max_pending_per_source: Optional[int] = None,
        refusals: Optional[RefusalLog] = None,
    ):
        self.sock = sock
        self.key = handshake.check_key(key)
        self.handler = handler
        self.allow = list(allow)
        self.options = options
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self._per_source_option = max_pending_per_source
        self.refusals = refusals or RefusalLog(log)
        self._pending: Dict[int, _Pending] = {}
        # source -> its pending handshakes by descriptor, oldest first (insertion order)
        self._by_source: Dict[str, Dict[int, _Pending]] = {}
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ)
        self._accepting = True
        self._wake_fd: Optional[int] = None
        self.handshake: Optional[Tuple[bytes, bytes, bytes]] = None
        # Log each authenticated connection, and each closed before sending a byte (a
        # port probe, a monitor's check)? At the server's verbosity 0 neither is logged,
        # nor is ``logging`` loaded for them.
        self.verbose = True
        sock.setblocking(False)
        self.stopping = False

    def address(self) -> Tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def max_pending_per_source(self) -> int:
        """The most pending handshakes one source may hold."""
        if self._per_source_option is not None:
            return max(1, min(self._per_source_option, self.max_pending))
        return max(1, self.max_pending // 2)

    @property
    def accepting(self) -> bool:
        """False while paused: new connections wait in the kernel's backlog."""
        return self._accepting

    def pause(self) -> None:
        """Stop accepting (handshakes already under way go on)."""
        if self._accepting:
            self._sel.unregister(self.sock)
            self._accepting = False

    def resume(self) -> None:
        """Accept again after ``pause``."""
        if not self._accepting:
            self._sel.register(self.sock, selectors.EVENT_READ)
            self._accepting = True

    def set_wakeup(self, fd: int) -> None:
        """Make ``poll`` return when ``fd`` is readable; what is readable is read away."""
        self._wake_fd = fd
        self._sel.register(fd, selectors.EVENT_READ, _WAKE)

    def update(
        self, key: bytes, allow: Sequence[Network], handshake_timeout: float, max_pending: int
    ) -> int:
        """Use a new key and allow list for connections accepted from now on.

        Pending handshakes from peers the new list refuses are dropped; the number dropped
        is returned. Authenticated connections are not touched.
        """
        self.key = handshake.check_key(key)
        self.allow = list(allow)
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        gone = [p for p in self._pending.values() if not allowed(p.addr, self.allow)]
        for p in gone:
            self.refusals.refused(
                "refused: not in the reloaded allow list",
                "connection from %s refused: not in the reloaded allow list",
                p.peer,
            )
            self._drop(p)
        return len(gone)

    def pending(self) -> int:
        """How many sockets are waiting to finish their handshake."""
        return len(self._pending)

    def pending_by_source(self) -> Dict[str, int]:
        """How many sockets wait to finish their handshake, per source."""
        return {src: len(ps) for src, ps in self._by_source.items()}

    def poll(self, timeout: float = 1.0) -> None:
        """Run one round: accept, advance handshakes, expire slow ones.

        Returns after ``timeout`` seconds at most, sooner on activity, a wake-up or the
        next handshake deadline (which is enforced on time whatever ``timeout`` is).
        """
        if self._pending:
            first = min(p.deadline for p in self._pending.values())
            timeout = min(timeout, max(0.0, first - time.monotonic()))
        for k, _ in self._sel.select(timeout):
            if k.data is _WAKE:
                drain_fd(k.fd)
            elif k.fileobj is self.sock:
                if self._accepting:
                    self._accept()
            else:
                # A socket dropped earlier in this round (to make room, say) is skipped;
                # its descriptor number may even belong to a newer socket by now.
                p = self._pending.get(k.fd)
                if p is not None and p is k.data:
                    self._advance(p)
        now = time.monotonic()
        for p in [p for p in self._pending.values() if p.deadline <= now]:
            self.refusals.refused(
                "refused: no handshake in time",
                "connection from %s refused: no handshake within %.1f s",
                p.peer,
                self.handshake_timeout,
            )
            self._drop(p)
        self.refusals.flush()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.error("accept failed: %s", e)
                return
            peer = _peername(addr)
            if not allowed(addr[0], self.allow):
                self.refusals.refused(
                    "refused: not in the allow list",
                    "connection from %s refused: not in the allow list",
                    peer,
                )
                conn.close()
                continue
            hs = handshake.ServerHandshake(self.key, self.options)
            deadline = time.monotonic() + self.handshake_timeout
            p = _Pending(conn, addr[0], peer, self.key, hs, deadline)
            self._make_room(p.source)
            try:
                conn.setblocking(False)
                nodelay(conn)  # (setsockopt may fail too once the peer is gone)
                conn.send(hs.hello)
            except OSError:
                conn.close()
                continue
            self._add(p)

    def _make_room(self, source: str) -> None:
        """Drop a pending handshake if one more from ``source`` would pass a cap: that
        source's oldest past its own cap, else the largest source's oldest past the
        global one (a source that floods loses its own sockets, not others')."""
        mine = self._by_source.get(source, {})
        if len(mine) >= self.max_pending_per_source:
            victim = next(iter(mine.values()))
        elif len(self._pending) >= self.max_pending:
            largest = max(self._by_source.values(), key=len)
            victim = next(iter(largest.values()))
        else:
            return
        self.refusals.refused(
            "dropped: too many unauthenticated sockets",
            "connection from %s dropped: too many unauthenticated sockets from %s",
            victim.peer,
            victim.source,
        )
        self._drop(victim)

    def _add(self, p: _Pending) -> None:
        fd = p.sock.fileno()
        self._pending[fd] = p
        self._by_source.setdefault(p.source, {})[fd] = p
        self._sel.register(p.sock, selectors.EVENT_READ, p)

    def _forget(self, p: _Pending) -> None:
        """Take ``p`` out of the tables and the selector (its socket stays open)."""
        fd = p.sock.fileno()
        self._sel.unregister(p.sock)
        del self._pending[fd]
        same = self._by_source[p.source]
        del same[fd]
        if not same:
            del self._by_source[p.source]

    def _advance(self, p: _Pending) -> None:
        try:
            chunk = p.sock.recv(handshake.CLIENT_HELLO_SIZE - len(p.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            if p.buf or self.verbose:  # (nothing sent at all: a port probe)
                self.refusals.refused(
                    "closed before the handshake finished",
                    "connection from %s closed before the handshake finished",
                    p.peer,
                )
            self._drop(p)
            return
        p.buf += chunk
        if len(p.buf) < handshake.CLIENT_HELLO_SIZE:
            return
        reply, session = p.hs.receive(bytes(p.buf))
        self._forget(p)
        try:
            p.sock.setblocking(True)
            p.sock.sendall(reply)
        except OSError:
            session = None
        if session is None:
            self.refusals.refused(
                "refused: failed handshake",
                "connection from %s refused: %s",
                p.peer,
                p.hs.failure or "gone",
            )
            p.sock.close()
            return
        if self.verbose:
            log.info("connection from %s authenticated", p.peer)
        self.handshake = (p.key, p.hs.hello, bytes(p.buf))
        try:
            self.handler(p.sock, session, p.peer)
        finally:
            self.handshake = None
            p.sock.close()

    def _drop(self, p: _Pending) -> None:
        self._forget(p)
        p.sock.close()

    def close(self) -> None:
        """Stop listening: drop pending handshakes and close the listening socket; the
        counts of refusals not logged yet are written."""
        for p in list(self._pending.values()):
            self._drop(p)
        self.refusals.close()
        self._sel.close()
        self.sock.close()

    def close_in_child(self) -> None:
        """After fork: release the parent's sockets without disturbing the parent."""
        for p in self._pending.values():
            p.sock.close()
        self.sock.close()


def drain_fd(fd: int) -> None:
    """Read a non-blocking wake-up descriptor (a signal self-pipe) empty."""
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _peername(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    if host.startswith("::ffff:"):
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
