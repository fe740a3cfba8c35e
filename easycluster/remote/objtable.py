"""The server's table of objects that clients hold proxies to, with distributed GC.

Each reference sent to the client counts once (``sent``). When the client's last proxy
for an object dies it reports how many references it had received; the object is
dropped when every reference sent has been accounted for. So a reference still in
flight when the client lets go keeps the object alive (the original freed it and the
client was left with a proxy to nothing).
"""

from __future__ import annotations

import threading

from ..objects import serialize
from ..objects.exports import object_info

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Tuple


class ObjectTable:
    """Object ids of one connection: ``reduce`` while pickling replies, ``resolve`` while
    unpickling requests, ``release`` when the client lets go."""

    def __init__(self, root: Any):
        self.objects: Dict[int, Any] = {0: root}
        self._ids: Dict[int, int] = {}
        self._sent: Dict[int, int] = {}
        self._next = 1
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.objects) - 1

    def get(self, oid: int) -> Any:
        """The object with id ``oid``; LookupError for ids never issued or released."""
        try:
            return self.objects[oid]
        except KeyError:
            raise LookupError(
                f"object id {oid} is unknown on this connection (never issued, or already released)"
            ) from None

    def reduce(self, obj: Any) -> Any:
        info = object_info(obj)
        if info is None:
            return None
        with self._lock:
            oid = self._ids.get(id(obj))
            if oid is None:
                oid = self._next
                self._next += 1
                self.objects[oid] = obj
                self._ids[id(obj)] = oid
                self._sent[oid] = 0
            self._sent[oid] += 1
        return serialize.reference("obj", oid, info)

    def dry_refs(self) -> _DryRefs:
        """Hooks that pickle as ``reduce`` does but count nothing and keep nothing: for
        probing a value that failed to pickle (``serialize.find_unpicklable``)."""
        return _DryRefs()

    def resolve(self, kind: str, oid: int, *_: Any) -> Any:
        if kind != "arg":
            raise LookupError(f"unexpected reference kind {kind!r} from the client")
        return self.get(oid)

    def release(self, pairs: Iterable[Tuple[int, int]]) -> None:
        """The client dropped its proxies: ``(oid, references it received)`` pairs."""
        with self._lock:
            for oid, count in pairs:
                left = self._sent.get(oid)
                if left is None:
                    continue
                left -= count
                if left > 0:
                    self._sent[oid] = left
                    continue
                obj = self.objects.pop(oid)
                del self._sent[oid]
                self._ids.pop(id(obj), None)
                del obj


class _DryRefs:
    """``ObjectTable.reduce`` without its side effects: a server object becomes a
    reference to nothing (a probe's pickle is thrown away, never sent)."""

    def reduce(self, obj: Any) -> Any:
        if object_info(obj) is None:
            return None
        return serialize.reference("obj", 0, None)

    def resolve(self, *args: Any) -> Any:
        raise LookupError("a probe's references are never unpickled")
