"""The client's side of object references: one live proxy per server object, and releases.

``resolve`` (while unpickling a reply) returns the live proxy for an object id, or makes
one, counting every reference received. When a proxy dies its id and count go to a queue
(nothing else: a collection can happen inside any code, even while this thread holds the
connection's send lock); the queue leaves with the next request, or within
``RELEASE_DELAY`` seconds from a small thread if the client sends nothing else.
"""

from __future__ import annotations

import _pickle as pickle  # the C module: pickle.py imports re and enum (~2 ms per start)
import collections
import threading
import weakref

from ..objects import serialize
from ..objects.exports import TypeInfo
from ..objects.proxy import RemoteProxy, new_proxy, proxy_class
from ..protocol.messages import RELEASE_ITEM

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

RELEASE_DELAY = 0.2


class _Entry:
    __slots__ = ("ref", "count")

    def __init__(self) -> None:
        self.ref: Any = None
        self.count = 1


class ProxyTable:
    """Proxies of one connection (``refs`` for the serializer)."""

    def __init__(self, client: Any, send_releases: Callable[..., None]):
        self.client = client
        self.send_releases = send_releases  # send_releases(flush=...): sends take_releases()
        self.entries: Dict[int, _Entry] = {}
        self.releases: Deque[Tuple[int, _Entry]] = collections.deque()
        self._lock = threading.Lock()
        self._flusher: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._local = threading.local()

    def pin_start(self) -> None:
        """Collect the proxies pickled by this thread from now on (see ``pin_take``)."""
        self._local.pins = []

    def pin_take(self) -> List[Any]:
        """The proxies a request carries: the caller keeps them alive until the reply, so
        no release can overtake a request that still has to resolve their ids."""
        pins, self._local.pins = self._local.pins, None
        return pins

    def reduce(self, obj: Any) -> Any:
        if not isinstance(obj, RemoteProxy):
            return None
        conn = obj.__dict__.get("_ec_conn")
        if conn is self.client:
            pins = getattr(self._local, "pins", None)
            if pins is not None:
                pins.append(obj)
            return serialize.reference("arg", obj.__dict__["_ec_oid"])
        where = "a closed connection" if conn is None else conn.peername
        raise pickle.PicklingError(
            f"{obj!r} belongs to {where}; a proxy can only be sent to "
            f"the connection it came from ({self.client.peername})"
        )

    def resolve(self, kind: str, oid: int, info: TypeInfo) -> Any:
        if kind != "obj":
            raise pickle.UnpicklingError(f"unexpected reference kind {kind!r} from the server")
        with self._lock:
            e = self.entries.get(oid)
            if e is not None:
                p = e.ref()
                if p is not None:
                    e.count += 1
                    return p
            p = new_proxy(proxy_class(info), self.client, oid)
            e = _Entry()

            def died(_r: object, oid: int = oid, e: _Entry = e) -> None:
                self._died(oid, e)

            e.ref = weakref.ref(p, died)
            self.entries[oid] = e
        if self._flusher is None:
            self._start_flusher()
        return p

    def _died(self, oid: int, e: _Entry) -> None:
        # Runs wherever the last reference went away, even inside code holding our locks:
        # one deque append, nothing else. take_releases tidies the table under the lock.
        self.releases.append((oid, e))

    def take_releases(self) -> bytes:
        """Pop the queued releases as an FT_RELEASE body (b'' if none)."""
        items: List[bytes] = []
        releases = self.releases
        with self._lock:
            while releases:
                try:
                    oid, e = releases.popleft()
                except IndexError:
                    break
                if self.entries.get(oid) is e:  # not already replaced by a newer proxy
                    del self.entries[oid]
                items.append(RELEASE_ITEM.pack(oid, e.count))
        return b"".join(items)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            # The thread holds the table weakly: a Client dropped without close() can
            # still be collected (and its socket and server with it).
            self._flusher = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._stop),
                daemon=True,
                name="easycluster-release",
            )
            self._flusher.start()

    def invalidate(self) -> None:
        """The connection closed: every live proxy gets ``proxy_connection = None``."""
        self._stop.set()
        with self._lock:
            entries, self.entries = self.entries, {}
        for e in entries.values():
            p = e.ref()
            if p is not None:
                object.__setattr__(p, "_ec_conn", None)
        self.releases.clear()


def _flush_loop(table_ref: weakref.ref[ProxyTable], stop: threading.Event) -> None:
    while not stop.wait(RELEASE_DELAY):
        table = table_ref()
        if table is None:
            return
        if table.releases:
            try:
                table.send_releases(flush=True)
            except Exception:
                return  # the connection is gone; close() invalidates the proxies
        del table
