"""The standalone TCP server (``easycluster -S``): listen, authenticate, fork per connection.

The listening process is single-threaded and holds no user state. It authenticates each
client itself (``listener.Listener``) and only then forks a child that serves that one
connection, so every client gets a clean process and unauthenticated sockets cost no
process at all.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Set, Tuple

from . import wire
from .listener import Listener, bind_tcp, parse_allow
from .server import serve_connection
from .transport import Channel

log = logging.getLogger("easycluster.server")

DEFAULT_PORT = 11998


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``run_server`` needs; built by the command line or by callers."""

    key: bytes
    port: int = DEFAULT_PORT
    bind: Optional[str] = None
    allow: Tuple[str, ...] = ()
    ipv6: bool = True
    verbosity: int = 0
    handshake_timeout: float = 10.0
    max_pending: int = 64
    max_frame: int = wire.DEFAULT_MAX_FRAME
    pidfile: Optional[str] = None
    daemonize: bool = False


class TCPServer:
    """A bound listener plus its children; ``serve_forever`` until SIGTERM/SIGINT."""

    def __init__(self, opts: ServerOptions):
        self.opts = opts
        wire.check_key(opts.key)
        nets = parse_allow(opts.allow)
        self.sock = bind_tcp(opts.port, opts.bind, ipv6=opts.ipv6)
        self.children: Set[int] = set()
        self.listener = Listener(self.sock, opts.key, self._fork_child, nets,
                                 wire.WireOptions(max_frame=opts.max_frame),
                                 opts.handshake_timeout, opts.max_pending)
        self.stopping = False

    def address(self) -> Tuple[str, int]:
        return self.listener.address()

    def _fork_child(self, sock: object, session: wire.Session, peer: str) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                self.listener.close_in_child()
                serve_connection(Channel(sock, session), peer, self.opts.verbosity)  # type: ignore[arg-type]
            finally:
                os._exit(1)
        self.children.add(pid)

    def reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def serve_forever(self, on_ready: Optional[Callable[[], None]] = None) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        host, port = self.address()
        print(f"easycluster: serving on {host}:{port} (pid {os.getpid()})", file=sys.stderr,
              flush=True)
        if on_ready:
            on_ready()
        try:
            while not self.stopping:
                self.listener.poll(0.5)
                self.reap()
        finally:
            self.listener.close()
        self.reap()
        log.info("stopped accepting; %d connection(s) still finishing", len(self.children))
        return 0


def daemonize(pidfile: Optional[str]) -> None:
    """Detach from the terminal (double fork) and write ``pidfile`` atomically."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    if pidfile:
        tmp = f"{pidfile}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)


def run_server(opts: ServerOptions) -> int:
    """Bind, optionally daemonize, and serve until stopped. Returns the exit code."""
    server = TCPServer(opts)
    if opts.daemonize:
        daemonize(opts.pidfile)
    elif opts.pidfile:
        with open(opts.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    return server.serve_forever()
