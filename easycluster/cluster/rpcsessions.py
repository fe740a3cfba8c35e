"""The RPC backend's sessions (``rpc.py``): one ``Client`` per node, connected on first
use and kept for the next command, copy or Python call, and how a session is given up.

A session is made by ``connect(node)`` when the caller gave one (the ``rpc_connect``
info), else by ours: ``Client`` with the backend's ``connect_options`` (its keywords;
``port``, ``user``, ``ssh``, ``rpython`` and ``extra_args`` are ``Client.connect``'s),
over ssh unless they give a key for an ``easycluster -S`` server, as ``Client`` decides.

Giving up, without waiting and leaving no local process behind (the cluster layer's
timeouts and Ctrl-C must not wait for a node that does not answer):

* a command given up while its node is still connecting throws the ``KillSwitch`` it
  connects with (``session(node, switch)``): ``abandon`` kills that ssh at once, and
  the connect fails (a command waiting for another command's connect to the same node
  connects no more once its switch is thrown);
* a session whose server does not answer (stopped, hung) is ended by
  ``kill_session``: the switch it was made with kills its ssh at once, where closing it
  would give ssh a second to end politely.

A session made by the caller's ``connect`` has no switch: a command given up while it
connects lets it finish (and starts nothing), and ``kill_session`` closes the session
the ordinary way.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..client.client import Client
from ..client.parallel import call_multi
from ..errors import ConnectError
from ..launch.killswitch import KillSwitch

# ``Client.connect``'s keywords among the backend's ``connect_options``
CONNECT_KEYS = ("port", "user", "ssh", "rpython", "extra_args")


class SessionKeeper:
    """The sessions of an ``RpcBackend`` (a mixin of it: module docstring). Safe from
    several threads: one connection per node at a time."""

    def __init__(
        self, connect: Optional[Callable[[str], Client]], connect_options: Dict[str, Any]
    ) -> None:
        self.connect = connect  # the caller's, or None: ours (``Client``)
        self.connect_options = connect_options
        self._sessions: Dict[str, Client] = {}
        self._switches: Dict[str, Tuple[Client, KillSwitch]] = {}  # ours, by node
        self._locks: Dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._closes = 0  # how many times ``close`` ran: a connect it overlapped is undone

    def session(self, node: str, switch: Optional[KillSwitch] = None) -> Client:
        """The open session to ``node``, connected now if there is none (raises what
        connecting raises). ``switch``: a ``KillSwitch`` that gives this connect up
        (``ConnectError``) when it is thrown, before or while it connects. A connect
        that ``close`` overlapped is closed at once and raises ``ConnectError``: kept,
        it would be nobody's to close."""
        with self._lock:
            lock = self._locks.setdefault(node, threading.Lock())
        with lock:
            client = self._sessions.get(node)
            if client is not None and client.connected:
                return client
            closes = self._closes  # (first: a close from here on is seen after the connect)
            if switch is not None and switch.thrown:
                raise ConnectError(f"connecting to {node} was given up")
            client, switch = self._connect(node, switch)
            with self._lock:
                overlapped = closes != self._closes
                if not overlapped:
                    self._sessions[node] = client
                    if switch is None:
                        self._switches.pop(node, None)
                    else:
                        self._switches[node] = (client, switch)
            if overlapped:  # nobody would ever close it: its server would outlive us
                client.close()
                raise ConnectError(f"connecting to {node} was given up: the sessions were closed")
            return client

    def _connect(
        self, node: str, switch: Optional[KillSwitch]
    ) -> Tuple[Client, Optional[KillSwitch]]:
        """A new session to ``node``, and the switch that ends its ssh (None: none)."""
        if self.connect is not None:
            return self.connect(node), None
        options = dict(self.connect_options)
        how = {k: options.pop(k) for k in CONNECT_KEYS if k in options}
        switch = switch or KillSwitch()
        client = Client(**options)
        client.connect(node, switch=switch, **how)
        return client, switch

    def drop(self, node: str, client: Client) -> None:
        """Forget ``node``'s session if it is still ``client``, and close it."""
        with self._lock:
            if self._sessions.get(node) is client:
                del self._sessions[node]
            if self._switches.get(node, (None,))[0] is client:
                del self._switches[node]
        client.close()

    def kill_session(self, node: str, client: Client) -> None:
        """End ``client``, ``node``'s session, whose server does not answer: its ssh is
        killed at once (made by the caller's ``connect``: closed), and it is dropped.
        Its calls fail with ``ConnectionLost``; on the node, the server finds its stdin
        closed and kills its commands when it runs again (a stopped one: once it is
        continued; one that died: its watchdog did)."""
        with self._lock:
            held = self._switches.get(node)
        if held is not None and held[0] is client:
            held[1].kill()
        self.drop(node, client)

    def warm(self, node: str) -> Optional[Client]:
        """``node``'s session if it is open now (never connects)."""
        client = self._sessions.get(node)
        return client if client is not None and client.connected else None

    def sessions(self) -> Dict[str, Client]:
        """The sessions open now, by node."""
        with self._lock:
            return dict(self._sessions)

    def call_all(self, nodes: List[str], func: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """``func(*args, **kwargs)`` on every node over its session, in parallel:
        ``{node: value or exception}`` (a node that cannot be connected: its error)."""
        out: Dict[str, Any] = {}
        clients: List[Client] = []
        names: List[str] = []
        for node in nodes:
            try:
                clients.append(self.session(node))
                names.append(node)
            except Exception as e:  # that node's outcome
                out[node] = e
        got = call_multi(clients, func, *args, return_exceptions=True, **kwargs)
        out.update(zip(names, got))
        return {node: out[node] for node in nodes}

    def close(self) -> None:
        """Close every session (their servers end with them)."""
        with self._lock:
            clients, self._sessions = list(self._sessions.values()), {}
            self._switches.clear()
            self._closes += 1
        for c in clients:
            c.close()


def without_node(error: BaseException, node: str) -> str:
    """``error``'s message for a line that names ``node`` already: without the node's
    name where our launcher and client put it ("NODE: ...", "... to NODE ...",
    "... on NODE ...", as ``USER@NODE`` too), once; what ssh itself said is kept."""
    name = r"(?:[^\s@:]+@)?" + re.escape(node)
    return re.sub(rf"^{name}: | (?:to|on) {name}(?=: | |$)", "", str(error), count=1)


__all__ = ["SessionKeeper", "without_node"]
