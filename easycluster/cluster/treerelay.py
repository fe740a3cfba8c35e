"""Tree mode for the executor and the farm: ``TreeConnector`` (sessions to nodes
through gateways, at any level) and the gateway's entry points that serve them.

``TreeConnector(topology, opts, direct).connect(node)`` returns a session to ``node``:
``direct(node)``'s for a node reached from here (a child of the root, or one the
topology does not list), else a ``RelayedClient`` (``treeexec.py``) whose requests the
node's gateway forwards. A gateway is our own server bootstrapped over ssh with nothing
installed (the payload carries this module); it keeps one session per
``RelayedClient`` (``SESSIONS``): over ssh to its own nodes, or through a
``TreeConnector`` of its own, rooted at itself, to nodes below another gateway.

Entry points (called by name by the parent, on the link of ``treeexec.Link``):

    relay_setup(topology text, me, opts, boots)   once per gateway connection
    relay_open(node) -> (session id, peer name)   ConnectError & co. when it cannot
    relay_send(sid, rid, verb, args, kwargs, tid) forward one request (never raises:
                                                  a failure is the request's reply)
    relay_read(wait) -> [(rid, kind, value)]      the replies ready, or [] after wait
    relay_close(sid)                              end one session

A reply's kind is ``ok`` (the value), ``raised`` ((exception, traceback lines)) or
``lost`` (why: the node's session died, or was closed).
"""

from __future__ import annotations

import itertools
import os
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..client.client import Client
from ..client.threaded import ThreadedClient
from ..errors import CallTimeout, ConnectError, ConnectionLost, RemoteException
from ..launch.ssh import open_channel
from .routing import Router
from .topology import Topology, load_topology
from .treeboot import Payloads
from .treeexec import ENTRY, LOST, OK, RAISED, Link, RelayedClient, relay_options

__all__ = ["TreeConnector", "RELAY_ROOTS", "as_topology", "relay_setup", "relay_open", "relay_send"]

RELAY_ROOTS = ("easycluster.cluster.treerelay",)  # what a relay gateway carries


def as_topology(value: Any) -> Topology:
    """A ``Topology`` from one, a path (``str`` without ``:``, or a path object), or
    what ``Topology.build`` takes (the text, a ``{parents: children}`` dict).
    ``TopologyError`` (a ``ConfigError``) for a bad one, naming the line."""
    if isinstance(value, Topology):
        return value
    if isinstance(value, os.PathLike) or (isinstance(value, str) and ":" not in value):
        return load_topology(os.fspath(value))  # (a topology's text has "parents: children")
    return Topology.build(value)


