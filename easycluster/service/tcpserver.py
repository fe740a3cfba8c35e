"""The standalone TCP server (``easycluster -S``): listen, authenticate, fork per connection.

The listening process is single-threaded and holds no user state. It authenticates each
client itself (``listener.Listener``) and only then forks a child that serves that one
connection, so every client gets a clean process and unauthenticated sockets cost no
process at all. The fork is mostly done ahead of time: once the connection code is
loaded, and again once connections pause for ``SPARE_AFTER`` seconds, the listener
forks a *spare* that prepares and warms itself and is handed the next authenticated
connection (``spare.py``); without one (a burst, or a spare that died) it forks on the
spot. A spare is no connection for ``max_connections``, and ends at once on a stop.

Signals (the contract a service manager relies on):

* SIGTERM or SIGINT: stop accepting at once (the listening socket is closed), ask every
  connection process to drain (SIGUSR1: idle ones exit at once, busy ones when their
  running calls are done), wait up to ``grace`` seconds, then SIGTERM (and, 2 s later,
  SIGKILL) those still running; exit 0. A second SIGTERM/SIGINT cuts the grace short.
* SIGHUP: call the ``reload`` function given at start (it re-reads the configuration
  and the key file) and use the new key, allow list and limits for new connections; the
  port and bind address change only on restart. A reload that fails is logged and the
  previous settings stay. Connections already open are not touched.
* SIGCHLD: reaps finished connection processes, which frees their ``max_connections``
  slots.

If the listener dies without a word (``kill -9``, the OOM killer), its connection
processes notice and drain as on SIGUSR1 (idle ones end at once, busy ones when their
running calls are done). On Linux each asks the kernel for SIGUSR1 when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, through ``ctypes``, looked up once in the listener; a
parent already gone by then is caught with ``getppid``): one system call. Elsewhere each
holds the read end of a pipe whose only write end is the listener's, and a thread waits
for its end of file: portable, but a thread per process, about 0.5 ms more per
connection here (``bench/bench_handshake.py`` measures both; ``listenerwatch.py``).

Under systemd (``NOTIFY_SOCKET`` set, ``Type=notify``) the server reports READY=1 once it
listens, RELOADING=1/READY=1 around a reload and STOPPING=1 when it stops accepting
(``daemon.py``: the notifications, the detached process and its pid file).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

from ..protocol import frames, handshake
from ..remote.serverlog import before_first_log, lazy_logger
from .addresses import bind_tcp, parse_allow

# (daemon.py's and listenerwatch.py's names are re-exported: their home was this module)
from .daemon import daemonize as daemonize
from .daemon import notify_systemd as notify_systemd
from .daemon import remove_pidfile as remove_pidfile
from .listener import Listener, drain_fd
from .listenerwatch import PR_SET_PDEATHSIG as PR_SET_PDEATHSIG
from .listenerwatch import parent_death_signal as parent_death_signal
from .listenerwatch import watch_listener as watch_listener
from .options import ServerOptions as ServerOptions  # (its home was this module)
from .spare import Spare, handoff_message

TYPE_CHECKING = False
if TYPE_CHECKING:  # (annotations only: the port opens without importing typing)
    from typing import Any, Callable, Dict, Optional, Set, Tuple

    Reload = Callable[[], "ServerOptions"]

    Serve = Callable[[socket.socket, frames.Session, str, int], None]

log = lazy_logger("easycluster.server")  # (logging loads once there is work: see below)

KILL_WAIT = 2.0  # seconds between SIGTERM and SIGKILL for connections past the grace
# Seconds an idle listener waits before it loads the connection code (any work loads it
# at once: ``serve_forever``). Loaded right after listening, it took CPU from the servers
# started beside it: 50 started at once on 2 cores all listen within a second or two.
WARM_UP_AFTER = 5.0
# Seconds without a new connection before the listener forks the next spare (the first
# one comes with the connection code): a burst of connections is not slowed down by
# spares forked (and warming up) between them, on the processors the burst needs.
SPARE_AFTER = 0.3


class TCPServer:
    """A bound listener plus its children; ``serve_forever`` until SIGTERM/SIGINT.

    ``reload`` (optional) returns fresh options on SIGHUP; ``notify_socket`` is systemd's
    ``NOTIFY_SOCKET`` path (None: no notifications).
    """

    def __init__(
        self,
        opts: ServerOptions,
        reload: Optional[Reload] = None,
        notify_socket: Optional[str] = None,
    ):
        self.opts = opts
        handshake.check_key(opts.key)
        nets = parse_allow(opts.allow)
        self.sock = bind_tcp(opts.port, opts.bind, ipv6=opts.ipv6)
        self.children: Dict[int, str] = {}  # pid -> peer
        self.reload_options = reload
        self.notify_socket = notify_socket
        self.stopping = False
        self._stop_requests = 0
        self._hup = False
        self._serve: Optional[Serve] = None
        self._wake_r = self._wake_w = -1
        self._alive_r = self._alive_w = -1
        self._death_signal: Optional[Callable[[int], bool]] = None
        self._listener_pid = os.getpid()
        self._warm: Callable[[], None] = _ignore
        self._spare: Optional[Spare] = None  # the next connection's process (spare.py)
        self._spare_due: Optional[float] = None  # when to fork the next spare (monotonic)
        self._ended_spares: Set[int] = set()  # spares told to end: reaped, not counted
        try:
            self.listener = Listener(
                self.sock,
                opts.key,
                self._fork_child,
                nets,
                handshake.WireOptions(max_frame=opts.max_frame),
                opts.handshake_timeout,
                opts.max_pending,
            )
            self._wake_r, self._wake_w = os.pipe()
            for fd in (self._wake_r, self._wake_w):
                os.set_blocking(fd, False)
            self.listener.set_wakeup(self._wake_r)
            self.listener.verbose = opts.verbosity > 0
            # Connection processes watch the read end: EOF means the listener is gone.
            self._alive_r, self._alive_w = os.pipe()
        except BaseException:
            self.close()
            raise

    def address(self) -> Tuple[str, int]:
        return self.listener.address()

    def close(self) -> None:
        """Close the listening socket, pending handshakes and the wake-up pipe. The
        connection processes see the listener go and drain (idle ones end at once, busy
        ones after their running calls). ``serve_forever`` does it when it returns or
        fails; call it for a server that will not serve. Idempotent."""
        listener = getattr(self, "listener", None)
        if listener is not None:
            listener.close()
        if getattr(self, "_spare", None) is not None:
            self._end_spare()
        self.sock.close()
        for fd in (self._wake_r, self._wake_w, self._alive_r, self._alive_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = self._alive_r = self._alive_w = -1

    # -- connections --------------------------------------------------------------

    def _fork_child(self, sock: socket.socket, session: frames.Session, peer: str) -> None:
        limit = self.opts.max_connections
        if limit and len(self.children) >= limit:
            self.listener.refusals.refused(
                "refused: max_connections reached",
                "connection from %s refused: %d connections open (max_connections)",
                peer,
                len(self.children),
            )
            return
        serve = self.connection_server()  # (here, before the fork: every child shares it)
        # the next spare: once connections pause (and never in this round: it would
        # inherit ``sock``)
        self._spare_due = time.monotonic() + SPARE_AFTER
        spare, self._spare = self._spare, None
        hs = self.listener.handshake
        if spare is not None and hs is not None:
            msg = handoff_message(*hs, self.opts.verbosity, self.listener.options, peer)
            if spare.hand_over(sock, msg):
                self.children[spare.pid] = peer
                self._check_limit()
                return
            self._ended_spares.add(spare.pid)  # (gone: reaped, never counted)
        self._listener_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                self._prepare_child()
                serve(sock, session, peer, self.opts.verbosity)
            finally:
                os._exit(1)
        self.children[pid] = peer
        self._check_limit()

    def _prepare_child(self) -> None:
        """In a connection process (or a spare), first: the listener's signal handlers
        and descriptors go, the watch on the listener is set up."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._alive_w)  # the listener's alone: its EOF is the news
        if self._spare is not None:
            self._spare.close()
        watch_listener(self._alive_r, self._listener_pid, self._death_signal)
        self.listener.close_in_child()

    def _fork_spare(self) -> None:
        """Fork the spare the next connection is handed to (``spare.py``), if wanted."""
        self._spare_due = None
        if self._spare is None and not self.stopping:
            self._listener_pid = os.getpid()
            self._spare = Spare.fork(self._prepare_child, self.connection_server(), self._warm)

    def _end_spare(self) -> None:
        """Stopping: the spare ends (it is idle); it is reaped, never counted."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
            self._ended_spares.add(spare.pid)

    def connection_server(self) -> Serve:
        """The code that serves one connection (in its forked process), imported on first
        use, in the listener (``serve_forever`` says when). So the port opens sooner,
        servers started together do not slow each other down loading it, and every
        connection process inherits it already imported."""
        if self._serve is None:
            from . import connection_code

            connection_code.load()
            self._death_signal = parent_death_signal()
            self._warm = connection_code.warm
            self._serve = connection_code.serve
        return self._serve

    def reap(self) -> None:
        """Collect finished connection processes (never blocks)."""
        while self.children or self._spare is not None or self._ended_spares:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                self._ended_spares.clear()
                break
            if pid == 0:
                break
            if self._spare is not None and pid == self._spare.pid:
                self._spare.close()  # (died waiting: the next connection forks its own)
                self._spare = None
                continue
            if pid in self._ended_spares:
                self._ended_spares.discard(pid)
                continue
            peer = self.children.pop(pid, "?")
            code = os.waitstatus_to_exitcode(status)
            if code not in (0, -signal.SIGTERM):
                log.warning("connection process %d for %s ended with status %d", pid, peer, code)
        self._check_limit()

    def _check_limit(self) -> None:
        if self.stopping:
            return
        limit = self.opts.max_connections
        if limit and len(self.children) >= limit:
            if self.listener.accepting:
                log.warning("%d connections open (max_connections): new ones wait", limit)
                self.listener.pause()
        elif not self.listener.accepting:
            log.info("below max_connections again: accepting")
            self.listener.resume()

    # -- signals ------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Ask ``serve_forever`` to stop (safe from a signal handler)."""
        self.stopping = True
        self._stop_requests += 1

    def _on_hup(self, *_: object) -> None:
        self._hup = True

    def reload(self) -> bool:
        """Apply fresh options from ``reload``; on failure log it and keep the old ones."""
        self._hup = False
        if self.reload_options is None:
            log.warning("SIGHUP: nothing to reload (no reload function)")
            return False
        self.notify("RELOADING=1")
        try:
            new = self.reload_options()
            nets = parse_allow(new.allow)
            handshake.check_key(new.key)
        except Exception as e:  # a bad edit must not take the server down
            log.error("reload failed, keeping the previous settings: %s", e)
            self.notify("READY=1")
            return False
        old = self.opts
        if (new.port, new.bind, new.ipv6) != (old.port, old.bind, old.ipv6):
            log.warning("reload: port/bind changes take effect only after a restart")
        self.opts = new.replace(
            port=old.port,
            bind=old.bind,
            ipv6=old.ipv6,
            pidfile=old.pidfile,
            daemonize=old.daemonize,
        )
        self.listener.update(new.key, nets, new.handshake_timeout, new.max_pending)
        self.listener.verbose = new.verbosity > 0
        self._check_limit()
        if self._spare is not None:  # (forked before: the logging level may have changed)
            self._end_spare()
            self._spare_due = time.monotonic()  # (a new one after this round)
        allow = ", ".join(new.allow) if new.allow else "everyone holding the key"
        log.warning(
            "reloaded: allow %s; key %s; max_connections %s",
            allow,
            "changed" if new.key != old.key else "unchanged",
            new.max_connections or "unlimited",
        )
        self.notify("READY=1")
        return True

    def notify(self, state: str) -> None:
        """Send ``state`` to systemd's notification socket, if there is one."""
        if self.notify_socket:
            notify_systemd(self.notify_socket, state)

    # -- main loop ----------------------------------------------------------------

    def serve_forever(
        self,
        on_ready: Optional[Callable[[], None]] = None,
        before_work: Optional[Callable[[], None]] = None,
    ) -> int:
        """Serve until SIGTERM/SIGINT, then drain within the grace period; return 0.

        ``on_ready`` is called once the port is open, after the "serving on" line and
        before systemd is told READY=1. Then the listener stays small until there is
        work (a connection or a signal; under systemd at once), or for
        ``WARM_UP_AFTER`` seconds: only then does it load the connection code (and fork
        a spare). ``before_work`` is called just before anything is first logged, in
        whichever process logs it (the command line sets logging up there): at
        verbosity 0, a server with no warning to give never loads ``logging``."""
        handlers = {
            signal.SIGTERM: self.stop,
            signal.SIGINT: self.stop,
            signal.SIGHUP: self._on_hup,
            signal.SIGCHLD: _ignore,
        }
        saved: Dict[signal.Signals, Any] = {}
        saved_fd: Optional[int] = None
        try:  # (signal handlers need the main thread: ValueError elsewhere, port closed)
            for sig, h in handlers.items():
                saved[sig] = signal.signal(sig, h)
            saved_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            host, port = self.address()
            print(
                f"easycluster: serving on {host}:{port} (pid {os.getpid()})",
                file=sys.stderr,
                flush=True,
            )
            if on_ready:
                on_ready()
            # Whatever logs first sets logging up: a server at verbosity 0 that has no
            # warning to give never loads ``logging`` (nor do its connection processes).
            before_first_log(before_work)
            if not self.notify_socket:  # (under systemd the work starts now)
                self._idle(WARM_UP_AFTER)
            self.notify(f"READY=1\nSTATUS=serving on {host}:{port}\nMAINPID={os.getpid()}")
            try:
                if not self.stopping:
                    self.connection_server()  # (see there)
                    self._fork_spare()
                while not self.stopping:
                    if self._hup:
                        self.reload()
                    due = self._spare_due
                    self.listener.poll(5.0 if due is None else max(0.0, due - time.monotonic()))
                    self.reap()
                    due = self._spare_due  # (a connection in this round put it off)
                    if due is not None and time.monotonic() >= due:
                        self._fork_spare()
            finally:
                self.listener.close()
                self._end_spare()
            self.notify("STOPPING=1")
            self._drain()
        finally:
            if saved_fd is not None:
                signal.set_wakeup_fd(saved_fd)
            for sig, h in saved.items():
                signal.signal(sig, h)
            self.close()
        log.warning("stopped")
        before_first_log(None)
        return 0

    def _idle(self, seconds: float) -> None:
        """Wait until a connection or a signal comes (nothing is taken: the listener's
        ``poll`` reads them), or ``seconds`` pass. A signal's handler writes to the
        wake-up pipe, so a signal ends the wait too."""
        select.select([self.sock.fileno(), self._wake_r], [], [], seconds)

    def _drain(self) -> None:
        """Wait up to ``grace`` for the connection processes, then end them."""
        self.reap()
        if not self.children:
            return
        grace = self.opts.grace
        log.warning(
            "stopping: no new connections; waiting up to %g s for %d open connection(s)",
            grace,
            len(self.children),
        )
        # Ask each connection to drain: idle ones exit now, busy ones after their calls.
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass
        # Any stop request after the first (whenever it came) ends the grace early.
        self._wait_children(time.monotonic() + grace, lambda: self._stop_requests > 1)
        if not self.children:
            return
        log.warning("grace period over: ending %d connection(s)", len(self.children))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in list(self.children):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            self._wait_children(time.monotonic() + KILL_WAIT, lambda: False)
            if not self.children:
                return

    def _wait_children(self, deadline: float, cut_short: Callable[[], bool]) -> None:
        while True:
            self.reap()
            left = deadline - time.monotonic()
            if not self.children or left <= 0 or cut_short():
                return
            try:
                select.select([self._wake_r], [], [], left)  # SIGCHLD writes to the pipe
            except InterruptedError:
                pass
            drain_fd(self._wake_r)


def _ignore(*_: object) -> None:
    """A Python-level SIGCHLD handler, so that the signal writes to the wake-up pipe."""


def run_server(
    opts: ServerOptions,
    reload: Optional[Reload] = None,
    before_work: Optional[Callable[[], None]] = None,
) -> int:
    """Bind, optionally daemonize, and serve until stopped. Returns the exit code.

    ``reload`` is called on SIGHUP for fresh options (see the module docstring);
    ``before_work`` before the server first does any work (``serve_forever``). The
    ``NOTIFY_SOCKET`` variable is taken out of the environment so that the code clients
    run never sees it.
    """
    server = TCPServer(opts, reload, os.environ.pop("NOTIFY_SOCKET", None))
    try:
        if opts.daemonize:
            daemonize(opts.pidfile)
        elif opts.pidfile:
            with open(opts.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
    except BaseException:  # e.g. the pid file cannot be written
        server.close()
        raise
    try:
        return server.serve_forever(before_work=before_work)
    finally:
        if opts.pidfile:
            remove_pidfile(opts.pidfile)
