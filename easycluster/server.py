"""EasyCluster 0.22's ``easycluster.server`` module, for scripts written for it.

Everything here forwards to the package's own parts; nothing inside the package imports
this module. ``python -m easycluster.server`` runs the ``easycluster`` command, as 0.22's
did. Heavy names (``Server``, ``ServerThread``, ``RootObject``) load on first use.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import signal
import socket
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

MIN_CLIENT_VERSION = "1.0.0"  # the oldest client this server talks to (0.22 said '0.16')

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


def spawn_local(clientclass: Optional[type] = None, **kw: Any) -> Any:
    """Start a fresh local server process and return a client connected to it.

    The server is never a fork of this script (0.22's was): see
    ``easycluster.client.local.spawn_local`` for the keywords.
    """
    from .client.local import spawn_local as spawn

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
    """One connection's server in this process: ``Server(key, sock).run()`` runs the
    handshake on ``sock`` (a connected socket) with ``key``, serves the client until it
    goes away, and returns None (0.22's ``while svr: svr = svr.run()`` loop ends).

    ``key`` must be a real key (0.22's empty key is refused: ValueError). ``profile`` and
    ``repl`` are accepted and ignored.
    """

    def __init__(self, key: bytes, sock: socket.socket, peername: Optional[str] = None,
                 verbosity: int = 0, profile: Any = None, repl: Any = None):
        from .protocol.handshake import check_key

        self.key = check_key(key)
        self.sock = sock
        self.peername = peername or "local"
        self.verbosity = verbosity

    def run(self) -> None:
        from .protocol.handshake import WireOptions
        from .remote.connection import ServerConnection
        from .transport.handshake import server_handshake

        channel = server_handshake(self.sock, self.key, WireOptions(), timeout=30)
        ServerConnection(channel, self.peername, self.verbosity).serve()
        return None


QuietServer = Server


def spawn_runner_process(csock: socket.socket, peername: str, key: bytes,
                         kwargs: Dict[str, Any], close: Iterable[socket.socket] = ()) -> int:
    """Fork a process that serves ``csock`` (``Server(key, csock, peername, **kwargs)``)
    and return its pid. The child closes the sockets in ``close`` first (the listening
    one, say) and ends when the client goes away. Call ``server_init()`` once so that
    finished children are reaped."""
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
            os._exit(code)
    return pid


def run_server(port: int, key: bytes, bindaddr: Optional[str] = None,
               allow: Sequence[str] = (), verbosity: int = 0, daemonize: bool = False,
               pidfile: Optional[str] = None, disable_ipv6: bool = False,
               profile: Any = None) -> int:
    """Serve ``easycluster -S``'s way until SIGTERM/SIGINT (or ``stop_server()``); return
    the exit code. 0.22's signature over ``easycluster.service.tcpserver.run_server``."""
    from .service.tcpserver import ServerOptions
    from .service.tcpserver import run_server as serve

    opts = ServerOptions(key=key, port=port, bind=bindaddr, allow=tuple(allow),
                         ipv6=not disable_ipv6, verbosity=verbosity, pidfile=pidfile,
                         daemonize=daemonize)
    return serve(opts)


def stop_server() -> None:
    """Make the ``run_server`` serving in this process stop, as SIGTERM does (from any
    thread). RuntimeError if none is serving."""
    from .service.tcpserver import TCPServer

    handler = signal.getsignal(signal.SIGTERM)
    if not isinstance(getattr(handler, "__self__", None), TCPServer):
        raise RuntimeError("stop_server(): no run_server() is serving in this process")
    signal.raise_signal(signal.SIGTERM)


def create_socket(family: int, bindaddr: Optional[str], port: int) -> socket.socket:
    """A TCP socket of ``family`` bound to ``bindaddr`` (None: every address; with AF_INET6
    IPv4 too) and ``port``, listening."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((bindaddr or "::", port, 0, 0))
        else:
            sock.bind((bindaddr or "0.0.0.0", port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class IPAddress:
    """An IPv4 or IPv6 address, or a network in CIDR notation (``10.0.0.0/8``).

    ``in_network(net)`` tells whether this address lies in ``net`` (an ``IPAddress`` or
    text); an IPv4-mapped IPv6 address counts as its IPv4 address. ValueError for text
    that is neither.
    """

    def __init__(self, text: str):
        self.text = text
        self.network = ipaddress.ip_network(text.strip(), strict=False)
        self.address = self.network.network_address if "/" in text else \
            ipaddress.ip_address(text.strip())

    def in_network(self, net: Union[IPAddress, str]) -> bool:
        other = net if isinstance(net, IPAddress) else IPAddress(net)
        addr = self.address
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr.version == other.network.version and addr in other.network

    def __repr__(self) -> str:
        return f"IPAddress({self.text!r})"


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