class TreeConnector:
    """Opens sessions to nodes through the tree (module docstring), from ``root`` (the
    admin by default; a gateway's own name on a gateway). ``direct(node)`` makes the
    session of a node reached from here. Links to gateways are opened on first need and
    shared by their nodes; ``close()`` ends them all (and with them the gateways'
    sessions). Safe from many threads."""

    def __init__(
        self,
        topology: Topology,
        opts: Dict[str, Any],
        direct: Callable[[str], Any],
        root: Optional[str] = None,
        boot: Optional[bytes] = None,
        node_boot: Optional[bytes] = None,
    ) -> None:
        self.topology = topology
        self.opts = opts
        self.direct = direct
        self.router = Router(topology, root)
        self.root = self.router.root
        self.boots = Payloads(RELAY_ROOTS, boot, node_boot)
        self.links: Dict[str, Link] = {}
        self.lock = threading.Lock()
        self.opening: Dict[str, threading.Lock] = {}
        self.closed = False

    def connect(self, node: str) -> Any:
        """A session to ``node``: ``direct(node)``'s, or a ``RelayedClient``. Raises
        ``ConnectError`` (naming the gateways tried) when no gateway leads to it."""
        tried: List[str] = []
        while True:
            with self.lock:
                if self.closed:
                    raise ConnectError(f"{node}: the connector is closed")
                plan = self.router.route([node])
            if plan.direct:
                return self.direct(node)
            if not plan.via:
                why = "; ".join(tried) or f"no live gateway leads to it from {self.root}"
                raise ConnectError(f"{node}: {why}")
            gw = next(iter(plan.via))
            try:
                link = self._link(gw)
            except Exception as e:  # this gateway is out: try another declared one
                tried.append(f"gateway {gw} unreachable: {e}")
                with self.lock:
                    self.router.fail(gw)
                continue
            try:
                sid, peername = link.call("relay_open", node, timeout=self._open_wait())
            except RemoteException as e:  # the gateway could not connect the node
                error = e.orig if e.orig is not None else e
                raise ConnectError(f"{node} (via {gw}): {error}") from None
            except (ConnectionLost, CallTimeout, OSError) as e:
                tried.append(f"gateway {gw} lost: {e}")
                link.fail(f"gateway {gw} lost: {e}")
                with self.lock:
                    self.router.fail(gw)
                continue
            return RelayedClient(link, sid, node, peername)

    def _open_wait(self) -> float:
        # the node's connect at its gateway, a deeper gateway's own (when there is one),
        # and a margin of one silence deadline
        return float(self.opts["silence"]) + 3 * float(self.opts["connect_timeout"])

    def _link(self, gw: str) -> Link:
        """The live link to ``gw``, opened now if there is none (one opener per gw)."""
        with self.lock:
            lock = self.opening.setdefault(gw, threading.Lock())
        with lock:
            link = self.links.get(gw)
            if link is not None and link.alive:
                return link
            client = self._open_gateway(gw)
            try:
                boots = self.boots.for_gateway(self.topology, gw)
                client.call(
                    ENTRY + "relay_setup",
                    self.topology.to_text(),
                    gw,
                    self.opts,
                    boots,
                    call_timeout=self.opts["silence"] + self.opts["connect_timeout"],
                    origexc=False,
                )
            except BaseException:
                client.close()
                raise
            link = Link(gw, client, self.opts["silence"])
            with self.lock:
                if self.closed:
                    link.fail("the connector is closed")
                    raise ConnectError(f"gateway {gw}: the connector is closed")
                self.links[gw] = link
            return link

    def _open_gateway(self, gw: str) -> ThreadedClient:
        opts = self.opts
        ssh = list(opts["ssh_options"]) + (["-l", opts["user"]] if opts["user"] else [])
        client = ThreadedClient(connect_timeout=opts["connect_timeout"], remote_output=False)
        channel, closer, name = open_channel(
            gw,
            rpython=opts["gateway_python"],
            extra_args=ssh,
            options=client.wire_options(),
            timeout=opts["connect_timeout"],
            payload_data=self.boots.gateway(),
        )
        client.attach(channel, name, closer)
        return client

    def close(self) -> None:
        """End every link (each gateway ends its sessions with it); idempotent."""
        with self.lock:
            self.closed = True
            links, self.links = list(self.links.values()), {}
        for link in links:
            link.fail("the connector was closed")


def tree_connector(
    topology: Any,
    client: Optional[Callable[[str], Any]],
    gateway_python: Optional[str],
    silence: float,
    options: Dict[str, Any],
) -> TreeConnector:
    """The connector of an executor (or a Cluster's map) with a topology
    (``ClusterExecutor``'s docstring):
    ``client`` (or ``Client(host=node, **options)``) for the nodes reached from here."""
    timeout = options.get("connect_timeout")
    opts = relay_options(
        list(options.get("extra_args", ())),
        options.get("user"),
        options.get("rpython"),
        gateway_python,
        10.0 if timeout is None else float(timeout),
        silence,
    )
    direct = client or (lambda node: Client(host=node, **options))
    return TreeConnector(as_topology(topology), opts, direct)


# -- the gateway's entry points (called by name by the parent) -----------------------


