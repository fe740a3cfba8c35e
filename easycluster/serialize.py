"""Pickling for the wire: cloudpickle, protocol 5, out-of-band buffers, object references.

The only module that pickles or unpickles. Callers must only ``loads`` data whose MAC has
been verified (the wire layer guarantees that for everything it hands out).

- Functions, lambdas and closures of the master's ``__main__`` travel by value
  (cloudpickle); functions of importable modules, including definitions modules made by
  ``define_common``, travel by reference.
- Large ``bytes``/``bytearray`` and numpy arrays travel as out-of-band buffers: the sender
  hands the wire its memory without copying it into the pickle stream, and the receiver
  rebuilds arrays and bytearrays on top of the received buffer.
- ``refs`` (optional) lets a connection replace objects by references while pickling
  (``refs.reduce(obj)`` returns a reduce tuple or ``None``) and resolve them while
  unpickling (``refs.resolve(*args)``); this is how server objects become proxies.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, List, Optional, Protocol, Sequence, Tuple

import cloudpickle

PROTOCOL = 5
OOB_MIN = 1 << 16  # below this, copying into the pickle stream is cheaper than a buffer


class RefHooks(Protocol):
    def reduce(self, obj: Any) -> Optional[tuple]: ...

    def resolve(self, *args: Any) -> Any: ...


def _resolve_ref(*args: Any) -> Any:  # pragma: no cover - replaced by Unpickler.find_class
    raise pickle.UnpicklingError("an object reference arrived outside a connection")


class _BigBytes:
    """Stand-in for a large ``bytes`` so it is sent out of band (pickle never calls
    ``reducer_override`` for exact ``bytes``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (bytes, (pickle.PickleBuffer(self.data),))


def _wrap(obj: Any, depth: int = 2) -> Any:
    t = type(obj)
    if t is bytes:
        return _BigBytes(obj) if len(obj) >= OOB_MIN else obj
    if depth == 0:
        return obj
    if t is tuple:
        return tuple([_wrap(x, depth - 1) for x in obj]) if obj else obj
    if t is list:
        return [_wrap(x, depth - 1) for x in obj]
    if t is dict:
        return {k: _wrap(v, depth - 1) for k, v in obj.items()}
    return obj


class Pickler(cloudpickle.Pickler):
    def __init__(self, file: Any, refs: Optional[RefHooks], buffer_callback: Any):
        super().__init__(file, protocol=PROTOCOL, buffer_callback=buffer_callback)
        self._refs = refs

    def reducer_override(self, obj: Any) -> Any:
        refs = self._refs
        if refs is not None:
            r = refs.reduce(obj)
            if r is not None:
                return r
        return super().reducer_override(obj)


class Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, refs: Optional[RefHooks], buffers: Sequence[Any]):
        super().__init__(file, buffers=buffers)
        self._refs = refs

    def find_class(self, module: str, name: str) -> Any:
        if name == "_resolve_ref" and module == __name__ and self._refs is not None:
            return self._refs.resolve
        return super().find_class(module, name)


def reference(*args: Any) -> tuple:
    """A reduce tuple that ``refs.resolve(*args)`` will turn back into an object."""
    return (_resolve_ref, args)


def dumps(obj: Any, refs: Optional[RefHooks] = None) -> Tuple[bytes, List[pickle.PickleBuffer]]:
    """Pickle ``obj``; return the pickle stream and its out-of-band buffers."""
    buffers: List[pickle.PickleBuffer] = []
    f = io.BytesIO()
    Pickler(f, refs, buffers.append).dump(_wrap(obj))
    return f.getvalue(), buffers


def loads(main: Any, buffers: Sequence[Any] = (), refs: Optional[RefHooks] = None) -> Any:
    """Unpickle what ``dumps`` produced. Only ever call this on authenticated data."""
    return Unpickler(io.BytesIO(main), refs, buffers).load()
