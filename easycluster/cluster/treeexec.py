"""Sessions to nodes through gateways, for the executor and the farm (tree mode).

``treerelay.TreeConnector(topology, opts, direct).connect(node)`` returns a session to
``node``: for a node reached from here (a child of the root, or a node the topology
does not list) what ``direct(node)`` makes (a ``Client``); for a node behind a gateway
a ``RelayedClient`` (this module), which speaks the part of ``Client``'s interface that
the executor's runners and the farm use (``send_request``, ``call``, ``set_global``,
``execblock``, ``eval``, ``close``, ``connected``) and whose requests a gateway
forwards:

    admin ── Link (one ThreadedClient per first-hop gateway, shared by its nodes)
               │  relay_send: (session, request id, verb, args, kwargs, thread)
               │  relay_read: long poll, the replies that came back, in batches
    gateway ── treerelay.py: one session per RelayedClient to its node (ssh, or a
               RelayedClient again for a node deeper down: the same code each level)

A request keeps its server thread id on the node (the executor's work and control
threads, the farm's slot threads), so pipelining, pings and slots behave as flat. The
sends of a link leave on one gateway thread (``SEND_THREAD``), in order, so a function
registered before a call is there when the call comes. Replies stream back as they
come: the gateway answers a poll as soon as one is ready, with all that are.

Failures, as the executor and the farm judge them on a flat ``Client``:

* the gateway could not be opened: ``connect`` tries another gateway declared for the
  node (``Router.fail``), else raises ``ConnectError`` naming the gateway (the node is
  *unreachable*); a node its gateway cannot connect: the gateway's error, the same way;
* the gateway's connection dies, or it answers no poll for ``opts["silence"]`` seconds
  (frozen): every request in flight through it fails with ``ConnectionLost`` ("gateway
  gw1 lost: ..."), at once, and so do later ones: its nodes are *lost* (their work
  reruns elsewhere); a later ``connect`` of such a node goes through another gateway;
* the node's own session dies at the gateway: its requests fail with ``ConnectionLost``.

A value or exception crosses the gateway unpickled and pickled again: it must be
rebuildable there (what a flat call returns is; proxies to objects on the node are not
supported through a gateway).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from ..client.threaded import ThreadedClient
from ..errors import CallTimeout, ConnectionLost, RemoteException
from .treeopts import gateway_options

__all__ = ["Link", "RelayedClient", "relay_options"]

ENTRY = "easycluster.cluster.treerelay."  # the gateway's entry points (called by name)
SEND_THREAD = 0x52454C53  # the gateway thread every send of a link runs on (in order)
READ_THREAD = 0x52454C52  # the gateway thread the long poll runs on
SILENCE = 30.0  # s a gateway may answer no poll before it is taken as hung
HEARTBEAT = 1.0  # s a poll waits at most before the gateway answers "nothing yet"

OK = "ok"
RAISED = "raised"
LOST = "lost"


def relay_options(
    ssh_options: Sequence[str] = (),
    user: Optional[str] = None,
    rpython: Optional[str] = None,
    gateway_python: Optional[str] = None,
    connect_timeout: float = 10.0,
    silence: float = SILENCE,
    fanout: int = 64,
    keep_alive: Optional[float] = None,
) -> Dict[str, Any]:
    """The options of a connector, as plain data (they travel to every gateway): those
    of ``treeopts.gateway_options`` (``fanout``: sessions a gateway opens at once), and
    ``keep_alive`` (seconds: a gateway's session to a node that is silent for twice this
    is lost; None: the client's default)."""
    opts = gateway_options(
        ssh_options, user, rpython, gateway_python, connect_timeout, silence, fanout
    )
    opts["keep_alive"] = keep_alive
    return opts


class Link:
    """One open gateway: its client, the requests in flight through it (by request
    id), and the thread that polls for their replies."""

    def __init__(self, gw: str, client: ThreadedClient, silence: float) -> None:
        self.gw = gw
        self.client = client
        self.silence = silence
        self.lock = threading.Lock()
        self.pending: Dict[int, Tuple[concurrent.futures.Future[Any], str, int]] = {}
        # the gateway's answers to the sends, in order (see _check_acks)
        self.acks: Deque[Tuple[int, Any]] = deque()
        self.ids = itertools.count(1)
        self.error: Optional[str] = None  # set once: why the link is dead
        self.thread = threading.Thread(
            target=self._poll, daemon=True, name=f"easycluster-relay {gw}"
        )
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.error is None

    def call(self, func: str, *args: Any, timeout: Optional[float] = None) -> Any:
        """A blocking call on the gateway (a ``RemoteException`` raised as such)."""
        return self.client.call(
            ENTRY + func, *args, call_timeout=timeout or self.silence, origexc=False
        )

    def send(
        self, sid: int, node: str, verb: str, args: Any, kwargs: Any, tid: int
    ) -> concurrent.futures.Future[Any]:
        """Forward one request to session ``sid``; the future of its reply."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self.lock:
            if self.error is not None:
                raise ConnectionLost(f"{node}: {self.error}")
            rid = next(self.ids)
            self.pending[rid] = (fut, node, sid)
        try:
            ack = self.client.send_request(
                0,
                "call",
                (ENTRY + "relay_send", (sid, rid, verb, args, kwargs, tid), {}),
                nonblocking=True,
                threadid=SEND_THREAD,
                origexc=False,
            )
        except ConnectionLost as e:
            self.fail(f"gateway {self.gw} lost: {e}")
            raise ConnectionLost(f"{node}: gateway {self.gw} lost: {e}") from None
        except BaseException:  # e.g. arguments that cannot be pickled: nothing was sent
            with self.lock:
                self.pending.pop(rid, None)
            raise
        with self.lock:
            self.acks.append((rid, ack))
        return fut

    def _check_acks(self) -> None:
        """A send the gateway could not take (e.g. it cannot rebuild an argument) is its
        request's outcome, so that no future waits for a reply that never comes. The
        poll looks after each answer (the sends are answered in order, on one thread;
        a callback per send would cost every request a Future's set-up)."""
        failed = []
        with self.lock:
            acks = self.acks
            while acks and acks[0][1].done():
                rid, ack = acks.popleft()
                err = ack.exception(0)
                if err is not None:
                    failed.append((rid, err))
        for rid, err in failed:
            if isinstance(err, RemoteException):
                self._settle([(rid, RAISED, (err.orig, err.text))])
            else:  # the connection ended: the poll fails the whole link
                self._settle([(rid, LOST, f"gateway {self.gw} lost: {err}")])

    def drop(self, sid: int, why: str) -> None:
        """Session ``sid`` was closed here: its requests in flight fail with ``why``."""
        with self.lock:
            gone = [rid for rid, entry in self.pending.items() if entry[2] == sid]
            entries = [self.pending.pop(rid) for rid in gone]
        for fut, node, _ in entries:
            try:
                fut.set_exception(ConnectionLost(f"{node}: {why}"))
            except concurrent.futures.InvalidStateError:
                pass

    def _poll(self) -> None:
        """Take the replies as they come, until the link fails or is closed."""
        while self.error is None:
            try:
                got = self.client.call(
                    ENTRY + "relay_read",
                    HEARTBEAT,
                    threadid=READ_THREAD,
                    call_timeout=self.silence,
                    origexc=False,
                )
            except CallTimeout:
                self.fail(f"gateway {self.gw} lost: silent for {self.silence:g} s")
                return
            except BaseException as e:  # the connection died or was closed
                self.fail(f"gateway {self.gw} lost: {e}")
                return
            try:
                self._settle(got)
                self._check_acks()
            except BaseException as e:  # (a bug): no request may wait for this thread
                self.fail(f"gateway {self.gw}: its replies could not be taken: {e!r}")
                raise

    def _settle(self, got: List[Tuple[int, str, Any]]) -> None:
        for rid, kind, value in got:
            with self.lock:
                entry = self.pending.pop(rid, None)
            if entry is None:
                continue  # its session was closed here meanwhile
            fut, node, _ = entry
            try:
                if kind == OK:
                    fut.set_result(value)
                elif kind == RAISED:
                    fut.set_exception(RemoteException(value[0], value[1]))
                else:
                    fut.set_exception(ConnectionLost(f"{node}: {value}"))
            except concurrent.futures.InvalidStateError:
                pass  # its session was closed meanwhile (close settled it)

    def fail(self, why: str) -> None:
        """The link is dead: every request in flight through it fails now."""
        with self.lock:
            if self.error is None:
                self.error = why
            pending, self.pending = self.pending, {}
        for fut, node, _ in pending.values():
            try:
                fut.set_exception(ConnectionLost(f"{node}: {why}"))
            except concurrent.futures.InvalidStateError:
                pass  # settled meanwhile
        self.client.close()


class RelayedClient:
    """A session to ``node`` held by gateway ``link.gw`` (module docstring): requests
    go there and replies come back as a flat ``Client``'s do. ``close()`` ends the
    session on the gateway; its requests still in flight fail with ConnectionLost."""

    def __init__(self, link: Link, sid: int, node: str, peername: str) -> None:
        self.link = link
        self.sid = sid
        self.node = node
        self.peername = peername
        self.via = link.gw
        self.closed = False
        self.lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return not self.closed and self.link.alive

    def send_request(
        self,
        oid: int,
        meth: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        nonblocking: bool = False,
        threadid: Optional[int] = None,
        origexc: Any = True,
        timeout: Optional[float] = None,
        **ignored: Any,
    ) -> Any:
        """As ``Client.send_request`` on object 0: the reply's future with
        ``nonblocking`` (a ``concurrent.futures.Future``; a remote error is a
        ``RemoteException``), else the value (``CallTimeout`` after ``timeout``)."""
        if oid != 0:
            raise ValueError("a relayed session calls the server's root object only")
        if self.closed:
            raise ConnectionLost(f"{self.node}: session closed")
        tid = 0 if threadid is None else threadid
        fut = self.link.send(self.sid, self.node, meth, tuple(args), kwargs or {}, tid)
        if nonblocking:
            return fut
        try:
            err = fut.exception(timeout)
        except concurrent.futures.TimeoutError:
            raise CallTimeout(
                f"{self.node}: no reply within {timeout:g} s to {meth} (via {self.via})"
            ) from None
        if err is None:
            return fut.result(0)
        if isinstance(err, RemoteException) and origexc is not False and err.orig is not None:
            raise err.orig
        raise err

    def call(self, _func: str, *args: Any, **kwargs: Any) -> Any:
        """``Client.call``: the special keywords ``nonblocking``, ``threadid``,
        ``call_timeout`` and ``origexc`` are taken out of ``kwargs``."""
        opts = {
            "nonblocking": kwargs.pop("nonblocking", False),
            "threadid": kwargs.pop("threadid", None),
            "timeout": kwargs.pop("call_timeout", None),
            "origexc": kwargs.pop("origexc", True),
        }
        return self.send_request(0, "call", (_func, args, kwargs), **opts)

    def set_global(self, name: str, value: Any, **opts: Any) -> Any:
        return self.send_request(0, "set_global", (name, value), **opts)

    def execblock(self, code: str, **opts: Any) -> Any:
        return self.send_request(0, "eval", (code, "exec"), **opts)

    def eval(self, expr: str, **opts: Any) -> Any:
        return self.send_request(0, "eval", (expr, "eval"), **opts)

    def reconnect(self) -> None:
        raise ConnectionLost(f"{self.node}: a relayed session is reopened by its connector")

    def close(self) -> None:
        """End the session on the gateway (its server ends); idempotent."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.link.drop(self.sid, "session closed")
        if self.link.alive:
            try:
                self.link.client.send_request(
                    0,
                    "call",
                    (ENTRY + "relay_close", (self.sid,), {}),
                    nonblocking=True,
                    threadid=SEND_THREAD,
                )
            except ConnectionLost:
                pass

    def __repr__(self) -> str:
        return f"<RelayedClient {self.node} via {self.via}>"