class _Hub:
    """What this gateway serves its parent with (one parent per gateway process)."""

    def __init__(self, me: str, opts: Dict[str, Any], connector: TreeConnector) -> None:
        self.me = me
        self.opts = opts
        self.connector = connector
        self.opening = threading.BoundedSemaphore(max(1, int(opts["fanout"])))
        self.sessions: Dict[int, Any] = {}
        self.sids = itertools.count(1)
        self.ready = threading.Condition()
        self.replies: List[Tuple[int, str, Any]] = []

    def post(self, entry: Tuple[int, str, Any]) -> None:
        with self.ready:
            self.replies.append(entry)
            if len(self.replies) == 1:
                self.ready.notify_all()

    def replied(self, rid: int, resp: Any) -> None:
        """A node's reply came back (on its client's reader thread): queue it."""
        try:
            err = resp.exception(0)
        except BaseException as e:  # (cancelled): the request's outcome all the same
            err = e
        if err is None:
            self.post((rid, OK, resp.result(0)))
        elif isinstance(err, RemoteException):
            self.post((rid, RAISED, (err.orig, err.text)))
        else:
            self.post((rid, LOST, f"{type(err).__name__}: {err}"))

    def direct(self, node: str) -> ThreadedClient:
        """A session over ssh to one of this gateway's own nodes."""
        opts = self.opts
        keep = opts["keep_alive"]
        extra = (
            {} if keep is None else {"keep_alive_interval": keep, "keep_alive_timeout": 2 * keep}
        )
        client = ThreadedClient(
            connect_timeout=opts["connect_timeout"], remote_output=False, **extra
        )
        channel, closer, name = open_channel(
            node,
            user=opts["user"],
            rpython=opts["rpython"],
            extra_args=opts["ssh_options"],
            options=client.wire_options(),
            timeout=opts["connect_timeout"],
            payload_data=self.connector.boots.node(),
        )
        client.attach(channel, name, closer)
        return client


HUB: List[_Hub] = []  # this gateway's hub, once set up (a list: no global statement)


def _hub() -> _Hub:
    if not HUB:
        raise ConnectError("this gateway was not set up (relay_setup)")
    return HUB[0]


def relay_setup(
    topology_text: str, me: str, opts: Dict[str, Any], boots: Tuple[Optional[bytes], bytes]
) -> None:
    """Serve as gateway ``me``: ``boots`` is ``(gateway payload or None, server
    payload)`` (a gateway runs from memory: it has no files to build them from; the
    gateway payload only when other gateways are below this one)."""
    if HUB:
        raise ConnectError("this gateway is set up already")
    hub: List[_Hub] = []
    connector = TreeConnector(
        Topology.build(topology_text),
        opts,
        lambda node: hub[0].direct(node),
        root=me,
        boot=boots[0],
        node_boot=boots[1],
    )
    hub.append(_Hub(me, opts, connector))
    HUB.append(hub[0])


def relay_open(node: str) -> Tuple[int, str]:
    """Open a session to ``node`` (at most ``fanout`` opening at once); its id and the
    peer name. Raises what connecting raised."""
    hub = _hub()
    with hub.opening:
        client = hub.connector.connect(node)
    with hub.ready:
        sid = next(hub.sids)
        hub.sessions[sid] = client
    return sid, str(client.peername)


def relay_send(sid: int, rid: int, verb: str, args: Any, kwargs: Any, tid: int) -> None:
    """Forward request ``rid`` to session ``sid`` on server thread ``tid``; its reply
    (or why there is none) comes out of ``relay_read``."""
    hub = _hub()
    client = hub.sessions.get(sid)
    if client is None:
        hub.post((rid, LOST, "session closed"))
        return
    try:
        resp = client.send_request(
            0, verb, args, kwargs, nonblocking=True, threadid=tid, origexc=False
        )
    except ConnectionLost as e:
        hub.post((rid, LOST, f"{type(e).__name__}: {e}"))
        return
    except Exception as e:  # e.g. an argument that cannot be pickled again
        text = traceback.format_exception(type(e), e, e.__traceback__)
        hub.post((rid, RAISED, (e, text)))
        return
    resp.add_done_callback(lambda r: hub.replied(rid, r))


def relay_read(wait: float) -> List[Tuple[int, str, Any]]:
    """The replies ready (all of them), waiting up to ``wait`` s for one."""
    hub = _hub()
    with hub.ready:
        if not hub.replies:
            hub.ready.wait(wait)
        out, hub.replies = hub.replies, []
    return out


def relay_close(sid: int) -> None:
    """End session ``sid`` (its server ends); nothing if it is gone already."""
    hub = _hub()
    with hub.ready:
        client = hub.sessions.pop(sid, None)
    if client is not None:
        client.close()
