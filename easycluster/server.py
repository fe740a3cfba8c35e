"""EasyCluster 0.22's ``easycluster.server`` module, for scripts written for it.

Everything here forwards to the package's own parts; nothing inside the package imports
this module. ``python -m easycluster.server`` runs the ``easycluster`` command, as 0.22's
did. Heavy names (``ServerThread``, ``RootObject``) load on first use.

Where 0.22 had a bug or a hole, this face keeps the name and drops the hole: servers
refuse the empty key, ``spawn_local``'s server is never a fork of the calling script, and
``run_server`` authenticates before it forks (see ``easycluster.service.tcpserver``).
"""

from __future__ import annotations

import errno
import importlib
import ipaddress
import os
import signal
import socket
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from .errors import EasyClusterError

# 0.22's value, kept for scripts that print or compare it. Our handshake negotiates
# protocol versions itself; no 0.22 client can talk to this server either way.
MIN_CLIENT_VERSION = "0.16"

_LAZY: Dict[str, str] = {
    "RootObject": "easycluster.remote.verbs",
    "ServerThread": "easycluster.remote.connection",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'easycluster.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


def spawn_local(clientclass: Optional[type] = None, **kw: Any) -> Any:
    """Start a fresh local server process and return a ``clientclass`` (default
    ``Client``) connected to it.

    The server is never a fork of this script (0.22's was, atexit handlers and all): see
    ``easycluster.client.local.spawn_local`` for the keywords. ``profile``, which 0.22
    handed to its server, is accepted and ignored.
    """
    from .client.local import spawn_local as spawn

    kw.pop("profile", None)
    return spawn(clientclass, **kw)


def server_check_runner() -> None:
    """Does nothing. (0.22 needed it on Windows, where a server child re-ran the script;
    scripts call it at top level, so it stays.)"""


def server_main(args: Optional[List[str]] = None) -> int:
    """The ``easycluster`` command with ``args`` (default ``sys.argv[1:]``); returns its
    exit code (0.22's ``server_main`` was the same command line)."""
    from .cli import main

    return main(args)


def server_init() -> None:
    """Prepare this process to fork servers with ``spawn_runner_process``: finished
    server processes are reaped as they end (a SIGCHLD handler), as 0.22 did."""
    signal.signal(signal.SIGCHLD, _reap_children)


def _reap_children(*_: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Server:
    """One connection's server in this process: ``Server(key, sock, peername).run()``
    runs the handshake on ``sock`` (a connected socket) with ``key``, serves the client
    until it goes away, and returns None, so 0.22's ``while svr: svr = svr.run()`` loop
    ends.

    ``key`` must be a real key (0.22's empty key is refused: ValueError). ``profile`` and
    ``repl`` are accepted and ignored. ``report_connection`` and ``report_disconnection``
    are called around the served connection (override them to log differently); requests
    are logged by the ``easycluster.server`` logger at ``verbosity`` 2.

    A subclass that overrides ``report_request`` or ``run_request`` (0.22's per-request
    hooks) has every call go through them, on the thread that runs it:
    ``report_request(rid, garbage, tid, oid, meth, args, kw)`` first (``garbage`` is
    always empty: releases travel in frames of their own here), then
    ``run_request(rid, oid, meth, args, kw)``, whose return value (or exception) is the
    call's reply. 0.22's ``run_request`` sent the reply itself and returned nothing: an
    override must return what the base method returns. Without such an override the
    hooks cost nothing.
    """

    handshake_timeout = 30.0  # seconds the client may take to authenticate

    def __init__(
        self,
        key: bytes,
        sock: socket.socket,
        peername: Optional[str] = None,
        verbosity: int = 0,
        profile: Any = None,
        repl: Any = None,
    ):
        from .protocol.handshake import check_key

        self.key = check_key(key)
        self.sock = sock
        self._calls: Dict[int, Callable[..., Any]] = {}  # rid -> what run_request runs
        self.peername = peername or "local"
        self.verbosity = verbosity

    def report_connection(self) -> None:
        """Called once the client has authenticated; prints a line at verbosity >= 1."""
        if self.verbosity >= 1:
            print(f"New connection from {self.peername}", flush=True)

    def report_disconnection(self) -> None:
        """Called when the connection has ended; prints a line at verbosity >= 1."""
        if self.verbosity >= 1:
            print(f"Connection to {self.peername} terminated", flush=True)

    def report_request(
        self, rid: int, garbage: Any, tid: int, oid: int, meth: str, args: Any, kw: Any
    ) -> None:
        """0.22's hook, called before each call when a subclass overrides it or
        ``run_request``; prints a line at verbosity >= 2."""
        if self.verbosity >= 2:
            print(f"{self.peername}: request {rid} (thread {tid}): {oid}.{meth}", flush=True)

    def run_request(self, rid: int, oid: int, meth: str, args: Any, kw: Any) -> Any:
        """Run one call and return its value (an exception it raises is its reply).
        Called (with ``report_request`` first) only when a subclass overrides either."""
        fn = self._calls[rid]
        return fn(*args, **kw)

    def _hook(
        self,
        rid: int,
        tid: int,
        oid: int,
        meth: str,
        args: Any,
        kw: Any,
        fn: Callable[..., Any],
    ) -> Any:
        self._calls[rid] = fn  # (request ids are unique on a connection)
        try:
            self.report_request(rid, [], tid, oid, meth, args, kw)
            return self.run_request(rid, oid, meth, args, kw)
        finally:
            self._calls.pop(rid, None)

    def run(self) -> Optional[Server]:
        """Serve the connection until the client goes away; always returns None.

        A client that fails the handshake (wrong key, garbage, gone, too slow) ends the
        connection: a line on stderr, the socket closed, None returned.
        """
        from .protocol.handshake import WireOptions
        from .remote.connection import ServerConnection
        from .transport.handshake import server_handshake

        try:
            channel = server_handshake(
                self.sock, self.key, WireOptions(), timeout=self.handshake_timeout
            )
        except (EasyClusterError, OSError) as e:
            print(
                f"easycluster: {self.peername}: handshake failed: {e}", file=sys.stderr, flush=True
            )
            self.sock.close()
            return None
        self.report_connection()
        try:
            cls = type(self)
            hooked = (
                cls.report_request is not Server.report_request
                or cls.run_request is not Server.run_request
            )
            ServerConnection(
                channel, self.peername, self.verbosity, request_hook=self._hook if hooked else None
            ).serve()
        finally:
            channel.close("server done")
            self.report_disconnection()
        return None


QuietServer = Server


def spawn_runner_process(
    csock: socket.socket,
    peername: str,
    key: bytes,
    kwargs: Dict[str, Any],
    close: Iterable[socket.socket] = (),
) -> int:
    """Fork a process that serves ``csock`` (``Server(key, csock, peername, **kwargs)``)
    and return its pid. The child closes the sockets in ``close`` first (the listening
    one, say) and ends when the client goes away; the caller still holds ``csock`` and
    should close its copy. Call ``server_init()`` once so that finished children are
    reaped."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for s in close:
                s.close()
            Server(key, csock, peername, **kwargs).run()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)
    return pid


def run_server(
    port: int,
    key: bytes,
    bindaddr: Optional[str] = None,
    allow: Sequence[str] = (),
    verbosity: int = 0,
    daemonize: bool = False,
    pidfile: Optional[str] = None,
    disable_ipv6: bool = False,
    profile: Any = None,
) -> int:
    """Serve ``easycluster -S``'s way until SIGTERM/SIGINT or ``stop_server()``; return
    the exit code (0). 0.22's signature over ``easycluster.service.tcpserver``; ``port``
    0 picks a free port (logged on stderr), ``profile`` is ignored, and an empty ``key``
    is refused (ValueError). Must run in the main thread (it handles signals)."""
    from .service.tcpserver import ServerOptions
    from .service.tcpserver import run_server as serve

    opts = ServerOptions(
        key=key,
        port=port,
        bind=bindaddr,
        allow=tuple(allow),
        ipv6=not disable_ipv6,
        verbosity=verbosity,
        pidfile=pidfile,
        daemonize=daemonize,
    )
    return serve(opts)


def stop_server() -> bool:
    """Make the ``run_server`` serving in this process stop, as SIGTERM does; safe from
    any thread. Returns whether one was serving: with none, nothing happens (as in
    0.22)."""
    from .service.tcpserver import TCPServer

    handler = signal.getsignal(signal.SIGTERM)
    if not isinstance(getattr(handler, "__self__", None), TCPServer):
        return False
    signal.raise_signal(signal.SIGTERM)
    return True


def create_socket(family: int, bindaddr: Optional[str], port: int) -> socket.socket:
    """A TCP socket bound to ``bindaddr`` and ``port`` (not yet listening: call
    ``listen``), with SO_REUSEADDR.

    ``bindaddr`` None binds every address of ``family``; with AF_INET6 the socket is
    dual-stack (IPv4 clients too). A ``bindaddr`` name or address is resolved, and its
    own family wins over AF_INET6 (``'127.0.0.1'`` gives an IPv4 socket). Where the
    system has no IPv6, AF_INET6 falls back to IPv4. OSError if the bind fails.
    """
    sockaddr: Any = ("", port)
    if bindaddr is not None:
        want = 0 if family == socket.AF_INET6 else family
        family, _, _, _, sockaddr = socket.getaddrinfo(bindaddr, port, want, socket.SOCK_STREAM)[0]
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        if family == socket.AF_INET6 and e.errno == errno.EAFNOSUPPORT:
            return create_socket(socket.AF_INET, bindaddr, port)
        raise
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class IPAddress:
    """An IPv4 or IPv6 address, or a network in CIDR notation (``10.0.0.0/8``; host
    bits are cleared, as 0.22 did).

    ``in_network(net)`` tells whether this address lies in ``net`` (an ``IPAddress`` or
    text); an IPv4-mapped IPv6 address (``::ffff:10.1.2.3``) counts as its IPv4 address.
    ValueError for text that is neither.
    """

    def __init__(self, text: str):
        self.text = text
        spec = text.strip()
        self.network = _unmap(ipaddress.ip_network(spec, strict=False))
        self.address = (
            self.network.network_address
            if "/" in spec
            else _unmap_address(ipaddress.ip_address(spec))
        )

    def in_network(self, net: Union[IPAddress, str]) -> bool:
        """True if this address lies in ``net``."""
        other = net if isinstance(net, IPAddress) else IPAddress(net)
        return self.address.version == other.network.version and self.address in other.network

    def __repr__(self) -> str:
        return f"IPAddress({self.text!r})"


def _unmap_address(addr: Any) -> Any:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _unmap(net: Any) -> Any:
    """``::ffff:a.b.c.d/n`` (n >= 96) as the IPv4 network ``a.b.c.d/(n - 96)``."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        v4 = net.network_address.ipv4_mapped
        if v4 is not None:
            return ipaddress.ip_network(f"{v4}/{net.prefixlen - 96}")
    return net


def profile_request(func: Callable[..., Any], args: Sequence[Any]) -> Any:
    """Run ``func(*args)`` under cProfile and write the statistics to
    ``~/profile_<time>.txt`` (a debugging aid, as in 0.22); return what ``func``
    returned."""
    import cProfile
    import pstats
    import time

    prof = cProfile.Profile()
    result = prof.runcall(func, *args)
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S") + f".{time.time_ns() % 10**9:09d}"
    path = os.path.join(os.path.expanduser("~"), f"profile_{stamp}.txt")
    with open(path, "w") as f:
        pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats()
    return result


if __name__ == "__main__":
    sys.exit(server_main())
